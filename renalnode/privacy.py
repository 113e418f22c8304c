"""Keeping patient identity out of what renalnode writes for operators: logs, the run record, the
journal, the dashboard, webhook messages. Their own texts never name a patient; an error message
from a library may quote a value it choked on, so such texts pass through `redact` first."""
from __future__ import annotations

import re
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

IDENTIFYING = ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "AccessionNumber")
MIN_LENGTH = 3   # shorter values (initials, "M") would blank out ordinary words
REDACTED = "[redacted]"


def identifiers(ds: pydicom.Dataset) -> set[str]:
    """The identifying values of a dataset, whole and, for the name, each name component."""
    values = set()
    for keyword in IDENTIFYING:
        value = ds.get(keyword)
        items = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
        values |= {str(item).strip() for item in items if item}
    values |= {part.strip() for part in re.split(r"[\^=]", str(ds.get("PatientName", "") or ""))}
    return {value for value in values if len(value) >= MIN_LENGTH}


def identifiers_in(folder: Path) -> set[str]:
    """The identifying values of the first DICOM file in `folder` (a series shares them)."""
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            try:
                return identifiers(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(IDENTIFYING)))
            except (InvalidDicomError, OSError, ValueError):
                continue
    return set()


def redact(text: str, values: set[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
