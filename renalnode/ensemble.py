"""One nnU-Net ensemble per process: loads a trained-model folder once and segments many volumes in
memory (no temporary files, no worker pools: docs/architecture.md, "In-process inference").

nnU-Net's own pieces do what defines the model: its plans, its preprocessing (cropping,
normalisation, resampling to the training spacing), its network and its tiles. What runs them is
renalnode's, for speed and memory:
- every fold is its own network, on the device for the life of the process (nnU-Net's predictor
  loads each fold's weights into one network again for every study);
- tiles and their mirror images go through the network in batches (sliding_window.py);
- the folds are combined by averaging their softmax probabilities. nnU-Net averages logits instead,
  which lets one confident fold outvote the others; here each fold's logits become probabilities
  before they are added;
- the probabilities are resampled to the CT's grid and turned into labels on the device, a slab at a
  time (probability_resampling.py), with nnU-Net's interpolation but without its float64 copy of
  every class on the CT grid.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from scipy import ndimage

from renalnode.nnunet_trainers import add_trainers_folder
from renalnode.orientation import back_to_grid, canonical
from renalnode.precision import checked_precision
from renalnode.probability_resampling import ProbabilityResampler
from renalnode.sliding_window import SlidingWindow

SOFTMAX_SLAB = 16  # slices (first spatial axis) turned into probabilities at once
# Around what the coarse pass finds, the full pass also covers this much (mm): masses grow out of
# the kidney, and a coarse, single-fold pass misses their edges.
FOCUS_MARGIN_MM = 25.0
Offsets = Sequence[float] | None  # a log-probability offset per network output, or none


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def antialiased(volume_zyx: np.ndarray, spacing_zyx: Sequence[float], target_spacing_zyx: Sequence[float]
                ) -> np.ndarray:
    """The volume (float32) low-passed along each axis that resampling to `target_spacing_zyx` will
    coarsen, with the Gaussian of scikit-image's resize (sigma = (factor - 1) / 2 voxels); the same
    array when no axis is coarsened. nnU-Net resamples by interpolation alone, so a 0.75 mm CT
    reaches a 2.5 mm model with its fine-grid noise intact: several times the noise of a CT
    reconstructed at 2.5 mm, which is what such a model was trained on."""
    factors = np.asarray(target_spacing_zyx, float) / np.asarray(spacing_zyx, float)
    sigma = np.maximum(0.0, (factors - 1) / 2)
    if not sigma.any():
        return volume_zyx
    filtered = volume_zyx.astype(np.float32)  # a copy: the caller's volume stays as it was
    ndimage.gaussian_filter(filtered, sigma, output=filtered, mode="nearest")
    return filtered


@dataclass(frozen=True)
class InferenceSettings:
    """How the ensemble runs, as a site may tune it (the app's environment, the node's [node] table).

    `tile_step_size`: sliding-window step as a fraction of the patch; `use_mirroring`: test-time
    mirroring; `precision`: a CPU's arithmetic (precision.PRECISIONS); `region_focus`: a coarse
    pass (first fold, no mirroring, tiles without overlap) finds the kidneys and the full pass runs
    only the whole volume's tiles that overlap their box widened by FOCUS_MARGIN_MM, the rest being
    background; `batch_size`: network
    inputs (tiles and mirror images) per call, None to choose one for the device."""
    tile_step_size: float = 0.5
    use_mirroring: bool = True
    precision: str = "auto"
    region_focus: bool = False
    batch_size: int | None = None

    def __post_init__(self):
        if not 0 < self.tile_step_size <= 1:
            raise ValueError(f"tile step size {self.tile_step_size} is not in (0, 1]")
        checked_precision(self.precision)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size {self.batch_size} is not a positive number")


class EnsemblePredictor:
    """The folds of an nnU-Net trained-model folder, ready to segment canonical (LPS) volumes."""

    def __init__(self, model_dir: Path, folds: list[int], settings: InferenceSettings = InferenceSettings(),
                 device: torch.device | None = None, input_antialiasing: bool = False):
        """`input_antialiasing`: low-pass a CT finer than the model's spacing before nnU-Net resamples
        it (`antialiased`), as a model package asks (model.json's "input_antialiasing")."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        # Packages trained with renalnode's own trainers name them; nnU-Net looks them up by name.
        add_trainers_folder()
        self.device = device or default_device()
        self.settings = settings
        self.input_antialiasing = input_antialiasing
        model = nnUNetPredictor(tile_step_size=settings.tile_step_size, use_gaussian=True,
                                use_mirroring=settings.use_mirroring,
                                device=self.device, verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        model.initialize_from_trained_model_folder(str(model_dir), use_folds=tuple(folds),
                                                   checkpoint_name="checkpoint_final.pth")
        self.plans, self.configuration = model.plans_manager, model.configuration_manager
        self.dataset_json, self.labels = model.dataset_json, model.label_manager
        if self.labels.has_regions:
            raise ValueError(f"{model_dir}: region-based nnU-Net models are not supported (one label per voxel)")
        self.resampling = self._probability_resampling(self.configuration.configuration)
        self.networks = [self._resident(model.network, weights) for weights in model.list_of_parameters]
        self.window = SlidingWindow(tuple(self.configuration.patch_size), settings.tile_step_size,
                                    model.allowed_mirroring_axes if settings.use_mirroring else None, self.device,
                                    settings.batch_size, settings.precision)
        self.coarse_window = SlidingWindow(self.window.patch_size, 1.0, None, self.device, settings.batch_size,
                                           settings.precision) if settings.region_focus else None
        self.preprocessor = self.configuration.preprocessor_class(verbose=False)

    @staticmethod
    def _probability_resampling(configuration: dict) -> dict:
        """The plans' export interpolation, when it is one the device resampler does (nnU-Net's default)."""
        kwargs = dict(configuration.get("resampling_fn_probabilities_kwargs", {}))
        name = configuration.get("resampling_fn_probabilities")
        if name != "resample_data_or_seg_to_shape" or kwargs.get("order", 1) > 1 or kwargs.get("order_z", 0) > 1:
            raise ValueError(f"the plans resample probabilities with {name} {kwargs}: renalnode resamples with "
                             "resample_data_or_seg_to_shape, order and order_z 0 or 1")
        return {"order": kwargs.get("order", 1), "order_z": kwargs.get("order_z", 0),
                "force_separate_z": kwargs.get("force_separate_z")}

    def _resident(self, network: torch.nn.Module, weights: dict) -> torch.nn.Module:
        resident = copy.deepcopy(network)
        resident.load_state_dict(weights)
        return resident.to(self.device).eval()

    def network_input(self, volume_zyx: np.ndarray, spacing_zyx) -> np.ndarray:
        """The volume as nnU-Net's preprocessing is given it: anti-aliased (a copy) when the
        package asks for it, else the same array."""
        return antialiased(volume_zyx, spacing_zyx, self.target_spacing_zyx) if self.input_antialiasing \
            else volume_zyx

    def preprocess(self, volume_zyx: np.ndarray, spacing_zyx) -> tuple[np.ndarray, dict]:
        """nnU-Net's preprocessing of the model: (channels, *grid) float32 and its properties."""
        data, _, properties = self.preprocessor.run_case_npy(
            volume_zyx[None].astype(np.float32, copy=False), None, {"spacing": list(spacing_zyx)}, self.plans,
            self.configuration, self.dataset_json)
        return data, properties

    @property
    def target_spacing_zyx(self) -> list[float]:
        """The model's spacing (mm) in the order of the volumes it is given (the plans hold it
        transposed)."""
        transposed = self.configuration.spacing
        return [float(transposed[self.plans.transpose_backward[axis]]) for axis in range(len(transposed))]

    @torch.inference_mode()
    def probabilities(self, data: torch.Tensor) -> torch.Tensor:
        """Mean of the folds' softmax (classes, *grid) of a preprocessed volume, on the device; on the
        host when the device's memory cannot hold the sums (the tiles still run on the device)."""
        try:
            return self._focused(data, self.device)
        except torch.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            torch.cuda.empty_cache()
            return self._focused(data, torch.device("cpu"))

    def _focused(self, data: torch.Tensor, results_device: torch.device) -> torch.Tensor:
        region = self._kidney_box(data, results_device) if self.coarse_window else None
        return self._probabilities(data, results_device, self.window, self.networks, region)

    def _kidney_box(self, data: torch.Tensor, results_device: torch.device) -> tuple[slice, ...] | None:
        """The box of what the coarse pass labels, widened by the margin; None when it finds nothing
        (the full pass then covers the whole volume)."""
        assert self.coarse_window is not None
        found = self._probabilities(data, results_device, self.coarse_window, self.networks[:1]).argmax(0) > 0
        if not bool(found.any()):
            return None
        spacing = self.configuration.spacing[-found.ndim:]
        box = []
        for axis, (n, mm) in enumerate(zip(found.shape, spacing)):
            others = tuple(d for d in range(found.ndim) if d != axis)
            present = torch.nonzero(found.any(dim=others)).flatten()
            margin = int(np.ceil(FOCUS_MARGIN_MM / mm))
            box.append(slice(max(0, int(present[0]) - margin), min(n, int(present[-1]) + 1 + margin)))
        return tuple(box)

    def _probabilities(self, data: torch.Tensor, results_device: torch.device, window: SlidingWindow,
                       networks: list[torch.nn.Module], region: tuple[slice, ...] | None = None) -> torch.Tensor:
        """Mean softmax of `networks` over the window's tiles, or over those overlapping `region`
        (voxels of no such tile are background)."""
        padded, revert = pad_nd_image(data, window.patch_size, "constant", {"value": 0}, True, None)
        padded = padded.to(results_device)
        if region is not None:  # in the padded volume's indices
            region = tuple(slice(r.start + p.start, r.stop + p.start) for r, p in zip(region, revert[1:]))
        tiles = window.tiles(tuple(padded.shape[1:]), region)
        weights = window.weights(tuple(padded.shape[1:]), tiles).to(results_device)
        uncovered = weights == 0
        weights[uncovered] = 1.0
        shape = (self.labels.num_segmentation_heads, *padded.shape[1:])
        total = torch.zeros(shape, dtype=torch.float32, device=results_device)
        logits = torch.empty(shape, dtype=torch.float32, device=results_device)
        for network in networks:
            window.logits(network, padded, tiles, weights, logits)
            # A slab of slices at a time: softmax's own copy of a whole volume would double the memory.
            for start in range(0, shape[1], SOFTMAX_SLAB):
                slab = (slice(None), slice(start, start + SOFTMAX_SLAB))
                total[slab] += torch.softmax(logits[slab], 0)
        del logits, weights, padded
        total.div_(len(networks))
        if bool(uncovered.any()):
            total[:, uncovered] = 0.0
            total[0, uncovered] = 1.0
        return total[(slice(None), *revert[1:])]

    @staticmethod
    def log_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
        """What is resampled to the CT grid: the log of the mean probabilities. The interpolated log
        of the normaliser is the same for every class at a voxel, so with one fold the labels are
        exactly those of nnU-Net's resampled logits."""
        return probabilities.clamp_(min=1e-12).log_()

    @torch.inference_mode()
    def segment(self, volume_zyx: np.ndarray, spacing_zyx: tuple[float, float, float],
                offsets: Offsets = None) -> np.ndarray:
        """Label map (uint8, same shape) of a CT volume in HU indexed (z, y, x) with spacing in mm.
        `offsets`: a log-probability offset per network output, added before the argmax (a model's
        decision offsets, model.json's "decision_offsets"), or None."""
        return self.segment_each(volume_zyx, spacing_zyx, [offsets])[0]

    @torch.inference_mode()
    def segment_each(self, volume_zyx: np.ndarray, spacing_zyx: tuple[float, float, float],
                     offsets: list[Offsets]) -> list[np.ndarray]:
        """`segment`'s label map for each entry of `offsets`, from one pass of the network."""
        return self._labels(self.network_input(volume_zyx, spacing_zyx), spacing_zyx, offsets)

    @torch.inference_mode()
    def _labels(self, volume_zyx: np.ndarray, spacing_zyx: tuple[float, float, float],
                offsets: list[Offsets]) -> list[np.ndarray]:
        """`segment_each` of a volume that is already the network's input."""
        data, properties = self.preprocess(volume_zyx, spacing_zyx)
        probabilities = self.probabilities(torch.from_numpy(data))
        del data
        # As nnU-Net's export: the network's spacing to the CT's, on the cropped box, then uncropped.
        spacing = [properties["spacing"][i] for i in self.plans.transpose_forward]
        network_spacing = self.configuration.spacing if len(self.configuration.spacing) == len(spacing) \
            else [spacing[0], *self.configuration.spacing]
        box_shape = properties["shape_after_cropping_and_before_resampling"]
        resampler = ProbabilityResampler(probabilities.shape[1:], box_shape, network_spacing, spacing,
                                         probabilities.device, **self.resampling)
        shifts = [None if o is None else torch.tensor(self._checked_offsets(o), dtype=torch.float32) for o in offsets]
        cropped = resampler.argmax_each(self.log_probabilities(probabilities), shifts)
        del probabilities
        return [np.ascontiguousarray(insert_crop_into_image(
            np.zeros(properties["shape_before_cropping"], dtype=np.uint8), labels,
            properties["bbox_used_for_cropping"]).transpose(self.plans.transpose_backward)) for labels in cropped]

    def _checked_offsets(self, offsets: Sequence[float]) -> list[float]:
        if len(offsets) != self.labels.num_segmentation_heads:
            raise ValueError(f"{len(offsets)} decision offsets for a network of "
                             f"{self.labels.num_segmentation_heads} outputs")
        return [float(o) for o in offsets]

    def segment_image(self, ct: sitk.Image, offsets: Offsets = None) -> np.ndarray:
        """Label map (uint8, numpy order k, j, i) of a CT in HU, on its own grid whatever its
        orientation: reoriented to LPS for nnU-Net and put back afterwards. `offsets` as `segment`."""
        return self.segment_image_each(ct, [offsets])[0]

    def segment_image_each(self, ct: sitk.Image, offsets: list[Offsets]) -> list[np.ndarray]:
        """`segment_image`'s label map for each entry of `offsets`, from one pass of the network."""
        lps = canonical(ct)
        spacing = lps.GetSpacing()[::-1]
        reoriented = sitk.GetArrayViewFromImage(lps)
        volume = self.network_input(reoriented, spacing)
        if volume is not reoriented:
            # The filtered voxels take the place of the reoriented ones, of which only the grid is
            # needed from here on: the peak memory (in nnU-Net's preprocessing) grows by no copy of the CT.
            filtered = sitk.GetImageFromArray(volume)
            filtered.CopyInformation(lps)
            del reoriented, volume
            lps = filtered
            volume = sitk.GetArrayViewFromImage(lps)
        return [back_to_grid(labels, lps, ct) for labels in self._labels(volume, spacing, offsets)]
