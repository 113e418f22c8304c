"""`renalnode phantom` as a user runs it: the folder layout, reruns, bad input and crash leftovers."""
from __future__ import annotations

import json

import pydicom
from conftest import run_renalnode


def test_writes_case_folders_and_reports_progress(tmp_path):
    result = run_renalnode("phantom", "--out", str(tmp_path), "--cases", "2", "--seed", "7", "--small")
    assert "[1/2] phantom_s7_000" in result.stderr and "[2/2] phantom_s7_001" in result.stderr
    for case_id in ("phantom_s7_000", "phantom_s7_001"):
        folder = tmp_path / case_id
        assert sorted(p.name for p in folder.iterdir()) == ["dicom", "image.nii.gz", "label.nii.gz", "truth.json"]
        truth = json.loads((folder / "truth.json").read_text())
        assert truth["case_id"] == case_id and truth["size_ijk"][:2] == [128, 128]
        assert len(list((folder / "dicom").iterdir())) == truth["size_ijk"][2]
    # No patient name or ID in what the command prints.
    for folder in tmp_path.iterdir():
        ds = pydicom.dcmread(next((folder / "dicom").iterdir()), stop_before_pixels=True)
        assert str(ds.PatientID) not in result.stderr + result.stdout
        assert str(ds.PatientName).split("^")[0] not in result.stderr + result.stdout


def test_rerun_keeps_cases_and_replaces_partial_leftovers(tmp_path):
    run_renalnode("phantom", "--out", str(tmp_path), "--cases", "1", "--seed", "8", "--small")
    before = (tmp_path / "phantom_s8_000" / "truth.json").stat().st_mtime_ns
    # A crash while writing case 1 leaves only its temporary folder behind.
    (tmp_path / ".phantom_s8_001.partial" / "dicom").mkdir(parents=True)
    result = run_renalnode("phantom", "--out", str(tmp_path), "--cases", "2", "--seed", "8", "--small")
    assert "phantom_s8_000: already there, kept" in result.stderr
    assert (tmp_path / "phantom_s8_000" / "truth.json").stat().st_mtime_ns == before
    assert (tmp_path / "phantom_s8_001" / "truth.json").exists()
    assert not (tmp_path / ".phantom_s8_001.partial").exists()


def test_existing_case_with_other_parameters_is_an_error(tmp_path):
    run_renalnode("phantom", "--out", str(tmp_path), "--cases", "1", "--seed", "9", "--small")
    result = run_renalnode("phantom", "--out", str(tmp_path), "--cases", "1", "--seed", "9", "--small",
                           "--position", "FFS", check=False)
    assert result.returncode == 2
    assert "phantom_s9_000 exists but was made with" in result.stderr


def test_bad_arguments_are_refused(tmp_path):
    for args, message in ((["--cases", "0"], "--cases must be at least 1"),
                          (["--position", "LAT"], "invalid choice"),
                          (["--transfer-syntax", "jpeg2000"], "invalid choice")):
        result = run_renalnode("phantom", "--out", str(tmp_path), *args, check=False)
        assert result.returncode != 0 and message in result.stderr
    assert not any(tmp_path.iterdir())
