"""The CT series, read back as a scanner's DICOM, lands on the same world geometry as label.nii.gz
and truth.json, whatever the patient position."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import lesion_components, load_truth, read_dicom_series

POSITIONS = ["HFS", "FFS", "HFP", "FFP"]


@pytest.mark.parametrize("position", POSITIONS)
def test_dicom_geometry_matches_label_and_truth(phantom_cases, position):
    folder = phantom_cases(position)
    ct = read_dicom_series(folder / "dicom")
    label_img = sitk.ReadImage(str(folder / "label.nii.gz"))
    truth = load_truth(folder)

    assert ct.GetSize() == label_img.GetSize() == tuple(truth["size_ijk"])
    np.testing.assert_allclose(ct.GetSpacing(), label_img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(ct.GetOrigin(), label_img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(ct.GetDirection(), label_img.GetDirection(), atol=1e-6)

    label = sitk.GetArrayFromImage(label_img)
    components = lesion_components(label)
    assert truth["lesions"], "the test case must hold lesions"
    assert len(components) == len(truth["lesions"])
    spacing = np.array(ct.GetSpacing())
    for lesion in truth["lesions"]:
        # Centroid from the DICOM-read grid: SimpleITK maps the mean voxel index to patient space.
        centroids = [(value, np.array(ct.TransformContinuousIndexToPhysicalPoint(
            np.argwhere(mask).mean(axis=0)[::-1].tolist()))) for value, mask in components]
        distances = [np.abs(c - lesion["centroid_mm"]) for value, c in centroids if value == lesion["label"]]
        nearest = min(distances, key=lambda d: d.max())
        assert np.all(nearest <= spacing / 2), (lesion["id"], nearest)


def test_ct_pixels_equal_image_nifti(phantom_cases):
    folder = phantom_cases("FFS")
    ct = sitk.GetArrayFromImage(read_dicom_series(folder / "dicom"))
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "image.nii.gz")))
    np.testing.assert_array_equal(ct, image)


def test_same_patient_in_every_position(phantom_cases):
    """The anatomy does not depend on the position: every kidney and lesion stays where it is in
    patient coordinates, so a flipped axis in any position would show here."""
    reference = load_truth(phantom_cases("HFS"))
    for position in POSITIONS[1:]:
        truth = load_truth(phantom_cases(position))
        assert truth["patient_position"] == position
        for key in ("kidneys", "lesions"):
            assert len(truth[key]) == len(reference[key])
            for a, b in zip(truth[key], reference[key]):
                assert a["voxels"] == b["voxels"]
                np.testing.assert_allclose(a["centroid_mm"], b["centroid_mm"], atol=1e-3)


def test_kidney_sides_in_patient_coordinates(phantom_cases):
    """Right kidney at patient -x, left at +x (LPS), in every position."""
    for position in POSITIONS:
        truth = load_truth(phantom_cases(position))
        sides = {k["side"]: k["centroid_mm"][0] for k in truth["kidneys"]}
        assert set(sides) == {"right", "left"}
        assert sides["right"] < sides["left"]
        for lesion in truth["lesions"]:
            assert abs(lesion["centroid_mm"][0] - sides[lesion["side"]]) < abs(
                lesion["centroid_mm"][0] - sides["left" if lesion["side"] == "right" else "right"])
