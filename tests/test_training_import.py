"""`renalnode train import` from each source, and each way an import must fail cleanly."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import run_renalnode
from pydicom.sr.codedict import codes

LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _cases(phantom_set: Path, n: int = 3) -> list[Path]:
    return sorted(p for p in phantom_set.iterdir() if p.is_dir())[:n]


def _import(workspace: Path, *args: str, check: bool = True):
    return run_renalnode("train", "import", "--workspace", str(workspace), "--dataset", "7", "--name", "T", *args,
                         check=check)


def _assert_imported(workspace: Path, originals: dict[str, Path]) -> None:
    """Each imported case is the original CT and label, reoriented to LPS, voxel for voxel."""
    raw = workspace / "nnUNet_raw" / "Dataset007_T"
    dataset = json.loads((raw / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "kidney": 1, "solid_mass": 2, "cyst": 3}
    assert dataset["numTraining"] == len(originals)
    for case_id, folder in originals.items():
        image = sitk.ReadImage(str(raw / "imagesTr" / f"{case_id}_0000.nii.gz"))
        label = sitk.ReadImage(str(raw / "labelsTr" / f"{case_id}.nii.gz"))
        assert image.GetDirection() == LPS and label.GetDirection() == LPS
        expected_label = sitk.DICOMOrient(sitk.ReadImage(str(folder / "label.nii.gz")), "LPS")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(expected_label))
        np.testing.assert_allclose(label.GetOrigin(), expected_label.GetOrigin(), atol=1e-3)
        expected_image = sitk.DICOMOrient(sitk.ReadImage(str(folder / "image.nii.gz")), "LPS")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(expected_image))


def test_import_phantom_with_test_split(phantom_set, tmp_path):
    result = _import(tmp_path, "--source", "phantom", "--input", str(phantom_set), "--test-fraction", "0.34")
    assert "4 training and 2 test cases" in result.stdout
    raw = tmp_path / "nnUNet_raw" / "Dataset007_T"
    dataset = json.loads((raw / "dataset.json").read_text())
    assert len(dataset["renalnode"]["test_cases"]) == 2
    assert sorted(p.name for p in (raw / "labelsTs").iterdir()) == sorted(
        f"{c}.nii.gz" for c in dataset["renalnode"]["test_cases"])


def test_import_phantom_in_other_positions_lands_in_lps(tmp_path):
    out = tmp_path / "ph"
    for position in ("FFS", "HFP"):
        run_renalnode("phantom", "--out", str(out / position), "--cases", "1", "--seed", "4", "--small",
                      "--position", position)
    flat = tmp_path / "flat"
    flat.mkdir()
    originals = {}
    for position in ("FFS", "HFP"):
        (case,) = (out / position).iterdir()
        shutil.copytree(case, flat / f"{position}_{case.name}")
        originals[f"{position}_{case.name}"] = flat / f"{position}_{case.name}"
    _import(tmp_path / "ws", "--source", "phantom", "--input", str(flat))
    _assert_imported(tmp_path / "ws", originals)
    # Same patient in two positions: after reorientation the two label maps are identical.
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in
              sorted((tmp_path / "ws" / "nnUNet_raw" / "Dataset007_T" / "labelsTr").iterdir())]
    np.testing.assert_array_equal(labels[0], labels[1])


def test_import_kits_layout(phantom_set, tmp_path):
    kits = _kits_copy(phantom_set, tmp_path)
    _import(tmp_path / "ws", "--source", "kits", "--input", str(kits))
    _assert_imported(tmp_path / "ws", {f"case_{i:05d}": case for i, case in enumerate(_cases(phantom_set))})


def test_import_nifti_and_nrrd_with_label_map(phantom_set, tmp_path):
    """MITK-style NRRD pairs whose label values differ from renalnode's, mapped by value."""
    folder = tmp_path / "mitk"
    folder.mkdir()
    originals = {}
    for i, case in enumerate(_cases(phantom_set)):
        image = sitk.ReadImage(str(case / "image.nii.gz"))
        label = sitk.ReadImage(str(case / "label.nii.gz"))
        relabelled = sitk.ChangeLabel(label, changeMap={1: 10, 2: 20, 3: 30})
        ext = ".nrrd" if i % 2 else ".nii.gz"
        sitk.WriteImage(image, str(folder / f"patient{i}{ext}"))
        sitk.WriteImage(relabelled, str(folder / f"patient{i}-label{ext}"))
        originals[f"patient{i}"] = case
    _import(tmp_path / "ws", "--source", "nifti", "--input", str(folder),
            "--label-map", "10=kidney,20=solid_mass,30=cyst")
    _assert_imported(tmp_path / "ws", originals)


