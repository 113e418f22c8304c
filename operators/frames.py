"""Multi-frame CT (Enhanced CT, Legacy Converted Enhanced CT) as one dataset per frame.

Modern scanners and archives send a CT series as one multi-frame instance whose geometry lives in
functional groups: shared by every frame (SharedFunctionalGroupsSequence) or per frame
(PerFrameFunctionalGroupsSequence). Each frame becomes a `FrameDataset` carrying, as top-level
attributes, what a single-frame CT slice would: ImageOrientationPatient, ImagePositionPatient,
PixelSpacing, SliceThickness, RescaleSlope and RescaleIntercept, with every other attribute of its
instance. Series selection and the volume step then treat it as a slice; the SEG and SR reference
the instance and its frames (`source_instances`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.tag import Tag

# Functional group macro -> the attributes it gives each frame (PS3.3 C.7.6.16).
FRAME_ATTRIBUTES = {
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
}
# Not copied into a frame: the frames' pixels and the groups, which the frame replaces.
NOT_COPIED = {Tag("PixelData"), Tag("SharedFunctionalGroupsSequence"), Tag("PerFrameFunctionalGroupsSequence"),
              Tag("NumberOfFrames")}


class FrameDataset(Dataset):
    """One frame of a multi-frame instance, read as a single-frame slice."""

    def __init__(self, source: Dataset, frame_index: int):
        super().__init__()
        self.source, self.frame_index = source, frame_index   # Python attributes, not DICOM elements

    @property
    def pixel_array(self) -> np.ndarray:
        # pydicom keeps the decoded array on the source: the frames are decoded once.
        pixels = self.source.pixel_array
        return pixels if pixels.ndim == 2 else pixels[self.frame_index]


def is_multiframe(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds


def frames_of(ds: Dataset) -> list[FrameDataset]:
    """The frames of a multi-frame instance, in the order they are stored."""
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else Dataset()
    frames = []
    for index, per_frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        frame = FrameDataset(ds, index)
        for tag in ds.keys():
            if tag not in NOT_COPIED:
                frame.add(ds[tag])
        for macro, keywords in FRAME_ATTRIBUTES.items():
            group = per_frame.get(macro) or shared.get(macro)
            if group:
                for keyword in keywords:
                    if keyword in group[0]:
                        setattr(frame, keyword, group[0][keyword].value)
        frames.append(frame)
    return frames


def source_instances(slices: Sequence[Dataset]) -> list[Dataset]:
    """The instances behind a volume's slices: the slices themselves, or each multi-frame instance once."""
    instances: dict[int, Dataset] = {}
    for ds in slices:
        source = ds.source if isinstance(ds, FrameDataset) else ds
        instances.setdefault(id(source), source)
    return list(instances.values())
