"""Phantom content: realistic CT numbers per tissue, lesions of the promised kinds and sizes,
truth.json consistent with the label map, and the same case from the same seed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from conftest import PHANTOM_SEED, lesion_components, load_truth
from training.phantom.generate import make_case, write_case
from training.phantom.tissues import Tissue as T

# Contrast-enhanced abdominal CT (portal venous / nephrographic phase), HU of tissue interiors.
REALISTIC_HU = {
    T.AIR: (-1024, -950), T.SUBCUTANEOUS_FAT: (-130, -70), T.VISCERAL_FAT: (-130, -60), T.MUSCLE: (35, 75),
    T.LIVER: (80, 135), T.SPLEEN: (90, 140), T.ARTERY: (130, 270), T.VEIN: (110, 170), T.BONE_CORTEX: (500, 1100),
    T.BONE_MARROW: (150, 350), T.GAS: (-1024, -850), T.KIDNEY_CORTEX: (140, 230), T.KIDNEY_MEDULLA: (100, 180),
    T.RENAL_SINUS_FAT: (-120, -50), T.CYST: (-10, 20), T.SOLID_MASS: (40, 170),
}


@pytest.fixture(scope="module")
def cases():
    return [make_case(PHANTOM_SEED, i, "HFS", small=i > 0) for i in range(4)]


def test_tissue_hu_ranges(cases):
    seen = set()
    for case in cases:
        hu = case.hu
        for tissue, (lo, hi) in REALISTIC_HU.items():
            # Interior voxels only: partial volume at the edges is expected to mix tissues.
            interior = ndimage.binary_erosion(case.tissue == tissue, iterations=1)
            if interior.sum() < 20:
                continue
            seen.add(tissue)
            median = float(np.median(hu[interior]))
            assert lo <= median <= hi, (case.case_id, tissue.name, median)
    assert seen >= set(REALISTIC_HU) - {T.CYST, T.SOLID_MASS}
    assert {T.CYST, T.SOLID_MASS} & seen


def test_full_size_case_is_scanner_sized(cases):
    acq = cases[0].acquisition
    assert acq.matrix == 512
    assert 0.6 <= acq.pixel_mm <= 0.9
    assert 1.0 <= acq.slice_mm <= 5.0
    assert cases[0].stored.dtype == np.int16


def test_lesions_and_kidneys_as_promised(cases):
    kinds = set()
    for case in cases:
        assert 1 <= len(case.anatomy.kidneys) <= 2
        for lesion in case.anatomy.lesions:
            kinds.add((lesion.kind, lesion.growth))
            assert 8 <= 2 * lesion.radius <= 60
        per_kidney = [sum(lesion.side == k.side for lesion in case.anatomy.lesions) for k in case.anatomy.kidneys]
        assert all(n <= 3 for n in per_kidney)
    assert {kind for kind, _ in kinds} == {"cyst", "solid_mass"}


def test_single_kidney_cases_occur(cases):
    # About one case in ten has a single kidney; seed 0's first case is one of them.
    single = make_case(0, 0, "HFS", small=True)
    assert len(single.anatomy.kidneys) == 1
    assert (single.label == 1).any()
    assert all(len(case.anatomy.kidneys) == 2 for case in cases)


def test_truth_volumes_equal_label_voxels(phantom_cases):
    folder = phantom_cases("HFP")
    truth = load_truth(folder)
    label_img = sitk.ReadImage(str(folder / "label.nii.gz"))
    label = sitk.GetArrayFromImage(label_img)
    voxel_ml = float(np.prod(label_img.GetSpacing())) / 1000
    assert truth["voxel_volume_ml"] == pytest.approx(voxel_ml, rel=1e-6)

    # Kidneys: split the kidney label at the midpoint between the two kidneys' patient x.
    x_of_column = np.array([label_img.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(label.shape[2])])
    midline = np.mean([k["centroid_mm"][0] for k in truth["kidneys"]])
    for kidney in truth["kidneys"]:
        side = x_of_column < midline if kidney["side"] == "right" else x_of_column > midline
        count = int(((label == 1) & side[None, None, :]).sum())
        assert kidney["voxels"] == count
        assert kidney["volume_ml"] == pytest.approx(count * voxel_ml, abs=1e-4)

    counts = sorted(int(mask.sum()) for _, mask in lesion_components(label))
    assert counts == sorted(lesion["voxels"] for lesion in truth["lesions"])
    for lesion in truth["lesions"]:
        assert lesion["volume_ml"] == pytest.approx(lesion["voxels"] * voxel_ml, abs=1e-4)
        assert 0 < lesion["max_diameter_mm"] <= lesion["nominal_diameter_mm"] * 2.6


def test_same_seed_same_case(tmp_path):
    first, second = (write_case(make_case(11, 0, "FFS", small=True), tmp_path / name) for name in ("a", "b"))
    assert json.loads((first / "truth.json").read_text()) == json.loads((second / "truth.json").read_text())
    for a, b in zip(sorted((first / "dicom").iterdir()), sorted((second / "dicom").iterdir())):
        assert a.read_bytes() == b.read_bytes()
    other = make_case(12, 0, "FFS", small=True)
    assert not np.array_equal(other.label, make_case(11, 0, "FFS", small=True).label)
