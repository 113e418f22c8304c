"""The phantom CT series is DICOM as a scanner writes it, valid for dciodvfy in every transfer syntax."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import dciodvfy_errors, load_truth, read_dicom_series
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

SYNTAXES = {"explicit": ExplicitVRLittleEndian, "jpegls": JPEGLSLossless, "rle": RLELossless}


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_dciodvfy_reports_no_errors(phantom_cases, syntax):
    files = sorted((phantom_cases("HFS", syntax) / "dicom").iterdir())
    for path in (files[0], files[len(files) // 2], files[-1]):
        assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == SYNTAXES[syntax]
        assert dciodvfy_errors(path) == [], path.name


def test_dciodvfy_does_catch_errors(phantom_cases, tmp_path):
    """The validator check above is only worth something if a broken file fails it."""
    path = sorted((phantom_cases("HFS") / "dicom").iterdir())[0]
    ds = pydicom.dcmread(path)
    del ds.Modality
    del ds.ImagePositionPatient
    ds.save_as(tmp_path / "broken.dcm")
    assert dciodvfy_errors(tmp_path / "broken.dcm")


@pytest.mark.parametrize("syntax", ["jpegls", "rle"])
def test_compressed_pixels_decode_losslessly(phantom_cases, syntax):
    plain = sitk.GetArrayFromImage(read_dicom_series(phantom_cases("HFS") / "dicom"))
    compressed_files = sorted((phantom_cases("HFS", syntax) / "dicom").iterdir())
    decoded_by_gdcm = sitk.GetArrayFromImage(read_dicom_series(compressed_files[0].parent))
    np.testing.assert_array_equal(decoded_by_gdcm, plain)
    # pydicom's own decoders (pyjpegls, pylibjpeg-rle) agree with GDCM on a slice.
    ds = pydicom.dcmread(compressed_files[0])
    assert ds.pixel_array.dtype == np.int16
    assert ds.pixel_array.shape == plain.shape[1:]


def test_scanner_attributes_consistent_across_the_series(phantom_cases):
    folder = phantom_cases("FFS")
    truth = load_truth(folder)
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((folder / "dicom").iterdir())]
    assert len(datasets) == truth["size_ijk"][2]
    for attribute in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName",
                      "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "PatientPosition"):
        assert len({str(getattr(ds, attribute)) for ds in datasets}) == 1, attribute
    first = datasets[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.Modality == "CT" and first.BodyPartExamined == "ABDOMEN" and first.PatientPosition == "FFS"
    assert first.SeriesInstanceUID == truth["series_instance_uid"]
    assert (first.BitsAllocated, first.PixelRepresentation, float(first.RescaleSlope)) == (16, 1, 1.0)
    assert first.StudyDescription and first.SeriesDescription and str(first.PatientName)
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert sorted(ds.InstanceNumber for ds in datasets) == list(range(1, len(datasets) + 1))
    # Instance 1 is the most cranial slice; positions step by the slice thickness along the normal.
    by_instance = sorted(datasets, key=lambda ds: ds.InstanceNumber)
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in by_instance])
    assert np.allclose(np.diff(z), -float(first.SliceThickness))
