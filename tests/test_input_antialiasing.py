"""Input anti-aliasing: a CT finer than the model's spacing is low-passed before nnU-Net resamples
it, along the axes that resampling coarsens and no other, and only for a package that asks for it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import phantom_volume_and_label

import operators.nnunet_ensemble as ensemble
from renalnode.ensemble import EnsemblePredictor, InferenceSettings, antialiased
from renalnode.model_package import ModelPackageError, load_model_package
from renalnode.orientation import canonical

DEMO = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo"
NO_MIRRORING = InferenceSettings(use_mirroring=False)
MODEL_SPACING = (2.5, 2.6, 2.6)


def test_only_the_axes_that_resampling_coarsens_are_filtered():
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 40, (60, 48, 48)).astype(np.float32)
    original = volume.copy()
    thin_slices = (0.75, 2.6, 2.6)
    filtered = antialiased(volume, thin_slices, MODEL_SPACING)
    np.testing.assert_array_equal(volume, original)  # the caller's volume is left as it was
    assert filtered.std() < 0.6 * volume.std()
    # The same noise in every slice: nothing to remove along z, and the in-plane noise is not touched.
    same_in_every_slice = np.repeat(volume[:1], 60, axis=0)
    np.testing.assert_allclose(antialiased(same_in_every_slice, thin_slices, MODEL_SPACING), same_in_every_slice,
                               atol=1e-3)
    # Fine pixels too: the in-plane noise goes as well.
    assert antialiased(same_in_every_slice, (0.75, 0.8, 0.8), MODEL_SPACING).std() < 0.5 * volume.std()
    # At the model's spacing or coarser there is nothing to do: the same array, not a copy.
    assert antialiased(volume, (2.5, 2.6, 3.0), MODEL_SPACING) is volume


def _noisy_tissue(shape, noise_hu, seed=0):
    """Soft tissue (40 HU) filling the grid, with white noise, and the same without noise."""
    clean = np.full(shape, 40.0, np.float32)
    return clean + np.random.default_rng(seed).normal(0, noise_hu, shape).astype(np.float32), clean


def test_the_predictor_low_passes_a_fine_ct_and_leaves_a_ct_at_its_spacing_alone():
    plain = EnsemblePredictor(DEMO / "nnunet", [0], NO_MIRRORING)
    smoothed = EnsemblePredictor(DEMO / "nnunet", [0], NO_MIRRORING, input_antialiasing=True)
    target = smoothed.target_spacing_zyx
    # What the network sees of a thin-slice, fine-pixel CT's noise (in nnU-Net's normalised units).
    fine = (0.75, 0.8, 0.8)
    noisy, clean = _noisy_tissue((160, 200, 200), noise_hu=48)
    reference = plain.preprocess(clean, fine)[0]
    residual = {name: float(np.std(p.preprocess(p.network_input(noisy, fine), fine)[0] - reference)) for name, p in
                (("plain", plain), ("antialiased", smoothed))}
    assert residual["antialiased"] < 0.4 * residual["plain"], residual
    # A CT on the model's own grid reaches the network exactly as it would without the option.
    noisy, _ = _noisy_tissue((40, 60, 60), noise_hu=20)
    assert smoothed.network_input(noisy, target) is noisy


def _package(tmp_path: Path, **card_changes) -> Path:
    package = tmp_path / "package"
    shutil.copytree(DEMO, package)
    card = json.loads((package / "model.json").read_text())
    (package / "model.json").write_text(json.dumps({**card, **card_changes}))
    return package


@pytest.mark.parametrize("asked", [True, False])
def test_the_app_applies_what_the_package_asks(tmp_path, asked):
    package, predictor = ensemble.cached_predictor(_package(tmp_path, input_antialiasing=asked), NO_MIRRORING)
    assert package.input_antialiasing is asked and predictor.input_antialiasing is asked


def test_a_package_that_does_not_say_runs_without_it_and_a_bad_value_is_refused(tmp_path):
    card = json.loads((DEMO / "model.json").read_text())
    card.pop("input_antialiasing", None)
    (tmp_path / "silent").mkdir()
    silent = _package(tmp_path / "silent")
    (silent / "model.json").write_text(json.dumps(card))
    assert load_model_package(silent).input_antialiasing is False
    (tmp_path / "bad").mkdir()
    with pytest.raises(ModelPackageError, match="input_antialiasing must be true or false"):
        load_model_package(_package(tmp_path / "bad", input_antialiasing="yes"))


def test_a_ct_image_is_segmented_as_its_anti_aliased_volume_in_any_orientation(phantom_cases):
    """The image path (the app's) filters in the canonical orientation and gives the labels of the
    volume path on the CT's own grid."""
    predictor = EnsemblePredictor(DEMO / "nnunet", [0], NO_MIRRORING, input_antialiasing=True)
    ct = phantom_volume_and_label(phantom_cases("FFP"))[0].image
    # Half its pixel size and slice spacing: finer than the model's grid along every axis.
    fine = sitk.Resample(ct, [2 * n for n in ct.GetSize()], sitk.Transform(), sitk.sitkLinear, ct.GetOrigin(),
                         [s / 2 for s in ct.GetSpacing()], ct.GetDirection(), -1024.0, sitk.sitkFloat32)
    lps = canonical(fine)
    expected = predictor.segment(sitk.GetArrayFromImage(lps), lps.GetSpacing()[::-1])
    labels = sitk.GetImageFromArray(predictor.segment_image(fine))
    labels.CopyInformation(fine)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(canonical(labels)), expected)
    assert (expected == 1).any()
    # and the filter mattered: without it the labels differ
    plain = EnsemblePredictor(DEMO / "nnunet", [0], NO_MIRRORING)
    assert not np.array_equal(plain.segment(sitk.GetArrayFromImage(lps), lps.GetSpacing()[::-1]), expected)
