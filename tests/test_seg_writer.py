"""The SEG: read back from disk with highdicom it equals the label map on the CT's grid, voxel for
voxel, in every patient position; codes, colours and laterality per the contract; dciodvfy-clean;
the same input writes the same UIDs."""
from __future__ import annotations

import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import dciodvfy_errors, phantom_volume_and_label

from operators.postprocessing import find_findings
from operators.seg_writer import write_seg


def _seg_for(folder, tmp_path):
    volume, label = phantom_volume_and_label(folder)
    _, findings = find_findings(label, volume.image)
    seg = write_seg(volume, findings, "test-model", "1.2.3")
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    return volume, label, findings, path


@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP"])
def test_seg_read_back_equals_label_map(phantom_cases, tmp_path, position):
    volume, label, findings, path = _seg_for(phantom_cases(position), tmp_path)
    seg = hd.seg.segread(path)
    uids = [ds.SOPInstanceUID for ds in volume.slices]
    pixels = seg.get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True)
    assert pixels.shape == (*label.shape, len(findings))
    for index, finding in enumerate(findings):
        np.testing.assert_array_equal(pixels[..., index] > 0, finding.mask)
    # Rebuilt as a label map it is the input label map, voxel for voxel.
    rebuilt = np.zeros_like(label)
    for index, finding in enumerate(findings):
        rebuilt[pixels[..., index] > 0] = {"kidney": 1, "solid_mass": 2, "cyst": 3}[finding.kind]
    np.testing.assert_array_equal(rebuilt, label)


def test_seg_codes_colours_and_laterality(phantom_cases, tmp_path):
    _, _, findings, path = _seg_for(phantom_cases("FFS"), tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == pydicom.dcmread(next((phantom_cases("FFS") / "dicom").iterdir())).StudyInstanceUID
    for item, finding in zip(ds.SegmentSequence, findings):
        assert item.SegmentLabel == finding.name
        prop = item.SegmentedPropertyTypeCodeSequence[0].CodeValue
        category = item.SegmentedPropertyCategoryCodeSequence[0].CodeValue
        expected = {"kidney": ("64033007", "91723000"), "solid_mass": ("108369006", "49755003"),
                    "cyst": ("367643001", "49755003")}[finding.kind]
        assert (prop, category) == expected
        side = item.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeValue
        assert side == {"right": "24028007", "left": "7771000"}[finding.side]
        assert item.AnatomicRegionSequence[0].CodeValue == "64033007"
        assert item.SegmentAlgorithmName == "test-model"
        l_star, a_star, b_star = (int(v) for v in item.RecommendedDisplayCIELabValue)
        # Encoded CIELab (PS3.3 C.10.7.1.1): a*, b* offset by 128 and scaled to 16 bits.
        a, b = a_star / 65535 * 255 - 128, b_star / 65535 * 255 - 128
        hue = {"kidney": a < -40 and b > 30, "solid_mass": a > 40 and b > 30, "cyst": b < -40}[finding.kind]
        assert hue, (finding.kind, a, b)


def test_seg_passes_dciodvfy_and_uids_are_reproducible(phantom_cases, tmp_path):
    _, _, _, first = _seg_for(phantom_cases("HFP"), tmp_path / "a")
    _, _, _, second = _seg_for(phantom_cases("HFP"), tmp_path / "b")
    assert dciodvfy_errors(first) == []
    assert "Segmented Property Type Modifier" not in subprocess.run(["dciodvfy", str(first)], capture_output=True,
                                                                    text=True).stderr
    a, b = pydicom.dcmread(first), pydicom.dcmread(second)
    assert (a.SeriesInstanceUID, a.SOPInstanceUID) == (b.SeriesInstanceUID, b.SOPInstanceUID)
