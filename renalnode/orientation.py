"""The one orientation nnU-Net sees (docs/architecture.md): nnU-Net ignores direction cosines, so every volume
is reoriented to LPS before training import and before inference, and labels predicted on the
LPS grid are put back on the source image's own grid afterwards."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

CANONICAL_ORIENTATION = "LPS"


def canonical(image: sitk.Image) -> sitk.Image:
    """The image reoriented to LPS: axes along +x, +y, +z of the patient, same voxels."""
    return sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def back_to_grid(canonical_labels: np.ndarray, canonical_image: sitk.Image, source: sitk.Image) -> np.ndarray:
    """Labels (numpy order) on `canonical_image`'s grid, returned on `source`'s grid. DICOMOrient only
    permutes and flips axes, so this is exact."""
    label_image = sitk.GetImageFromArray(canonical_labels)
    label_image.CopyInformation(canonical_image)
    back = sitk.DICOMOrient(label_image, sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        source.GetDirection()))
    if back.GetSize() != source.GetSize() or not np.allclose(back.GetOrigin(), source.GetOrigin(), atol=1e-3):
        raise RuntimeError("labels did not return to the source image's grid")
    return sitk.GetArrayFromImage(back)
