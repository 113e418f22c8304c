"""The TID 1500 SR: a group per kidney and lesion referencing its SEG segment, volumes equal to the
SEG's voxel volumes within 1 %, finding sites with laterality, dciodvfy-clean."""
from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import dciodvfy_errors, phantom_volume_and_label

from operators.postprocessing import find_findings
from operators.seg_writer import write_seg
from operators.sr_writer import write_sr


@pytest.fixture(scope="module")
def written(phantom_cases, tmp_path_factory):
    folder = phantom_cases("HFP")
    volume, label = phantom_volume_and_label(folder)
    _, findings = find_findings(label, volume.image)
    out = tmp_path_factory.mktemp("sr")
    seg = write_seg(volume, findings, "test-model", "1.2.3")
    seg.save_as(out / "seg.dcm")
    sr = write_sr(volume.instances, seg, findings, "test-model", "1.2.3")
    sr.save_as(out / "sr.dcm")
    return volume, findings, out


def test_one_group_per_finding_referencing_its_segment(written):
    volume, findings, out = written
    sr = hd.sr.srread(out / "sr.dcm")
    seg = hd.seg.segread(out / "seg.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(findings)
    voxel_ml = float(np.prod(volume.image.GetSpacing())) / 1000
    for number, (group, finding) in enumerate(zip(groups, findings), start=1):
        assert group.referenced_segment.referenced_segment_numbers == [number]
        assert group.tracking_identifier == finding.name
        assert group.finding_type.value == {"kidney": "64033007", "solid_mass": "108369006",
                                            "cyst": "367643001"}[finding.kind]
        (site,) = group.finding_sites
        assert site.value.value == "64033007"
        assert site.laterality.value == {"right": "24028007", "left": "7771000"}[finding.side]
        values = {m.name.value: m for m in group.get_measurements()}
        seg_voxels = int((seg.get_pixels_by_source_instance(
            [ds.SOPInstanceUID for ds in volume.slices], segment_numbers=[number],
            assert_missing_frames_are_empty=True)[..., 0] > 0).sum())
        assert values["118565006"].value == pytest.approx(seg_voxels * voxel_ml, rel=0.01)
        assert values["118565006"].unit.value == "ml"
        assert values["112031"].value == pytest.approx(finding.mean_hu, abs=0.1)
        assert values["81827009"].value == pytest.approx(finding.measurement.max_diameter_mm, abs=0.1)


def test_sr_is_valid_and_in_the_source_study(written):
    volume, _, out = written
    assert dciodvfy_errors(out / "sr.dcm") == []
    ds = pydicom.dcmread(out / "sr.dcm")
    assert ds.StudyInstanceUID == volume.slices[0].StudyInstanceUID
    assert ds.PatientID == volume.slices[0].PatientID
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.SeriesDescription.startswith("renalnode")
