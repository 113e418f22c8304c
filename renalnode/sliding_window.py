"""nnU-Net's sliding-window prediction with tiles and mirror images batched.

The same tiles (nnU-Net's steps), the same Gaussian weighting and the same mean over mirror images as
nnU-Net's predictor, which feeds the network one tile and one mirror image at a time; here up to
`batch_size` network inputs go in one call, which keeps a CPU's vector units and a GPU's cores busy
with a small network. Sums are kept in float32 (nnU-Net keeps them in float16).
"""
from __future__ import annotations

import itertools

import torch
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from torch import nn

from renalnode.precision import resolve_precision

# Network inputs per call on a CPU. Measured on the tiny profile (2-core AVX-512 CPU, ms per input):
# float32 145 / 101 / 121 / 135 and bfloat16 44 / 48 / 46 / 61 at 1 / 2 / 4 / 8. Two is where PyTorch
# takes oneDNN's convolution instead of its slow fallback and the activations still fit the cache.
CPU_BATCH = 2
MAX_BATCH = 64


class SlidingWindow:
    def __init__(self, patch_size: tuple[int, ...], tile_step_size: float, mirror_axes: tuple[int, ...] | None,
                 device: torch.device, batch_size: int | None = None, precision: str = "auto"):
        """`precision` on a CPU: float32, bfloat16 autocast (several times faster where the CPU has
        bfloat16 instructions), or auto (resolve_precision). On a GPU the network always runs under
        float16 autocast, as in nnU-Net."""
        self.precision = resolve_precision(precision)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.tile_step_size = tile_step_size
        self.device = device
        # Every non-empty set of mirrored axes, as nnU-Net's predictor; axes counted after (batch, channel).
        axes = [a + 2 for a in (mirror_axes or ())]
        self.mirrors = [c for n in range(1, len(axes) + 1) for c in itertools.combinations(axes, n)]
        self.gaussian = compute_gaussian(self.patch_size, sigma_scale=1. / 8, value_scaling_factor=10,
                                         dtype=torch.float32, device=device)
        self.batch_size = batch_size

    def tiles(self, shape: tuple[int, ...], region: tuple[slice, ...] | None = None) -> list[tuple[slice, ...]]:
        """nnU-Net's tiles of a volume; with `region`, only those that overlap it (the same tiles as
        the whole volume's, so that inside the region the sums are the whole volume's)."""
        steps = compute_steps_for_sliding_window(shape, self.patch_size, self.tile_step_size)
        tiles = [tuple(slice(s, s + p) for s, p in zip(start, self.patch_size)) for start in itertools.product(*steps)]
        if region is None:
            return tiles
        return [t for t in tiles if all(a.start < b.stop and b.start < a.stop for a, b in zip(t, region))]

    def weights(self, shape: tuple[int, ...], tiles: list[tuple[slice, ...]]) -> torch.Tensor:
        """Sum of the tiles' Gaussians: what each voxel's weighted sum is divided by (0 where no tile is)."""
        total = torch.zeros(shape, dtype=torch.float32, device=self.device)
        for tile in tiles:
            total[tile] += self.gaussian
        return total

    def choose_batch_size(self, network: nn.Module, channels: int) -> int:
        """The setting when given; on a CPU a fixed size; on a GPU as many inputs as half the free
        memory holds, measured by one probe call."""
        if self.batch_size:
            return self.batch_size
        if self.device.type != "cuda":
            return CPU_BATCH
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        with self._autocast():
            network(torch.zeros((1, channels, *self.patch_size), device=self.device))
        per_input = max(1, torch.cuda.max_memory_allocated(self.device) - before)
        free, _ = torch.cuda.mem_get_info(self.device)
        self.batch_size = int(max(1, min(MAX_BATCH, free // 2 // per_input)))
        return self.batch_size

    @torch.inference_mode()
    def logits(self, network: nn.Module, data: torch.Tensor, tiles: list[tuple[slice, ...]], weights: torch.Tensor,
               out: torch.Tensor) -> torch.Tensor:
        """Gaussian-weighted mean logits of one network over the tiles of a padded volume (channels,
        *shape), written into `out` (classes, *shape) on the results device; `weights` from
        weights(shape, tiles), clamped above 0 where no tile is (their logits stay 0)."""
        out.zero_()
        batch = self.choose_batch_size(network, data.shape[0])
        views = 1 + len(self.mirrors)
        per_call = max(1, batch // views)
        for first in range(0, len(tiles), per_call):
            chunk = tiles[first:first + per_call]
            inputs = torch.stack([data[(slice(None), *tile)] for tile in chunk]).to(self.device, non_blocking=True)
            predictions = self._mirrored(network, inputs, batch) * self.gaussian
            for tile, prediction in zip(chunk, predictions.to(out.device)):
                out[(slice(None), *tile)] += prediction
        return out.div_(weights)

    def _autocast(self) -> torch.autocast:
        if self.device.type == "cuda":
            return torch.autocast("cuda")
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def _mirrored(self, network: nn.Module, inputs: torch.Tensor, batch: int) -> torch.Tensor:
        """Mean of the network's logits over the inputs and their mirror images, in calls of at most
        `batch` network inputs."""
        views = torch.cat([inputs] + [torch.flip(inputs, axes) for axes in self.mirrors])
        with self._autocast():
            outputs = torch.cat([network(views[i:i + batch]).float() for i in range(0, len(views), batch)])
        outputs = outputs.view(1 + len(self.mirrors), len(inputs), *outputs.shape[1:])
        total = outputs[0].clone()
        for view, axes in zip(outputs[1:], self.mirrors):
            total += torch.flip(view, axes)
        return total / (1 + len(self.mirrors))

