"""Size and position of a segmented object in patient coordinates: the figures that truth.json,
the SR and the PDF report give for every kidney and lesion."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist


@dataclass(frozen=True)
class ObjectMeasurement:
    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]  # patient coordinates (DICOM LPS), mean of voxel centres
    max_diameter_mm: float                   # largest distance between two voxel centres

    def as_dict(self) -> dict:
        return {"voxels": self.voxels, "volume_ml": round(self.volume_ml, 4),
                "centroid_mm": [round(c, 3) for c in self.centroid_mm],
                "max_diameter_mm": round(self.max_diameter_mm, 3)}


def voxel_centres_mm(indices_kji: np.ndarray, geometry: sitk.Image) -> np.ndarray:
    """Patient coordinates of voxel centres given as (k, j, i) rows (numpy order) on an image grid."""
    direction = np.array(geometry.GetDirection()).reshape(3, 3)
    spacing = np.array(geometry.GetSpacing())
    ijk = indices_kji[:, ::-1].astype(np.float64)
    return np.asarray(geometry.GetOrigin()) + (ijk * spacing) @ direction.T


def max_diameter_mm(points: np.ndarray) -> float:
    """Largest distance between any two points (the hull's vertices hold the farthest pair)."""
    if len(points) < 2:
        return 0.0
    if len(points) > 4:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # all points on one plane or line: compare them all
            pass
    return float(pdist(points).max())


def measure(mask: np.ndarray, geometry: sitk.Image) -> ObjectMeasurement:
    """Measure the voxels where `mask` (numpy order k, j, i) is true, on the grid of `geometry`."""
    indices = np.argwhere(mask)
    if len(indices) == 0:
        raise ValueError("cannot measure an empty mask")
    points = voxel_centres_mm(indices, geometry)
    voxel_ml = float(np.prod(geometry.GetSpacing())) / 1000.0
    x, y, z = (float(c) for c in points.mean(axis=0))
    return ObjectMeasurement(len(indices), len(indices) * voxel_ml, (x, y, z), max_diameter_mm(points))
