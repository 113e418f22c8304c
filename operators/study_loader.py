"""Reads the study the app was given: every DICOM file under the input folder, grouped by series.

renalnode reads the files itself instead of using MONAI Deploy's DICOMDataLoaderOperator because
that operator silently keeps one of two instances at the same position; here every instance is kept
so that the volume step can tell a harmless resend from a conflicting duplicate. Pixel data is read
lazily (pydicom's deferred reading) so that series that are never chosen never fill memory.
Files that are not DICOM, or lack the UIDs to place them, are skipped with a reason. A multi-frame
CT instance (Enhanced CT, Legacy Converted Enhanced CT) enters its series as its frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from holoscan.core import OperatorSpec
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from operators.frames import frames_of, is_multiframe
from operators.recording import RecordingOperator

log = logging.getLogger("renalnode.app")
DEFER_SIZE = "16 KB"  # elements larger than this (pixel data) are read from the file when first used


@dataclass
class Study:
    series: dict[str, list[Dataset]] = field(default_factory=dict)  # series UID -> its instances or frames
    skipped: dict[str, str] = field(default_factory=dict)           # file (relative) -> reason


def read_study(folder: Path) -> Study:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    study = Study()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = dcmread(path, defer_size=DEFER_SIZE)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            study.skipped[name] = f"not readable as DICOM: {exc}"
            continue
        uid = ds.get("SeriesInstanceUID")
        if not uid or "SOPInstanceUID" not in ds:
            study.skipped[name] = "no series or SOP instance UID"
            continue
        if ds.get("Modality") == "CT" and is_multiframe(ds):
            try:
                study.series.setdefault(str(uid), []).extend(frames_of(ds))
            except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
                study.skipped[name] = f"multi-frame CT whose functional groups cannot be read: {exc!r}"
            continue
        study.series.setdefault(str(uid), []).append(ds)
    return study


class StudyLoaderOperator(RecordingOperator):
    """Emits the `Study` read from the input folder."""

    def __init__(self, fragment, *args, input_folder: Path, **kwargs):
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output("study")

    def compute(self, op_input, op_output, context):
        with self.record.stage("read"):
            study = read_study(self.input_folder)
        self.record.skipped_files = study.skipped
        for name, reason in study.skipped.items():
            log.warning("skipped file %s: %s", name, reason)
        log.info("read %d instance(s) or frame(s) in %d series", sum(map(len, study.series.values())),
                 len(study.series))
        op_output.emit(study, "study")
