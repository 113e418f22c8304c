"""Writes an nnU-Net raw data set atomically from (case id, CT, label) pairs.

Every case is checked before anything is kept: the label must sit on the CT's grid and hold only
labels 0-3. Both volumes are reoriented to LPS (nnU-Net ignores direction cosines, so every
volume it sees must share one orientation, docs/architecture.md). The data set is built in a temporary
folder and renamed into place when complete: a failure, named by its case, leaves nothing behind.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from renalnode.labels import LABEL_NAMES
from renalnode.orientation import CANONICAL_ORIENTATION, canonical

FILE_ENDING = ".nii.gz"


class CaseImportError(ValueError):
    """A case cannot be imported; the message names it."""


@dataclass
class LabelledCase:
    case_id: str
    image: sitk.Image
    label: sitk.Image
    test: bool = False  # held out: written to imagesTs/labelsTs, never trained on


@dataclass
class ImportSummary:
    dataset: str
    training_cases: list[str] = field(default_factory=list)
    test_cases: list[str] = field(default_factory=list)
    label_voxels: dict[str, int] = field(default_factory=dict)


def check_case(case: LabelledCase) -> tuple[sitk.Image, sitk.Image]:
    """Validated, canonical (image, label) of a case; raises CaseImportError naming the case."""
    image, label = case.image, case.label
    if image.GetDimension() != 3 or label.GetDimension() != 3:
        raise CaseImportError(f"case {case.case_id}: image and label must be 3D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseImportError(f"case {case.case_id}: the CT must have one channel")
    same_grid = (image.GetSize() == label.GetSize()
                 and np.allclose(image.GetSpacing(), label.GetSpacing(), rtol=1e-4, atol=1e-4)
                 and np.allclose(image.GetOrigin(), label.GetOrigin(), atol=1e-2)
                 and np.allclose(image.GetDirection(), label.GetDirection(), atol=1e-4))
    if not same_grid:
        raise CaseImportError(
            f"case {case.case_id}: label geometry does not match the CT (size {label.GetSize()} vs "
            f"{image.GetSize()}, spacing {label.GetSpacing()} vs {image.GetSpacing()}, origin {label.GetOrigin()} "
            f"vs {image.GetOrigin()})")
    values = np.unique(sitk.GetArrayViewFromImage(label))
    unknown = sorted(set(values.tolist()) - set(LABEL_NAMES))
    if unknown:
        raise CaseImportError(f"case {case.case_id}: unknown label values {unknown}; expected {sorted(LABEL_NAMES)}")
    label = sitk.Cast(label, sitk.sitkUInt8)
    label.CopyInformation(image)  # remove float rounding differences between the two headers
    return canonical(image), canonical(label)


def write_dataset(raw_root: Path, dataset_id: int, name: str, cases: Iterable[LabelledCase],
                  description: str, overwrite: bool = False, log=None) -> ImportSummary:
    """Write `DatasetNNN_name` under `raw_root`; returns what was written."""
    if not 1 <= dataset_id <= 999:
        raise CaseImportError("the data set id must be between 1 and 999")
    dataset = f"Dataset{dataset_id:03d}_{name}"
    final = raw_root / dataset
    existing = [p for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir()]
    if existing and not overwrite:
        raise CaseImportError(f"{existing[0]} exists; pass --overwrite to replace it")
    tmp = raw_root / f".{dataset}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (tmp / sub).mkdir(parents=True)
    summary = ImportSummary(dataset)
    counts = np.zeros(len(LABEL_NAMES), np.int64)
    try:
        for case in cases:
            if case.case_id in summary.training_cases + summary.test_cases:
                raise CaseImportError(f"case {case.case_id}: two cases with the same id")
            image, label = check_case(case)
            split = "Ts" if case.test else "Tr"
            sitk.WriteImage(image, str(tmp / f"images{split}" / f"{case.case_id}_0000{FILE_ENDING}"),
                            useCompression=True)
            sitk.WriteImage(label, str(tmp / f"labels{split}" / f"{case.case_id}{FILE_ENDING}"), useCompression=True)
            (summary.test_cases if case.test else summary.training_cases).append(case.case_id)
            counts += np.bincount(sitk.GetArrayViewFromImage(label).ravel(), minlength=len(LABEL_NAMES))
            if log:
                print(f"  {'test ' if case.test else 'train'} {case.case_id}", file=log, flush=True)
        if len(summary.training_cases) < 2:
            raise CaseImportError(f"only {len(summary.training_cases)} training case(s) found; need at least 2")
        summary.label_voxels = {LABEL_NAMES[i]: int(c) for i, c in enumerate(counts)}
        dataset_json = {
            "channel_names": {"0": "CT"},
            "labels": {name: value for value, name in sorted(LABEL_NAMES.items())},
            "numTraining": len(summary.training_cases),
            "file_ending": FILE_ENDING,
            "overwrite_image_reader_writer": "SimpleITKIO",
            "name": dataset,
            "description": description,
            "renalnode": {"orientation": CANONICAL_ORIENTATION, "test_cases": summary.test_cases,
                          "label_voxels": summary.label_voxels},
        }
        (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
        for p in existing:
            shutil.rmtree(p)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
