"""One nnU-Net predictor per process: loads a trained-model folder once and segments many volumes
in memory (no temporary files, no worker pools: docs/architecture.md, "In-process inference").

The folds are combined by averaging their softmax probabilities. nnU-Net's own predictor
averages logits instead, which lets one confident fold outvote the others; here each fold's
logits become probabilities before they are added. The image is preprocessed once for all folds.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from renalnode.nnunet_trainers import TRAINERS_DIR
from renalnode.orientation import back_to_grid, canonical

SOFTMAX_SLAB = 16  # slices (first spatial axis) turned into probabilities at once


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _add_to_path_variable(name: str, folder: str) -> None:
    paths = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ[name] = os.pathsep.join(paths + [folder])


def _probability_averaging_predictor_class():
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from torch._dynamo import OptimizedModule

    class ProbabilityAveragingPredictor(nnUNetPredictor):
        def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
            """Log of the folds' mean softmax: nnU-Net's later steps (resampling, argmax, softmax)
            then work on the averaged probabilities exactly."""
            total: torch.Tensor | None = None
            for params in self.list_of_parameters:
                network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
                network.load_state_dict(params)
                logits = self.predict_sliding_window_return_logits(data)
                if total is None:
                    total = torch.zeros(logits.shape, dtype=torch.float32)
                # A slab of slices at a time: a float copy of a whole 512 x 512 x 600 volume's
                # logits would cost gigabytes on top of the sum.
                for start in range(0, logits.shape[1], SOFTMAX_SLAB):
                    slab = slice(start, start + SOFTMAX_SLAB)
                    total[:, slab] += torch.softmax(logits[:, slab].float(), 0).cpu()
                del logits
            if total is None:
                raise ValueError("the predictor holds no fold")
            return total.div_(len(self.list_of_parameters)).clamp_(min=1e-12).log_()

    return ProbabilityAveragingPredictor


class EnsemblePredictor:
    """The folds of an nnU-Net trained-model folder, ready to segment canonical (LPS) volumes."""

    def __init__(self, model_dir: Path, folds: list[int], tile_step_size: float = 0.5, use_mirroring: bool = True,
                 device: torch.device | None = None):
        # Packages trained with renalnode's own trainers name them; nnU-Net looks them up by name.
        _add_to_path_variable("nnUNet_extTrainer", str(TRAINERS_DIR))
        self.device = device or default_device()
        self.predictor = _probability_averaging_predictor_class()(
            tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
            perform_everything_on_device=self.device.type == "cuda", device=self.device, verbose=False,
            verbose_preprocessing=False, allow_tqdm=False)
        self.predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=tuple(folds),
                                                            checkpoint_name="checkpoint_final.pth")

    def segment(self, volume_zyx: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
        """Label map (uint8, same shape) of a CT volume in HU indexed (z, y, x) with spacing in mm."""
        image = volume_zyx[None].astype(np.float32, copy=False)
        labels = self.predictor.predict_single_npy_array(image, {"spacing": list(spacing_zyx)}, None, None, False)
        return np.asarray(labels, dtype=np.uint8)

    def segment_image(self, ct: sitk.Image) -> np.ndarray:
        """Label map (uint8, numpy order k, j, i) of a CT in HU, on its own grid whatever its
        orientation: reoriented to LPS for nnU-Net and put back afterwards."""
        lps = canonical(ct)
        labels = self.segment(sitk.GetArrayViewFromImage(lps), lps.GetSpacing()[::-1])
        return back_to_grid(labels, lps, ct)
