"""A CT series becomes one volume with exact geometry in every position and transfer syntax, and
broken series are refused with their reason."""
from __future__ import annotations

import copy
import random

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from operators.ct_volume import VolumeError, series_to_volume


def read_slices(folder):
    slices = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    random.Random(0).shuffle(slices)  # file order must not matter
    return slices


@pytest.mark.parametrize("position, syntax", [("HFS", "explicit"), ("FFS", "explicit"), ("HFP", "explicit"),
                                              ("FFP", "explicit"), ("HFS", "jpegls"), ("HFS", "rle")])
def test_volume_matches_the_phantom_grid(phantom_cases, position, syntax):
    case = phantom_cases(position, syntax)
    volume = series_to_volume(read_slices(case / "dicom")).image
    reference = sitk.ReadImage(str(case / "image.nii.gz"))
    assert volume.GetSize() == reference.GetSize()
    np.testing.assert_allclose(volume.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(volume.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(volume.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume), sitk.GetArrayFromImage(reference))


def _sorted(phantom_cases):
    slices = [pydicom.dcmread(p) for p in sorted((phantom_cases("HFS") / "dicom").iterdir())]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_identical_duplicates_are_merged(phantom_cases):
    slices = _sorted(phantom_cases)
    volume = series_to_volume(slices + [copy.deepcopy(slices[5])]).image
    assert volume.GetSize()[2] == len(slices)


def test_conflicting_duplicates_are_refused(phantom_cases):
    slices = _sorted(phantom_cases)
    other = copy.deepcopy(slices[6])
    other.ImagePositionPatient = slices[5].ImagePositionPatient
    with pytest.raises(VolumeError, match="two different slices at the same position"):
        series_to_volume(slices + [other])


def test_missing_slice_is_refused(phantom_cases):
    slices = _sorted(phantom_cases)
    with pytest.raises(VolumeError, match="1 missing slice"):
        series_to_volume(slices[:10] + slices[11:])


def test_unequal_spacing_is_refused(phantom_cases):
    slices = [copy.deepcopy(ds) for ds in _sorted(phantom_cases)]
    position = [float(v) for v in slices[10].ImagePositionPatient]
    position[2] += 0.4 * float(slices[0].SliceThickness)
    slices[10].ImagePositionPatient = position
    with pytest.raises(VolumeError, match="unequal slice spacing"):
        series_to_volume(slices)


def test_gantry_tilt_is_refused(phantom_cases):
    slices = [copy.deepcopy(ds) for ds in _sorted(phantom_cases)]
    for k, ds in enumerate(slices):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.3 * k, z]  # a tilted gantry shifts each slice along y
    with pytest.raises(VolumeError, match="gantry tilt"):
        series_to_volume(slices)


def test_too_few_or_inconsistent_slices(phantom_cases):
    slices = _sorted(phantom_cases)
    with pytest.raises(VolumeError, match="at least 2"):
        series_to_volume(slices[:1])
    odd = copy.deepcopy(slices[3])
    odd.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    with pytest.raises(VolumeError, match="differ in orientation"):
        series_to_volume(slices[:3] + [odd])
