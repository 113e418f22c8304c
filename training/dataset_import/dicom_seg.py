"""DICOM CT series with their DICOM SEG, as retrieved from a PACS, to labelled cases.

Every file under the folder is scanned; a SEG is matched to its CT through the SEG's referenced
series (Common Instance Reference module). Segments become labels by their segmented property
type (SNOMED CT: Kidney 64033007 -> 1, Neoplasm 108369006 -> 2, Cyst 367643001 -> 3) or, with a
label map, by segment label. The case id is derived from the series UID, never from patient data.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from renalnode.labels import CATALOGUE
from renalnode.labels import KIDNEY as LABEL_KIDNEY
from training.dataset_import.writer import CaseImportError, LabelledCase

LABEL_OF_PROPERTY_TYPE = {c.property_type.value: c.value for c in CATALOGUE}


def case_id_of(series_uid: str) -> str:
    return "dicom_" + hashlib.sha1(series_uid.encode()).hexdigest()[:12]


def _scan(folder: Path) -> tuple[dict[str, list[tuple[Path, pydicom.Dataset]]], list[tuple[Path, pydicom.Dataset]]]:
    """Series UID -> [(path, header)] of the images, and (path, header) of the SEGs."""
    series: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    segs = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue  # not DICOM (a DICOMDIR's companions, notes): not ours to import
        if getattr(ds, "Modality", None) == "SEG":
            segs.append((path, ds))
        elif "SeriesInstanceUID" in ds:
            series[ds.SeriesInstanceUID].append((path, ds))
    return series, segs


def _read_ct(files: list[tuple[Path, pydicom.Dataset]], case_id: str) -> tuple[sitk.Image, list[str]]:
    """The CT volume, and the SOP instance UIDs of its slices in the volume's slice order."""
    if any(getattr(ds, "Modality", None) != "CT" for _, ds in files):
        raise CaseImportError(f"case {case_id}: the SEG references a series that is not CT")
    try:
        orientation = np.array(files[0][1].ImageOrientationPatient, float)
        normal = np.cross(orientation[:3], orientation[3:])
        # Slice order from positions along the normal, never from instance numbers.
        files = sorted(files, key=lambda f: float(normal @ np.array(f[1].ImagePositionPatient, float)))
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(p) for p, _ in files])
        image = reader.Execute()
    except (AttributeError, RuntimeError) as exc:
        raise CaseImportError(f"case {case_id}: cannot read the CT series: {exc}") from exc
    return image, [ds.SOPInstanceUID for _, ds in files]


def _segment_labels(seg: hd.seg.Segmentation, mapping: dict[str, int], case_id: str) -> dict[int, int]:
    labels = {}
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        name = description.segment_label
        if mapping:
            if name not in mapping:
                raise CaseImportError(f"case {case_id}: segment {number} ({name!r}) is not in the label map")
            labels[number] = mapping[name]
            continue
        code = description.segmented_property_type.value
        if code not in LABEL_OF_PROPERTY_TYPE:
            raise CaseImportError(f"case {case_id}: segment {number} ({name!r}) has property type "
                                  f"{description.segmented_property_type.meaning} ({code}), which is not a renalnode "
                                  "label; pass a label map")
        labels[number] = LABEL_OF_PROPERTY_TYPE[code]
    return labels


def dicom_cases(folder: Path, mapping: dict[str, int]) -> list[tuple[str, Callable[[], LabelledCase]]]:
    """(case id, loader) for every SEG under the folder, matched to its CT series."""
    if not folder.is_dir():
        raise CaseImportError(f"{folder} is not a folder")
    series, segs = _scan(folder)
    if not segs:
        raise CaseImportError(f"no DICOM SEG found under {folder}")
    cases = []
    for seg_path, seg_header in segs:
        referenced = [item.SeriesInstanceUID for item in getattr(seg_header, "ReferencedSeriesSequence", [])]
        case_id = case_id_of(referenced[0]) if referenced else seg_path.name
        if len(referenced) != 1 or referenced[0] not in series:
            raise CaseImportError(f"case {case_id}: the SEG {seg_path.name} references no CT series found "
                                  f"under {folder}")
        cases.append((case_id, partial(_load_case, case_id, seg_path, series[referenced[0]], mapping)))
    return cases


def _load_case(case_id: str, seg_path: Path, ct_files: list[tuple[Path, pydicom.Dataset]],
               mapping: dict[str, int]) -> LabelledCase:
    image, slice_uids = _read_ct(ct_files, case_id)
    seg = hd.seg.segread(seg_path)
    labels = _segment_labels(seg, mapping, case_id)
    masks = seg.get_pixels_by_source_instance(slice_uids, segment_numbers=list(labels),
                                              assert_missing_frames_are_empty=True, dtype=np.uint8)
    label = np.zeros(masks.shape[:3], np.uint8)
    # Kidney first, lesions painted over it: a lesion segment may lie inside its kidney segment.
    for index, number in sorted(enumerate(labels), key=lambda item: labels[item[1]] != LABEL_KIDNEY):
        label[masks[..., index] > 0] = labels[number]
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(image)
    return LabelledCase(case_id, image, label_image)
