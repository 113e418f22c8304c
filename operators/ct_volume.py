"""A CT series as one volume with exact geometry, or a reason why it cannot be one.

Slices are ordered by their position along the plane normal (never by instance number), for any
patient position and orientation. Duplicate positions holding the same pixels are merged;
duplicates that differ, missing slices, unequal spacing, gantry tilt (slices shifted within their
plane) and mixed geometry are rejected with a reason. Stored values become HU through each slice's
own rescale; compressed transfer syntaxes are decoded by pydicom's plugins. The frames of one
multi-frame instance (operators/frames.py) are slices like any other.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from holoscan.core import OperatorSpec
from pydicom import Dataset

from operators.frames import FrameDataset, source_instances
from operators.recording import RecordingOperator
from renalnode.run_record import VOLUME_REJECTED

log = logging.getLogger("renalnode.app")

# Tolerances relative to the slice spacing / pixel size: DICOM positions are decimal strings.
POSITION_TOLERANCE = 0.01
SPACING_TOLERANCE = 0.05
ORIENTATION_TOLERANCE = 1e-4


class VolumeError(ValueError):
    """The series cannot be made into a volume; the message says why."""


def _geometry(ds: Dataset) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[int, int]]:
    try:
        orientation = np.array(ds.ImageOrientationPatient, float).reshape(2, 3)
        position = np.array(ds.ImagePositionPatient, float)
        spacing = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
        size = (int(ds.Rows), int(ds.Columns))
    except (AttributeError, ValueError, IndexError, TypeError) as exc:
        raise VolumeError(f"slice without complete image plane attributes: {exc}") from None
    return orientation, position, spacing, size


@dataclass(frozen=True)
class CTVolume:
    image: sitk.Image         # float32 HU, indexed (i, j, k) along row, column and slice normal
    slices: list[Dataset]     # the slice of each k, in volume order (what a SEG references)
    merged: tuple[tuple[Dataset, int], ...] = ()   # identical duplicates left out, with the k they equal

    @property
    def instances(self) -> list[Dataset]:
        """The instances the slices come from (one for a multi-frame series)."""
        return source_instances(self.slices)


def series_to_volume(slices: Sequence[Dataset]) -> CTVolume:
    """The series as one volume with its geometry, or VolumeError with the reason it cannot be."""
    if len(slices) < 2:
        raise VolumeError(f"{len(slices)} slice(s): a volume needs at least 2")
    sources = source_instances(slices)
    if any(isinstance(ds, FrameDataset) for ds in slices) and len(sources) > 1:
        raise VolumeError(f"the series mixes {len(sources)} instances with multi-frame ones: a multi-frame "
                          "series must be one instance")
    geometry = [_geometry(ds) for ds in slices]
    orientation, _, pixel_spacing, size = geometry[0]
    for o, _, s, n in geometry[1:]:
        if not np.allclose(o, orientation, atol=ORIENTATION_TOLERANCE) or n != size or \
                not np.allclose(s, pixel_spacing, rtol=1e-4):
            raise VolumeError("slices differ in orientation, size or pixel spacing")
    row, col = orientation
    normal = np.cross(row, col)
    positions = np.array([g[1] for g in geometry])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]

    # Duplicates: the same position twice. Identical pixels (a resend) are merged; anything else is ambiguous.
    keep, merged = [0], []
    scale = max(min(pixel_spacing), 1e-3)
    for k in range(1, len(slices)):
        if abs(along[k] - along[keep[-1]]) < POSITION_TOLERANCE * scale:
            if not np.array_equal(slices[k].pixel_array, slices[keep[-1]].pixel_array):
                raise VolumeError(f"two different slices at the same position {along[k]:.2f} mm along the normal")
            merged.append((slices[k], len(keep) - 1))
            continue
        keep.append(k)
    slices, positions, along = [slices[k] for k in keep], positions[keep], along[keep]
    if len(slices) < 2:
        raise VolumeError("all slices lie at one position")

    steps = np.diff(along)
    spacing = float(np.median(steps))
    if spacing <= 0:
        raise VolumeError("slice positions do not advance along the normal")
    gaps = np.flatnonzero(steps > spacing * (1 + SPACING_TOLERANCE))
    if len(gaps) and np.all(np.abs(steps[gaps] / spacing - np.round(steps[gaps] / spacing)) < SPACING_TOLERANCE):
        k = gaps[0]
        missing = int(round(steps[k] / spacing)) - 1
        raise VolumeError(f"{missing} missing slice(s) between {along[k]:.2f} and {along[k + 1]:.2f} mm "
                          f"along the normal (slice spacing {spacing:.2f} mm)")
    if np.any(np.abs(steps - spacing) > spacing * SPACING_TOLERANCE):
        raise VolumeError(f"unequal slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm")
    # Gantry tilt: consecutive slices shifted within their own plane.
    in_plane = (positions - positions[0]) - np.outer(along - along[0], normal)
    if np.abs(in_plane).max() > POSITION_TOLERANCE * scale + 1e-3:
        raise VolumeError(f"slices are shifted within their plane by up to {np.abs(in_plane).max():.2f} mm "
                          "(gantry tilt): not supported")

    hu = np.empty((len(slices), *size), np.float32)
    for k, ds in enumerate(slices):
        try:
            stored = ds.pixel_array
        except Exception as exc:  # a plugin missing or corrupt pixel data: name it, whatever the decoder
            raise VolumeError(f"cannot decode the pixel data of slice {k}: {exc}") from None
        hu[k] = stored * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    image = sitk.GetImageFromArray(hu)
    image.SetOrigin([float(v) for v in positions[0]])
    image.SetSpacing([pixel_spacing[1], pixel_spacing[0], spacing])  # PixelSpacing is (row step, column step)
    image.SetDirection([float(v) for v in np.column_stack([row, col, normal]).ravel()])
    return CTVolume(image, slices, tuple(merged))


class CTVolumeOperator(RecordingOperator):
    """Emits the best qualifying series that makes a `CTVolume`: when the best one cannot be made
    into a volume (a missing slice, conflicting duplicates), the next one is tried. The record lists
    every attempt; the run ends with the reasons when none makes a volume."""


    def setup(self, spec: OperatorSpec):
        spec.input("series")
        spec.output("volume")

    def compute(self, op_input, op_output, context):
        candidates = op_input.receive("series")
        with self.record.stage("volume"):
            for n, candidate in enumerate(candidates):
                uid = candidate.choice.series_uid
                try:
                    volume = series_to_volume(candidate.slices)
                except VolumeError as exc:
                    self.record.volume_attempts[uid] = str(exc)
                    log.warning("series %s cannot be made into a volume: %s", uid, exc)
                    continue
                self.record.volume_attempts[uid] = "used"
                self.record.series_uid, self.record.selection_reason = uid, candidate.choice.reason
                for later in candidates[n + 1:]:
                    self.record.passed_over[later.choice.series_uid] = f"qualifies, but ranks below series {uid}"
                log.info("series %s chosen: %s", uid, candidate.choice.reason)
                op_output.emit(volume, "volume")
                return
        reasons = "; ".join(f"series {uid}: {reason}" for uid, reason in self.record.volume_attempts.items())
        self.record.stop(VOLUME_REJECTED, f"no qualifying series can be segmented ({reasons})")
