"""renalnode's inference against nnU-Net's own on the bundled model: the batched sliding window
(tiles and mirror images in batches, folds resident) gives the probabilities of nnU-Net's tile loop
(its tiles, its Gaussian, its mirroring, one tile at a time), and a whole study the labels of nnU-Net's
predictor, voxel for voxel but for rounding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from conftest import phantom_volume_and_label
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian

from renalnode.ensemble import EnsemblePredictor, InferenceSettings
from renalnode.orientation import canonical
from renalnode.precision import cpu_has_native_bfloat16, resolve_precision

NNUNET_DIR = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo" / "nnunet"


def _nnunet(use_mirroring: bool) -> nnUNetPredictor:
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(NNUNET_DIR), (0,), "checkpoint_final.pth")
    predictor.network.eval()
    return predictor


@torch.inference_mode()
def _nnunet_tile_loop(nnunet: nnUNetPredictor, data: torch.Tensor) -> torch.Tensor:
    """nnU-Net's tile loop, a tile at a time with its own mirroring, summed in float64 (nnU-Net sums
    in float16, whose rounding alone exceeds the tolerance)."""
    patch = tuple(nnunet.configuration_manager.patch_size)
    padded, revert = pad_nd_image(data, patch, "constant", {"value": 0}, True, None)
    gaussian = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, dtype=torch.float64,
                                device=torch.device("cpu"))
    logits = torch.zeros((nnunet.label_manager.num_segmentation_heads, *padded.shape[1:]), dtype=torch.float64)
    weights = torch.zeros(padded.shape[1:], dtype=torch.float64)
    for tile in nnunet._internal_get_sliding_window_slicers(padded.shape[1:]):
        logits[tile] += nnunet._internal_maybe_mirror_and_predict(padded[tile][None])[0].double() * gaussian
        weights[tile[1:]] += gaussian
    return torch.softmax(logits / weights, 0)[(slice(None), *revert[1:])]


def test_batched_tiles_and_mirrors_give_the_probabilities_of_nnunets_tile_loop(phantom_cases):
    ours = EnsemblePredictor(NNUNET_DIR, [0], InferenceSettings(use_mirroring=True, batch_size=6,
                                                                        precision="float32"))
    ct = canonical(phantom_volume_and_label(phantom_cases("HFS"))[0].image)
    data, _ = ours.preprocess(sitk.GetArrayFromImage(ct), ct.GetSpacing()[::-1])
    # A block around the middle, larger than a tile on every axis and not a multiple of one: the
    # tiles overlap unevenly, and a batch (6 inputs: not a multiple of the 8 mirror images) ends
    # inside a tile's mirror images.
    sizes = [min(n, int(p * 1.7)) for n, p in zip(data.shape[1:], ours.window.patch_size)]
    block = tuple(slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(data.shape[1:], sizes))
    data = torch.from_numpy(np.ascontiguousarray(data[(slice(None), *block)]))

    expected = _nnunet_tile_loop(_nnunet(use_mirroring=True), data)
    probabilities = ours.probabilities(data)
    assert probabilities.shape == expected.shape
    assert (probabilities.double() - expected).abs().max() < 1e-4
    agree = (probabilities.argmax(0) == expected.argmax(0)).double().mean()
    assert agree >= 0.9999 and (expected.argmax(0) > 0).any()  # and the block holds more than background


def test_a_study_gets_the_labels_of_nnunets_predictor(phantom_cases):
    """One fold, without mirroring: nnU-Net's predict_single_npy_array (its sliding window, its
    export resampling in numpy) against renalnode's, on the whole small phantom."""
    ct = canonical(phantom_volume_and_label(phantom_cases("HFS"))[0].image)
    volume, spacing = sitk.GetArrayFromImage(ct).astype(np.float32), list(ct.GetSpacing()[::-1])
    ours = EnsemblePredictor(NNUNET_DIR, [0], InferenceSettings(use_mirroring=False, precision="float32")).segment(
        volume, spacing)
    theirs = _nnunet(use_mirroring=False).predict_single_npy_array(volume[None], {"spacing": spacing})
    assert ours.shape == theirs.shape == volume.shape
    assert (theirs == 1).sum() > 1000
    assert (ours == theirs).mean() >= 0.9999


def test_auto_precision_is_bfloat16_only_where_the_cpu_has_its_instructions():
    assert cpu_has_native_bfloat16("processor : 0\nflags : fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bfloat16("flags : fpu avx2 amx_bf16 amx_tile\n")
    assert cpu_has_native_bfloat16("Features : fp asimd bf16 i8mm\n")  # Arm
    assert not cpu_has_native_bfloat16("flags : fpu avx2 avx512f avx512bw\n")  # emulated: float32 is faster
    assert resolve_precision("float32") == "float32" and resolve_precision("bfloat16") == "bfloat16"
    assert resolve_precision("auto") == ("bfloat16" if cpu_has_native_bfloat16() else "float32")
