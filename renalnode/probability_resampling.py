"""Class probabilities from the network's grid back to the CT's, and their argmax, in slabs on the
device: the same interpolation as nnU-Net's export (`resample_data_or_seg_to_shape`: linear, and
nearest along the low-resolution axis of an anisotropic volume), without its float64 copy of every
channel on the CT grid, which for a 512 x 512 x 600 CT is gigabytes of host memory.

Linear and nearest interpolation on a regular grid are separable: each axis is a gather of two
neighbouring planes and a weighted sum, so a slab of output slices needs only the input slices under
it, and nothing bigger than a slab of probabilities on the CT grid ever exists.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

# Output slices (first axis) resampled at once: bounds the slab's memory (channels x slices x plane).
SLAB_BYTES = 256 * 1024 ** 2


class AxisInterpolation:
    """Output index o along one axis reads input `low[o]` and `high[o]` with weight `weight[o]` on
    high, at input coordinate (o + 0.5) * n_in / n_out - 0.5 (align_corners=False), edges clamped."""

    def __init__(self, n_in: int, n_out: int, order: int, device: torch.device):
        if order not in (0, 1):
            raise ValueError(f"interpolation order {order} is not supported on the device (0 or 1)")
        coordinate = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
        if order == 0:  # scipy's order-0 spline: the nearest sample, halves rounded up
            low = torch.floor(coordinate + 0.5).clamp_(0, n_in - 1).long()
            high, weight = low, torch.zeros(n_out, dtype=torch.float64)
        else:
            coordinate = coordinate.clamp_(0, n_in - 1)
            low = torch.floor(coordinate).long()
            high = (low + 1).clamp_(max=n_in - 1)
            weight = coordinate - low
        self.low, self.high = low.to(device), high.to(device)
        self.weight = weight.to(device=device, dtype=torch.float32)

    def apply(self, values: torch.Tensor, dim: int, rows: slice = slice(None)) -> torch.Tensor:
        """`values` interpolated along `dim` (output indices `rows` only)."""
        low, high, weight = self.low[rows], self.high[rows], self.weight[rows]
        shape = [1] * values.ndim
        shape[dim] = len(weight)
        result = values.index_select(dim, low)
        if bool((weight > 0).any()):
            result = torch.lerp(result, values.index_select(dim, high), weight.view(shape))
        return result


class ProbabilityResampler:
    """Argmax of probabilities (channels, *grid) on the output shape, as nnU-Net's export resamples
    them: `order` in plane, `order_z` along the low-resolution axis when the spacing is anisotropic."""

    def __init__(self, shape_in, shape_out, spacing_in, spacing_out, device: torch.device, order: int = 1,
                 order_z: int = 0, force_separate_z: bool | None = None):
        separate_z, axis = determine_do_sep_z_and_axis(force_separate_z, spacing_in, spacing_out)
        low_resolution_axis = int(np.ravel(axis)[0]) if separate_z else None
        orders = [order_z if separate_z and d == low_resolution_axis else order for d in range(3)]
        self.axes = [AxisInterpolation(n_in, n_out, o, device) for n_in, n_out, o in zip(shape_in, shape_out, orders)]
        # Both in-plane axes linear (the usual case): torch's bilinear resize is the same interpolation,
        # and far faster than gathers along the last axis.
        self.bilinear_in_plane = orders[1] == orders[2] == 1
        self.shape_out = tuple(int(n) for n in shape_out)

    def _in_plane(self, values: torch.Tensor) -> torch.Tensor:
        if self.bilinear_in_plane:
            return F.interpolate(values, size=self.shape_out[1:], mode="bilinear", align_corners=False)
        return self.axes[2].apply(self.axes[1].apply(values, 2), 3)

    def argmax_each(self, probabilities: torch.Tensor, offsets: list[torch.Tensor | None]) -> list[np.ndarray]:
        """uint8 label maps on the output shape, one per entry of `offsets` (None, or one value per
        channel added before the argmax), from a single interpolation of the probabilities: an
        evaluation compares several decision offsets at the cost of one."""
        maps = [np.empty(self.shape_out, dtype=np.uint8) for _ in offsets]
        plane_bytes = probabilities.shape[0] * self.shape_out[1] * self.shape_out[2] * 4
        slab = max(1, SLAB_BYTES // plane_bytes)
        shifts = [None if o is None else o.to(probabilities.device, torch.float32).view(-1, 1, 1, 1) for o in offsets]
        for start in range(0, self.shape_out[0], slab):
            rows = slice(start, min(start + slab, self.shape_out[0]))
            values = self.axes[0].apply(probabilities, 1, rows).float()
            values = self._in_plane(values)
            for labels, shift in zip(maps, shifts):
                # In place, and taken off again: a shifted copy would double the slab's memory.
                if shift is not None:
                    values.add_(shift)
                labels[rows] = first_argmax(values).cpu().numpy()
                if shift is not None:
                    values.sub_(shift)
        return maps


def first_argmax(values: torch.Tensor) -> torch.Tensor:
    """uint8 index of the largest channel (the first on a tie, as argmax): elementwise passes over
    the few channels, several times faster on a CPU than torch's argmax across the first axis."""
    best, labels = values[0].clone(), torch.zeros(values.shape[1:], dtype=torch.uint8, device=values.device)
    for channel in range(1, values.shape[0]):
        larger = values[channel] > best
        labels.masked_fill_(larger, channel)
        torch.maximum(best, values[channel], out=best)
    return labels
