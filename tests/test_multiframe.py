"""Multi-frame CT: a phantom study converted to Legacy Converted Enhanced CT (written by highdicom)
and to Enhanced CT is segmented exactly as the same study in single frames, and its SEG references
the frames of the one instance and passes dciodvfy, as does its SR; sent by a scanner to Orthanc,
it reaches the node by auto-routing and its results come back. A study whose best series cannot be
made into a volume is segmented from the next qualifying one."""
from __future__ import annotations

import copy
import io
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import copy_series, dciodvfy_errors
from pydicom.uid import generate_uid
from pyorthanc import Orthanc

from app.app import AppSettings, run_study
from deploy.local_services import ORTHANC_AET, LocalNode, free_port, wait_until
from renalnode.ensemble import InferenceSettings

DEMO = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo"
FAST = AppSettings(inference=InferenceSettings(use_mirroring=False))
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def _single_frames(case: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted((case / "dicom").iterdir())]


def _legacy_converted(slices: list[pydicom.Dataset]) -> pydicom.Dataset:
    shuffled = slices[1::2] + slices[::2]  # frames stored out of position order, as archives may
    return hd.legacy.LegacyConvertedEnhancedCTImage(shuffled, generate_uid(), 301, generate_uid(), 1)


def _enhanced(legacy: pydicom.Dataset) -> pydicom.Dataset:
    """The same frames and functional groups under the Enhanced CT SOP class (what a scanner sends)."""
    enhanced = copy.deepcopy(legacy)
    enhanced.SOPClassUID = enhanced.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    enhanced.SeriesInstanceUID, enhanced.SOPInstanceUID = generate_uid(), generate_uid()
    enhanced.file_meta.MediaStorageSOPInstanceUID = enhanced.SOPInstanceUID
    return enhanced


def _run(folder: Path, out: Path):
    record = run_study(folder, out, DEMO, FAST)
    assert record.status == "completed", record.reason
    return record, pydicom.dcmread(out / record.outputs["SEG"]["file"])


def _segments_by_position(seg: pydicom.Dataset) -> dict[tuple, np.ndarray]:
    """Each SEG frame's pixels (segment number where set) keyed by its plane position and segment."""
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    frames = {}
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        position = tuple(round(float(v), 2) for v in item.PlanePositionSequence[0].ImagePositionPatient)
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frames[(position, segment)] = frame
    return frames


@pytest.mark.parametrize("kind", ["legacy-converted", "enhanced"])
def test_multiframe_study_is_segmented_as_its_single_frames(phantom_cases, tmp_path, kind):
    case = phantom_cases("FFS")
    single, single_seg = _run(case / "dicom", tmp_path / "single")
    instance = _legacy_converted(_single_frames(case))
    if kind == "enhanced":
        instance = _enhanced(instance)
    study = tmp_path / "study"
    study.mkdir()
    instance.save_as(study / "ct.dcm", enforce_file_format=True)
    multi, seg = _run(study, tmp_path / "multi")

    assert multi.findings == single.findings
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [s.SegmentLabel for s in single_seg.SegmentSequence]
    expected, found = _segments_by_position(single_seg), _segments_by_position(seg)
    assert found.keys() == expected.keys()
    for key, frame in expected.items():
        np.testing.assert_array_equal(found[key], frame, err_msg=str(key))
    # The SEG references frames of the one multi-frame instance.
    referenced = {item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for item in seg.PerFrameFunctionalGroupsSequence}
    assert referenced == {instance.SOPInstanceUID}
    frame_numbers = {int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                     for item in seg.PerFrameFunctionalGroupsSequence}
    assert frame_numbers <= set(range(1, int(instance.NumberOfFrames) + 1))
    for name in ("SEG", "SR"):
        assert dciodvfy_errors(tmp_path / "multi" / multi.outputs[name]["file"]) == [], name


def test_next_qualifying_series_is_used_when_the_best_cannot_be_a_volume(phantom_cases, tmp_path):
    case = phantom_cases("HFS")
    study = tmp_path / "study"
    count = len(list((case / "dicom").iterdir()))
    uids: dict[str, str] = {}

    def as_series(name: str, thickness: str):
        uid = uids.setdefault(name, generate_uid())

        def edit(n, ds):
            ds.SeriesInstanceUID, ds.SliceThickness, ds.SOPInstanceUID = uid, thickness, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return edit

    # The preferred series (2 mm) misses a slice; the other (5 mm, ranked lower) is complete.
    copy_series(case, study / "best", skip=(count // 2,), edit=as_series("best", "2"))
    copy_series(case, study / "next", edit=as_series("next", "5"))
    record = run_study(study, tmp_path / "out", DEMO, FAST)
    assert record.status == "completed", record.reason
    assert record.series_uid == uids["next"]
    assert "missing slice" in record.volume_attempts[uids["best"]]
    assert record.volume_attempts[uids["next"]] == "used"


def test_legacy_converted_ct_goes_scanner_orthanc_node_orthanc(phantom_cases, tmp_path, local_orthanc):
    case = phantom_cases("HFS")
    study = tmp_path / "study"
    study.mkdir()
    instance = _legacy_converted(_single_frames(case))
    instance.save_as(study / "ct.dcm", enforce_file_format=True)
    node_port = free_port()
    pacs = local_orthanc(node_port)
    node = LocalNode(tmp_path / "node", pacs.dicom_port, node_port, (ORTHANC_AET,)).start()
    try:
        # dcmsend proposes the file's own SOP class (storescu's fixed list lacks this one).
        sent = subprocess.run(["/usr/bin/dcmsend", "-aet", "SCANNER", "-aec", pacs.aet, "127.0.0.1",
                               str(pacs.dicom_port), str(study / "ct.dcm")],
                              capture_output=True, text=True, timeout=300)
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: {m: len(s) for m, s in pacs.series_by_modality().items() if m != "CT"}
                   == {"SEG": 1, "SR": 1, "DOC": 1}, 600, 2, what="the results in Orthanc")
        (seg_series,) = pacs.series_by_modality()["SEG"]
        seg = pydicom.dcmread(io.BytesIO(Orthanc(pacs.url).get_instances_id_file(seg_series["Instances"][0])))
        referenced = {item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                      for item in seg.PerFrameFunctionalGroupsSequence}
        assert referenced == {instance.SOPInstanceUID}
    finally:
        node.stop()
