"""Import labelled CTs into an nnU-Net raw data set (imagesTr/labelsTr/dataset.json, labels 0-3)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training.dataset_import.dicom_seg import dicom_cases
from training.dataset_import.sources import file_cases, parse_label_map
from training.dataset_import.writer import CaseImportError, ImportSummary, write_dataset

SOURCES = ("phantom", "kits", "nifti", "dicom")


def split_test_cases(case_ids: list[str], test_fraction: float, test_cases: list[str], seed: int) -> set[str]:
    """Held-out cases: those named, or a seeded random `test_fraction` of all cases."""
    unknown = sorted(set(test_cases) - set(case_ids))
    if unknown:
        raise CaseImportError(f"test cases {unknown} are not in the input")
    if test_cases:
        return set(test_cases)
    if not 0 <= test_fraction < 1:
        raise CaseImportError("--test-fraction must be at least 0 and below 1")
    count = int(round(test_fraction * len(case_ids)))
    return set(np.random.default_rng(seed).permutation(sorted(case_ids))[:count].tolist())


def import_dataset(raw_root: Path, source: str, folder: Path, dataset_id: int, name: str, *,
                   label_suffix: str = "-label", label_map: str | None = None, test_fraction: float = 0.0,
                   test_cases: list[str] | None = None, seed: int = 0, overwrite: bool = False,
                   log=sys.stderr) -> ImportSummary:
    if source not in SOURCES:
        raise CaseImportError(f"unknown source {source!r}; expected one of {SOURCES}")
    if source == "dicom":
        cases = dicom_cases(folder, parse_label_map(label_map))
    else:
        cases = file_cases(source, folder, label_suffix, label_map)
    if not cases:
        raise CaseImportError(f"no {source} cases found under {folder}")
    held_out = split_test_cases([case_id for case_id, _ in cases], test_fraction, test_cases or [], seed)

    def loaded():
        for case_id, load in cases:
            case = load()
            case.test = case_id in held_out
            yield case

    print(f"Importing {len(cases)} {source} case(s) from {folder} ({len(held_out)} held out for testing)",
          file=log, flush=True)
    return write_dataset(raw_root, dataset_id, name, loaded(), f"renalnode import of {source} data from {folder}",
                         overwrite=overwrite, log=log)
