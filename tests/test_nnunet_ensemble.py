"""The ensemble operator with the bundled demo model: loaded once per process, folds averaged on
probabilities, labels back on the CT's own grid in any patient position."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import phantom_volume_and_label

import operators.nnunet_ensemble as ensemble
from renalnode.ensemble import EnsemblePredictor, InferenceSettings

DEMO = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo"
NO_MIRRORING = InferenceSettings(use_mirroring=False)


def _ct(folder):
    return phantom_volume_and_label(folder)[0].image


def test_model_is_loaded_once_per_process():
    first = ensemble.cached_predictor(DEMO, NO_MIRRORING)
    loaded = ensemble.LOAD_COUNT  # whether this call or an earlier test loaded it
    second = ensemble.cached_predictor(DEMO, NO_MIRRORING)
    assert second[1] is first[1]
    assert ensemble.LOAD_COUNT == loaded >= 1


def _two_fold_package(tmp_path: Path) -> Path:
    """The demo package with a second fold: fold 0's weights, perturbed, so the folds disagree."""
    package = tmp_path / "two-folds"
    shutil.copytree(DEMO, package)
    checkpoint = torch.load(package / "nnunet" / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    generator = torch.Generator().manual_seed(0)
    checkpoint["network_weights"] = {
        k: v + 0.2 * v.std() * torch.randn(v.shape, generator=generator) if v.is_floating_point() and v.numel() > 1
        else v for k, v in checkpoint["network_weights"].items()}
    (package / "nnunet" / "fold_1").mkdir()
    torch.save(checkpoint, package / "nnunet" / "fold_1" / "checkpoint_final.pth")
    return package / "nnunet"


def test_folds_are_averaged_on_probabilities(phantom_cases, tmp_path):
    """On the same preprocessed input, the 2-fold ensemble's output is the mean of each fold's
    softmax, and not nnU-Net's mean of logits."""
    nnunet_dir = _two_fold_package(tmp_path)
    hu = sitk.GetArrayFromImage(sitk.DICOMOrient(_ct(phantom_cases("HFS")), "LPS")).astype(np.float32)
    data = torch.from_numpy((np.clip(hu, -200, 300) - 50) / 100)[None]

    def probabilities(folds):
        return EnsemblePredictor(nnunet_dir, folds, NO_MIRRORING).probabilities(data)

    both, first, second = probabilities([0, 1]), probabilities([0]), probabilities([1])
    mean_of_probabilities = (first + second) / 2
    torch.testing.assert_close(both, mean_of_probabilities, atol=1e-5, rtol=1e-4)
    # The mean of the folds' logits, from their log-probabilities (each differs from the logits by a
    # per-voxel constant, which softmax takes away again).
    mean_of_logits = torch.softmax((first.log() + second.log()) / 2, 0)
    assert (mean_of_logits - mean_of_probabilities).abs().max() > 1e-3


def test_labels_return_to_the_ct_grid_in_every_position(phantom_cases):
    """The same patient scanned head- or feet-first gets the same labels in patient space, voxel for
    voxel; prone, only bowel gas moves (it rises to the other side), so the kidneys still agree. A
    flipped axis anywhere would break this."""
    _, predictor = ensemble.cached_predictor(DEMO, NO_MIRRORING)
    in_lps = {}
    for position in ("HFS", "FFS", "HFP"):
        ct = _ct(phantom_cases(position))
        labels = predictor.segment_image(ct)
        assert labels.shape == sitk.GetArrayViewFromImage(ct).shape
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(ct)
        in_lps[position] = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    assert (in_lps["HFS"] == 1).sum() > 1000  # the demo model finds kidneys
    np.testing.assert_array_equal(in_lps["FFS"], in_lps["HFS"])
    supine, prone = in_lps["HFS"] == 1, in_lps["HFP"] == 1
    # Prone, the model sees another body outline and differs at the kidneys' edges; a flipped axis
    # would put the two label maps apart altogether.
    assert 2 * (supine & prone).sum() / (supine.sum() + prone.sum()) > 0.95


def test_region_focus_runs_the_full_pass_around_what_the_coarse_pass_finds(phantom_cases):
    """The phantom's volume widened with air on both sides, as a large field of view is: the full
    pass runs the whole volume's tiles that overlap the coarse pass's box with its margin, everything
    they do not cover is background, and the labels agree with the whole-volume pass. A volume with
    nothing in it gets the whole pass."""
    whole = EnsemblePredictor(DEMO / "nnunet", [0], NO_MIRRORING)
    focus = EnsemblePredictor(DEMO / "nnunet", [0], InferenceSettings(use_mirroring=False, region_focus=True))
    ct = sitk.DICOMOrient(_ct(phantom_cases("HFS")), "LPS")
    data, _ = whole.preprocess(sitk.GetArrayFromImage(ct), ct.GetSpacing()[::-1])
    air = float(data.min())
    data = torch.nn.functional.pad(torch.from_numpy(data), (60, 60), value=air)  # last axis

    box = focus._kidney_box(data, torch.device("cpu"))
    assert box is not None and box[-1].stop - box[-1].start < data.shape[-1] - 100
    labels_whole, labels_focus = whole.probabilities(data).argmax(0), focus.probabilities(data).argmax(0)
    tiles = focus.window.tiles(tuple(data.shape[1:]), box)
    assert 0 < len(tiles) < len(focus.window.tiles(tuple(data.shape[1:])))
    covered = torch.zeros(labels_focus.shape, dtype=torch.bool)
    for tile in tiles:
        covered[tile] = True
    assert not labels_focus[~covered].any()
    inside = torch.zeros(labels_focus.shape, dtype=torch.bool)
    inside[box] = True
    assert (labels_focus[inside] == labels_whole[inside]).double().mean() > 0.9999

    empty = torch.full((1, 40, 70, 70), air)
    assert focus._kidney_box(empty, torch.device("cpu")) is None
    assert not focus.probabilities(empty).argmax(0).any()


def test_decision_offsets_move_the_argmax_and_nothing_else(phantom_cases):
    """One network pass gives the labels under several offsets: with none, exactly `segment_image`'s;
    a cyst offset turns voxels to cyst only (each voxel keeps its label or becomes cyst), and an
    offset vector of the wrong length is refused."""
    _, predictor = ensemble.cached_predictor(DEMO, NO_MIRRORING)
    ct = _ct(phantom_cases("HFS"))
    plain, towards_cyst = predictor.segment_image_each(ct, [None, [0.0, 0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(plain, predictor.segment_image(ct))
    np.testing.assert_array_equal(towards_cyst, predictor.segment_image(ct, [0.0, 0.0, 0.0, 3.0]))
    changed = plain != towards_cyst
    assert changed.sum() > 100 and (towards_cyst[changed] == 3).all()
    with pytest.raises(ValueError, match="3 decision offsets for a network of 4 outputs"):
        predictor.segment_image(ct, [0.0, 0.0, 1.0])
