"""The MONAI Deploy application end to end on phantom studies: SEG, SR and PDF from a DICOM folder,
in any patient position, checked against the ensemble's own labels, the ground truth and dciodvfy;
studies it cannot segment end with a reason; the model is loaded once per process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import (
    copy_series,
    dciodvfy_errors,
    lesion_components,
    load_truth,
    phantom_volume_and_label,
    seg_class_map,
)
from PIL import Image
from pydicom.data import get_testdata_file

import operators.nnunet_ensemble as ensemble
from app.app import AppSettings, run_study
from operators.postprocessing import find_findings
from operators.sr_writer import VOLUME
from renalnode import labels
from renalnode.ensemble import InferenceSettings
from renalnode.model_package import load_model_package
from renalnode.run_record import COMPLETED, KEY_IMAGE_FOLDER, NO_SUITABLE_SERIES, RECORD_NAME, VOLUME_REJECTED

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "renalnode-demo"
# Mirroring off keeps CPU inference at ~25 s a study; the test split of the card was measured so too.
FAST = AppSettings(inference=InferenceSettings(use_mirroring=False))
# The end-to-end Dice may fall this far (absolute) below the card's cross-validation Dice: one
# phantom is a small sample, and the card's figure is a mean over 24 cases.
DICE_MARGIN = 0.10
def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP"])
def test_end_to_end(phantom_cases, tmp_path, position):
    case = phantom_cases(position)
    record = run_study(case / "dicom", tmp_path, DEMO, FAST)
    assert record.status == COMPLETED, record.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_IMAGE_FOLDER, "pdf.dcm", RECORD_NAME, "seg.dcm", "sr.dcm"]
    # One key image per finding, for the node's dashboard (never sent: only the .dcm files are).
    assert sorted(record.key_images) == sorted(f["name"] for f in record.findings)
    assert all(Image.open(tmp_path / path).size[0] == 320 for path in record.key_images.values())
    for name in ("seg.dcm", "sr.dcm", "pdf.dcm"):
        assert dciodvfy_errors(tmp_path / name) == [], name

    # The SEG, read back from disk, is the ensemble's label map after the package's post-processing
    # rules and the documented tiny-component clean-up, voxel for voxel on the CT's own slices.
    volume, truth = phantom_volume_and_label(case)
    package, predictor = ensemble.cached_predictor(DEMO, FAST.inference)
    raw = predictor.segment_image(volume.image, package.network_offsets)
    expected, findings = find_findings(raw, volume.image, package.postprocessing)
    assert (expected != raw).sum() < 0.05 * (raw > 0).sum()  # the rules only drop what lies apart
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    numbers, classes = seg_class_map(seg, volume.slices)
    as_classes = np.vectorize(lambda n: classes.get(n, 0), otypes=[np.uint8])(numbers)
    np.testing.assert_array_equal(as_classes, expected)
    assert [seg.get_segment_description(n).segment_label for n in sorted(classes)] == [f.name for f in findings]

    # Against the ground truth: at least the card's cross-validation Dice minus the margin.
    card = load_model_package(DEMO).card["cross_validation"]["per_class"]
    for value, name in ((labels.KIDNEY, "kidney"), (labels.SOLID_MASS, "solid_mass"), (labels.CYST, "cyst")):
        assert dice(as_classes == value, truth == value) >= card[name]["dice"] - DICE_MARGIN, name

    # Sides: kidneys from the truth's kidney centroids; each lesion segment on the side of the
    # truth kidney nearest to it in patient x, and of the truth lesion it overlaps, if any.
    kidneys = {k["side"]: k["centroid_mm"][0] for k in load_truth(case)["kidneys"]}
    assert set(kidneys) == {"right", "left"}
    midline = (kidneys["right"] + kidneys["left"]) / 2
    truth_lesions = lesion_components(truth)
    for finding in findings:
        expected_side = "right" if finding.measurement.centroid_mm[0] < midline else "left"
        assert finding.side == expected_side, finding.name
        overlapping = [m for _, m in truth_lesions if (m & finding.mask).any()]
        if finding.kind != "kidney" and overlapping:
            best = max(overlapping, key=lambda m: (m & finding.mask).sum())
            truth_x = volume.image.TransformIndexToPhysicalPoint(
                [int(v) for v in np.argwhere(best).mean(axis=0).round().astype(int)[::-1]])[0]
            assert ("right" if truth_x < midline else "left") == finding.side, finding.name

    # The SR: a group per segment, its volume that of the SEG's voxels within 1 %, its laterality the segment's.
    voxel_ml = float(np.prod(volume.image.GetSpacing())) / 1000
    sr = hd.sr.srread(tmp_path / "sr.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(findings)
    for group in groups:
        (number,) = group.referenced_segment.referenced_segment_numbers
        finding = findings[number - 1]
        assert group.tracking_identifier == finding.name
        assert group.finding_sites[0].laterality.meaning.lower() == finding.side
        seg_ml = (numbers == number).sum() * voxel_ml
        assert abs(group.get_measurements(name=VOLUME)[0].value - seg_ml) <= 0.01 * seg_ml

    # Outputs belong to the source study and their UIDs follow from the series and the model version.
    pdf = pydicom.dcmread(tmp_path / "pdf.dcm")
    assert pdf.StudyInstanceUID == seg.StudyInstanceUID == sr.StudyInstanceUID == volume.slices[0].StudyInstanceUID
    assert pdf.EncapsulatedDocument.startswith(b"%PDF")


def test_rerun_in_the_same_process_reuses_the_model_and_writes_the_same_objects(phantom_cases, tmp_path):
    # Its own cache entry: the model is loaded here first.
    settings = AppSettings(inference=InferenceSettings(use_mirroring=False, tile_step_size=1.0))
    first = run_study(phantom_cases("HFS") / "dicom", tmp_path / "first", DEMO, settings)
    loads = ensemble.LOAD_COUNT
    second = run_study(phantom_cases("HFS") / "dicom", tmp_path / "second", DEMO, settings)
    assert first.model["loaded_now"] is True and second.model["loaded_now"] is False
    assert ensemble.LOAD_COUNT == loads
    assert second.outputs == first.outputs
    for name in ("seg.dcm", "sr.dcm"):
        a, b = (pydicom.dcmread(tmp_path / run / name) for run in ("first", "second"))
        assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert set(second.stage_seconds) >= {"read", "select", "volume", "model", "inference", "postprocessing",
                                         "seg", "sr", "pdf"}


def test_localizer_only_study_gives_a_reason_from_the_command_line(phantom_cases, tmp_path):
    """`python -m app -i -o -m` as documented, on a study holding only a localizer."""
    def as_localizer(_, ds):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.SeriesDescription = "Topogram 0.6 T20f"

    study = copy_series(phantom_cases("HFS"), tmp_path / "in", skip=range(3, 1000), edit=as_localizer)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "app", "-i", str(study), "-o", str(out), "-m", str(DEMO)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / RECORD_NAME).read_text())
    # The description marks it first (the rule Orthanc and the node share), then its image type would.
    assert record["status"] == NO_SUITABLE_SERIES and "excluded pattern '(?i)topo'" in record["reason"]
    assert [p.name for p in out.iterdir()] == [RECORD_NAME]


def test_missing_slice_gives_a_reason(phantom_cases, tmp_path):
    study = copy_series(phantom_cases("FFS"), tmp_path / "in", skip={20})
    record = run_study(study, tmp_path / "out", DEMO, FAST)
    assert record.status == VOLUME_REJECTED and "1 missing slice(s) between" in record.reason
    assert [p.name for p in (tmp_path / "out").iterdir()] == [RECORD_NAME]
    assert json.loads((tmp_path / "out" / RECORD_NAME).read_text())["reason"] == record.reason


def test_non_ct_study_through_the_map_environment_gives_a_reason(tmp_path):
    """`python -m app` as a MAP runs it: paths from the HOLOSCAN_* variables; an MR study and a
    file that is not DICOM end with reasons, exit status 0 and no DICOM output."""
    study = tmp_path / "in"
    study.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), study / "mr.dcm")
    (study / "notes.txt").write_text("not a DICOM file")
    env = dict(os.environ, HOLOSCAN_INPUT_PATH=str(study), HOLOSCAN_OUTPUT_PATH=str(tmp_path / "out"),
               HOLOSCAN_MODEL_PATH=str(DEMO.parent))
    result = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / RECORD_NAME).read_text())
    assert record["status"] == NO_SUITABLE_SERIES
    assert "modality MR is not CT" in record["reason"]
    assert "notes.txt" in record["skipped_files"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [RECORD_NAME]
    assert "no suitable series" in result.stderr + result.stdout


@pytest.mark.parametrize("variable, value, message", [
    ("RENALNODE_TILE_STEP_SIZE", "0", "tile step size 0.0 is not in (0, 1]"),
    ("RENALNODE_MIRRORING", "maybe", "not a yes/no value: 'maybe'"),
    ("RENALNODE_PRECISION", "float16", "precision 'float16' is not one of auto, float32, bfloat16"),
    ("RENALNODE_BATCH_SIZE", "-2", "batch size -2 is not a positive number"),
    ("HOLOSCAN_MODEL_PATH", "{tmp}", "no model package (model.json) at {tmp}"),
])
def test_bad_settings_stop_before_anything_runs(phantom_cases, tmp_path, variable, value, message):
    env = dict(os.environ, **{variable: value.format(tmp=tmp_path)})
    message = message.format(tmp=tmp_path)
    result = subprocess.run([sys.executable, "-m", "app", "-i", str(phantom_cases("HFS") / "dicom"),
                             "-o", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert message in result.stderr