def test_import_slicer_segment_names(phantom_set, tmp_path):
    """A 3D Slicer .seg.nrrd names its segments in the header: map them by name."""
    folder = tmp_path / "slicer"
    folder.mkdir()
    originals = {}
    for i, case in enumerate(_cases(phantom_set)):
        label = sitk.ChangeLabel(sitk.ReadImage(str(case / "label.nii.gz")), changeMap={1: 5, 2: 6, 3: 7})
        for n, (name, value) in enumerate((("Kidney", 5), ("Tumor", 6), ("Cyst", 7))):
            label.SetMetaData(f"Segment{n}_Name", name)
            label.SetMetaData(f"Segment{n}_LabelValue", str(value))
        sitk.WriteImage(sitk.ReadImage(str(case / "image.nii.gz")), str(folder / f"ct{i}.nrrd"))
        sitk.WriteImage(label, str(folder / f"ct{i}.seg.nrrd"))
        originals[f"ct{i}"] = case
    _import(tmp_path / "ws", "--source", "nifti", "--input", str(folder), "--label-suffix", ".seg",
            "--label-map", "Kidney=kidney,Tumor=solid_mass,Cyst=cyst")
    _assert_imported(tmp_path / "ws", originals)


def _write_seg(case: Path, out: Path) -> None:
    """A DICOM SEG of the phantom's label map, made with highdicom as a PACS would hold it."""
    datasets = [pydicom.dcmread(p) for p in sorted((case / "dicom").iterdir())]
    normal = np.cross(*np.array(datasets[0].ImageOrientationPatient, float).reshape(2, 3))
    datasets.sort(key=lambda ds: float(normal @ np.array(ds.ImagePositionPatient, float)))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "label.nii.gz")))  # slice order = along normal
    descriptions = []
    for number, (name, category, prop) in enumerate((
            ("kidney", codes.SCT.Organ, codes.SCT.Kidney),
            ("solid mass", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
            ("cyst", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Cyst)), start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    masks = np.stack([label == v for v in (1, 2, 3)], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1", omit_empty_frames=True)
    seg.save_as(out)


def test_import_dicom_ct_with_seg(phantom_set, tmp_path):
    pacs = tmp_path / "pacs"
    originals = {}
    from training.dataset_import.dicom_seg import case_id_of

    for i, case in enumerate(_cases(phantom_set)):
        shutil.copytree(case / "dicom", pacs / f"study{i}" / "ct")
        _write_seg(case, pacs / f"study{i}" / "seg.dcm")
        series_uid = json.loads((case / "truth.json").read_text())["series_instance_uid"]
        originals[case_id_of(series_uid)] = case
    (pacs / "README.txt").write_text("not DICOM: skipped")
    _import(tmp_path / "ws", "--source", "dicom", "--input", str(pacs))
    _assert_imported(tmp_path / "ws", originals)


def _nothing_written(workspace: Path) -> bool:
    raw = workspace / "nnUNet_raw"
    return not raw.exists() or not any(raw.iterdir())


def _kits_copy(phantom_set: Path, tmp_path: Path) -> Path:
    kits = tmp_path / "kits"
    for i, case in enumerate(_cases(phantom_set)):
        folder = kits / f"case_{i:05d}"
        folder.mkdir(parents=True)
        shutil.copy(case / "image.nii.gz", folder / "imaging.nii.gz")
        shutil.copy(case / "label.nii.gz", folder / "segmentation.nii.gz")
    return kits


@pytest.mark.parametrize("damage, message", [
    ("geometry", "case_00001: label geometry does not match the CT"),
    ("values", "case_00001: unknown label values [7]"),
    ("unreadable", "case_00001: cannot read segmentation.nii.gz"),
    ("missing", "case_00001: segmentation.nii.gz is missing"),
])
def test_bad_case_fails_naming_it_and_writes_nothing(phantom_set, tmp_path, damage, message):
    kits = _kits_copy(phantom_set, tmp_path)
    bad = kits / "case_00001" / "segmentation.nii.gz"
    label = sitk.ReadImage(str(bad))
    if damage == "geometry":
        label.SetSpacing([s * 1.5 for s in label.GetSpacing()])
        sitk.WriteImage(label, str(bad))
    elif damage == "values":
        array = sitk.GetArrayFromImage(label)
        array[0, 0, 0] = 7
        broken = sitk.GetImageFromArray(array)
        broken.CopyInformation(label)
        sitk.WriteImage(broken, str(bad))
    elif damage == "unreadable":
        bad.write_bytes(b"this is not a volume")
    else:
        bad.unlink()
    result = _import(tmp_path / "ws", "--source", "kits", "--input", str(kits), check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert _nothing_written(tmp_path / "ws")


def test_label_map_must_cover_every_value(phantom_set, tmp_path):
    kits = _kits_copy(phantom_set, tmp_path)
    result = _import(tmp_path / "ws", "--source", "kits", "--input", str(kits), "--label-map", "1=kidney,2=cyst",
                     check=False)
    assert result.returncode == 2 and "label values [3] are not in the label map" in result.stderr
    assert _nothing_written(tmp_path / "ws")


def test_existing_dataset_needs_overwrite(phantom_set, tmp_path):
    kits = _kits_copy(phantom_set, tmp_path)
    _import(tmp_path / "ws", "--source", "kits", "--input", str(kits))
    result = _import(tmp_path / "ws", "--source", "kits", "--input", str(kits), check=False)
    assert result.returncode == 2 and "pass --overwrite" in result.stderr
    _import(tmp_path / "ws", "--source", "kits", "--input", str(kits), "--overwrite")
