"""The ensemble operator with the bundled demo model: loaded once per process, folds averaged on
probabilities, labels back on the CT's own grid in any patient position."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

import operators.nnunet_ensemble as ensemble
from conftest import phantom_volume_and_label
from renalnode.ensemble import EnsemblePredictor
from renalnode.model_package import load_model_package

DEMO = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo"


def _ct(folder):
    return phantom_volume_and_label(folder)[0].image


def test_model_is_loaded_once_per_process():
    before = ensemble.LOAD_COUNT
    first = ensemble.cached_predictor(DEMO, use_mirroring=False)
    second = ensemble.cached_predictor(DEMO, use_mirroring=False)
    assert second[1] is first[1]
    assert ensemble.LOAD_COUNT == before + (0 if before else 1)
    assert ensemble.LOAD_COUNT >= 1


def test_folds_are_averaged_on_probabilities(phantom_cases):
    package = load_model_package(DEMO)
    ct = sitk.DICOMOrient(_ct(phantom_cases("HFS")), "LPS")
    image = sitk.GetArrayFromImage(ct)[None].astype(np.float32)
    props = {"spacing": list(ct.GetSpacing()[::-1])}

    def probabilities(folds):
        predictor = EnsemblePredictor(package.nnunet_dir, folds, use_mirroring=False).predictor
        return predictor.predict_single_npy_array(image, props, None, None, True)

    labels, both = probabilities([0, 1])
    (_, p0), (_, p1) = probabilities([0]), probabilities([1])
    np.testing.assert_allclose(both, (p0 + p1) / 2, atol=1e-4)
    np.testing.assert_array_equal(labels, np.argmax(both, axis=0))


def test_labels_return_to_the_ct_grid_in_every_position(phantom_cases):
    """The same patient scanned head- or feet-first, supine or prone, gets the same labels in
    patient space: a flipped axis anywhere would break this."""
    _, predictor = ensemble.cached_predictor(DEMO, use_mirroring=False)
    reference = None
    for position in ("HFS", "FFS", "HFP"):
        ct = _ct(phantom_cases(position))
        labels = ensemble.segment_ct(ct, predictor)
        assert labels.shape == sitk.GetArrayViewFromImage(ct).shape
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(ct)
        in_lps = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
        if reference is None:
            reference = in_lps
            assert (reference == 1).sum() > 1000  # the demo model finds kidneys
        else:
            np.testing.assert_array_equal(in_lps, reference)
