"""Readers of labelled CT collections, each yielding LabelledCase objects for the writer.

- phantom: `renalnode phantom` output (`<case>/image.nii.gz` + `label.nii.gz`);
- kits: KiTS23 layout (`case_XXXXX/imaging.nii.gz` + `segmentation.nii.gz`, 1 kidney, 2 tumour, 3 cyst);
- nifti: image/label pairs as MITK or 3D Slicer export them (`<case>.nii.gz|.nrrd|.mha` beside
  `<case><suffix>.<ext>`), with the label values or Slicer segment names mapped to renalnode's labels.
DICOM CT with DICOM SEG lives in `dicom_seg.py`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from renalnode.labels import LABEL_NAMES
from training.dataset_import.writer import CaseImportError, LabelledCase

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
LABEL_VALUE_OF_NAME = {name: value for value, name in LABEL_NAMES.items()}


def read_volume(path: Path, case_id: str) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CaseImportError(f"case {case_id}: cannot read {path.name}: {str(exc).strip().splitlines()[-1]}") from exc


def _stem(path: Path) -> str:
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def phantom_cases(folder: Path) -> Iterator[tuple[str, Path, Path]]:
    for case in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield case.name, case / "image.nii.gz", case / "label.nii.gz"


def kits_cases(folder: Path) -> Iterator[tuple[str, Path, Path]]:
    for case in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("case_")):
        yield case.name, case / "imaging.nii.gz", case / "segmentation.nii.gz"


def nifti_cases(folder: Path, label_suffix: str) -> Iterator[tuple[str, Path, Path]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(VOLUME_SUFFIXES))
    labels = {_stem(p)[: -len(label_suffix)]: p for p in files if _stem(p).endswith(label_suffix)}
    images = [p for p in files if not _stem(p).endswith(label_suffix)]
    for image in images:
        case_id = _stem(image)
        if case_id not in labels:
            raise CaseImportError(f"case {case_id}: no label file {case_id}{label_suffix}.* beside {image.name}")
        yield case_id, image, labels[case_id]


def parse_label_map(text: str | None) -> dict[str, int]:
    """'1=kidney,2=solid_mass,Tumor=solid_mass' -> {'1': 1, '2': 2, 'Tumor': 2}: a source value or
    segment name on the left, a renalnode label name (or number) on the right."""
    mapping: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        source, _, target = item.partition("=")
        target = target.strip()
        if target in LABEL_VALUE_OF_NAME:
            mapping[source.strip()] = LABEL_VALUE_OF_NAME[target]
        elif target.isdigit() and int(target) in LABEL_NAMES:
            mapping[source.strip()] = int(target)
        else:
            raise CaseImportError(f"label map entry {item!r}: target must be one of {sorted(LABEL_VALUE_OF_NAME)}")
    return mapping


def _slicer_segment_values(label: sitk.Image) -> dict[str, str]:
    """Segment name -> label value, from a 3D Slicer .seg.nrrd header (empty for plain label maps)."""
    keys = set(label.GetMetaDataKeys())
    names = {}
    for i in range(256):
        if f"Segment{i}_Name" not in keys:
            break
        names[label.GetMetaData(f"Segment{i}_Name")] = label.GetMetaData(f"Segment{i}_LabelValue")
    return names


def remap_labels(label: sitk.Image, mapping: dict[str, int], case_id: str) -> sitk.Image:
    """Apply a label map; values it does not name and that are not renalnode labels are an error."""
    if not mapping:
        return label
    by_value = {}
    segments = _slicer_segment_values(label)
    for source, target in mapping.items():
        value = segments.get(source, source)
        if not value.lstrip("-").isdigit():
            raise CaseImportError(f"case {case_id}: label map names {source!r}, which is neither a value nor a "
                                  f"segment of this label file (segments: {sorted(segments) or 'none'})")
        by_value[int(value)] = target
    array = sitk.GetArrayFromImage(label)
    unknown = sorted(set(np.unique(array).tolist()) - set(by_value) - {0})
    if unknown:
        raise CaseImportError(f"case {case_id}: label values {unknown} are not in the label map")
    out = np.zeros(array.shape, np.uint8)
    for value, target in by_value.items():
        out[array == value] = target
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(label)
    return result


def file_cases(source: str, folder: Path, label_suffix: str = "-label", label_map: str | None = None,
               ) -> list[tuple[str, Callable[[], LabelledCase]]]:
    """(case id, loader) for every case of a folder of files; loading happens when the writer asks."""
    if not folder.is_dir():
        raise CaseImportError(f"{folder} is not a folder")
    listing = {"phantom": phantom_cases, "kits": kits_cases,
               "nifti": lambda f: nifti_cases(f, label_suffix)}[source](folder)
    mapping = parse_label_map(label_map)

    def load(case_id: str, image_path: Path, label_path: Path) -> LabelledCase:
        for path in (image_path, label_path):
            if not path.exists():
                raise CaseImportError(f"case {case_id}: {path.name} is missing")
        image = read_volume(image_path, case_id)
        label = remap_labels(read_volume(label_path, case_id), mapping, case_id)
        return LabelledCase(case_id, image, label)

    return [(case_id, partial(load, case_id, image, label)) for case_id, image, label in listing]
