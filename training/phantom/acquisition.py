"""The scan: patient position, field of view, pixel size and slices, and the image grid they give.

The phantom is rendered on a canonical grid whose axes run along +x, +y, +z of the patient (LPS).
A scanner's image grid for another patient position is the same grid with some axes reversed:
its rows, columns and slices run along the directions DICOM's ImageOrientationPatient gives for
that position. `to_image` makes that reversal; `origin` and `direction` describe the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# Row direction (along a row, increasing column) and column direction (down a column) of an axial
# image for each patient position, in patient coordinates.
PATIENT_POSITIONS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "HFS": ((1, 0, 0), (0, 1, 0)),
    "FFS": ((-1, 0, 0), (0, 1, 0)),
    "HFP": ((-1, 0, 0), (0, -1, 0)),
    "FFP": ((1, 0, 0), (0, -1, 0)),
}
# `--position mixed`: each case lies in a position drawn from its seed.
MIXED = "mixed"

FULL_MATRIX, SMALL_MATRIX = 512, 128
FULL_SLICE_THICKNESSES = (0.625, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
FULL_PIXEL_MM = (0.6, 1.0)
SMALL_SLICE_THICKNESSES = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
# Now and then the field of view is narrower than the body (cut at its sides), or the scanned slab
# stops inside a kidney.
FOV_CUT_FRACTION, FOV_CUT = 0.12, (0.78, 0.95)
PARTIAL_COVERAGE_FRACTION = 0.12


@dataclass(frozen=True)
class Acquisition:
    position: str
    matrix: int         # rows = columns
    slices: int
    pixel_mm: float
    slice_mm: float     # slice thickness = spacing between slice centres (contiguous slices)
    centre: tuple[float, float, float]  # patient coordinates of the centre of the scanned volume
    # Where the anatomy's own frame (body axis at x = y = 0, kidneys near z = 0) lies in patient
    # coordinates: the patient is off-centre on the table, and z counts from the scanner's zero.
    anatomy_origin: tuple[float, float, float]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along image columns (i), rows (j) and slices (k), mm."""
        return np.array([self.pixel_mm, self.pixel_mm, self.slice_mm])

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the patient-space directions of the i, j and k axes."""
        row, col = (np.array(v, float) for v in PATIENT_POSITIONS[self.position])
        return np.column_stack([row, col, np.cross(row, col)])

    def canonical_axes(self, supersample: tuple[int, int, int] = (1, 1, 1)) -> tuple[np.ndarray, ...]:
        """Ascending patient x, y, z coordinates of the (optionally supersampled) canonical grid.

        With odd supersampling factors, sample `f // 2` of every block of `f` lies at a voxel centre.
        """
        counts = (self.matrix, self.matrix, self.slices)
        steps = self.spacing
        axes = []
        for n, step, f, c in zip(counts, steps, supersample, self.centre):
            centres = c + (np.arange(n) - (n - 1) / 2) * step
            offsets = (np.arange(f) - (f - 1) / 2) * step / f
            axes.append((centres[:, None] + offsets[None, :]).ravel())
        return tuple(axes)

    def _flips(self) -> tuple[bool, bool, bool]:
        """Which canonical axes (z, y, x in numpy order) run backwards in the image."""
        d = self.direction
        return d[2, 2] < 0, d[1, 1] < 0, d[0, 0] < 0

    def to_image(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical (z, y, x) array -> image array indexed (slice k, row j, column i)."""
        axes = tuple(a for a, flip in enumerate(self._flips()) if flip)
        return np.ascontiguousarray(np.flip(canonical, axis=axes)) if axes else canonical

    @property
    def origin(self) -> np.ndarray:
        """Patient coordinates of the centre of image voxel (i, j, k) = (0, 0, 0)."""
        half = (np.array([self.matrix, self.matrix, self.slices]) - 1) / 2 * self.spacing
        return np.asarray(self.centre) - self.direction @ half

    def slice_position(self, k: int) -> np.ndarray:
        """ImagePositionPatient of slice k: the centre of its first transmitted pixel."""
        return self.origin + self.direction[:, 2] * self.slice_mm * k

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of an image-ordered array with this grid's geometry."""
        img = sitk.GetImageFromArray(array)
        img.SetSpacing([float(s) for s in self.spacing])
        img.SetOrigin([float(o) for o in self.origin])
        img.SetDirection([float(v) for v in self.direction.ravel()])
        return img


def sample_acquisition(rng: np.random.Generator, body_half_width: float, kidney_level: float, position: str,
                       small: bool, slice_mm: float | None = None) -> Acquisition:
    """A field of view that fits the body (or now and then cuts it), and a slab over both kidneys
    (or now and then through one). `slice_mm` fixes the slice thickness instead of drawing it."""
    if position not in PATIENT_POSITIONS:
        raise ValueError(f"unknown patient position {position!r}; expected one of {sorted(PATIENT_POSITIONS)}")
    offset = rng.uniform(-12, 12, size=2)  # patients are never exactly centred in the field of view
    fov = 2 * (body_half_width + np.abs(offset).max()) + 16
    cut = rng.random() < FOV_CUT_FRACTION
    if cut:
        fov *= rng.uniform(*FOV_CUT)
    thicknesses = SMALL_SLICE_THICKNESSES if small else FULL_SLICE_THICKNESSES
    drawn_slice = float(rng.choice(thicknesses))
    slice_mm = drawn_slice if slice_mm is None else float(slice_mm)
    if small:
        matrix, pixel = SMALL_MATRIX, fov / SMALL_MATRIX
    else:
        matrix = FULL_MATRIX
        low = min(max(FULL_PIXEL_MM[0], fov / matrix), FULL_PIXEL_MM[1])
        pixel = rng.uniform(low, FULL_PIXEL_MM[1])
        if cut:  # the reconstruction circle is narrower than the body, at the finest pixel allowed
            pixel = low
    pixel = round(float(pixel), 4)
    length = rng.uniform(170, 280)
    slices = int(round(length / slice_mm))
    table_z = float(rng.uniform(-400, -200))
    centre_z = table_z + kidney_level + float(rng.uniform(-10, 20))
    if rng.random() < PARTIAL_COVERAGE_FRACTION:
        centre_z += float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.42) * length)
    return Acquisition(position, matrix, slices, pixel, slice_mm, (0.0, 0.0, centre_z),
                       (float(offset[0]), float(offset[1]), table_z))
