"""Post-processing on ground-truth label maps: sides from patient coordinates in every position,
lesion instances with their measurements, and removal of tiny components."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import load_truth, phantom_volume_and_label

from operators.postprocessing import MIN_LESION_ML, find_findings


def _inputs(folder):
    volume, label = phantom_volume_and_label(folder)
    return volume.image, label


@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP", "FFP"])
def test_findings_match_truth_in_every_position(phantom_cases, position):
    folder = phantom_cases(position)
    truth = load_truth(folder)
    ct, label = _inputs(folder)
    cleaned, findings = find_findings(label, ct)
    kidneys = {f.side: f for f in findings if f.kind == "kidney"}
    assert set(kidneys) == {k["side"] for k in truth["kidneys"]}
    for k in truth["kidneys"]:
        assert kidneys[k["side"]].measurement.voxels == k["voxels"]
        assert 60 < kidneys[k["side"]].mean_hu < 250  # enhancing parenchyma with sinus fat and urine
    lesions = [f for f in findings if f.kind != "kidney"]
    assert len(lesions) == len(truth["lesions"])
    for t in truth["lesions"]:
        match = min(lesions, key=lambda f: np.linalg.norm(np.subtract(f.measurement.centroid_mm, t["centroid_mm"])))
        assert match.kind == t["class"] and match.side == t["side"]
        assert match.measurement.volume_ml == pytest.approx(t["volume_ml"], abs=1e-3)
        assert match.measurement.max_diameter_mm == pytest.approx(t["max_diameter_mm"], abs=1e-2)
    numbers = sorted((f.kind, f.number) for f in lesions)
    assert len(set(numbers)) == len(numbers)


def test_tiny_components_are_removed(phantom_cases):
    ct, label = _inputs(phantom_cases("HFS"))
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000
    assert voxel_ml < MIN_LESION_ML  # one voxel is below the limit
    kidney_voxel = tuple(np.argwhere(label == 1)[0])
    speck_in_kidney = tuple(np.argwhere(label == 1)[len(np.argwhere(label == 1)) // 2])
    noisy = label.copy()
    noisy[speck_in_kidney] = 3            # one-voxel "cyst" inside the kidney: becomes kidney
    noisy[2, 2, 2] = 2                     # one-voxel "mass" in the air: becomes background
    noisy[3:5, 3:5, 3:5] = 1               # a kidney fragment far from any kidney: background
    cleaned, findings = find_findings(noisy, ct)
    assert cleaned[speck_in_kidney] == 1 and cleaned[2, 2, 2] == 0 and not cleaned[3:5, 3:5, 3:5].any()
    assert cleaned[kidney_voxel] == 1
    np.testing.assert_array_equal(cleaned, label)
