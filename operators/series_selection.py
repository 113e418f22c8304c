"""Series selection: which series of a study the app segments, from a rules file a site edits.

`select_series` checks every series against the rules and returns the qualifying ones, best first,
and the reason every other series was passed over, so a study with no suitable series ends with a
logged reason instead of an error. The volume step takes the best one that makes a volume. The
rules and the ranking are documented in renalnode/series_rules.yaml, whose eligibility part (is
this an abdominal CT?) the node's routing and Orthanc read too.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from holoscan.core import OperatorSpec
from pydicom import Dataset

from operators.recording import RecordingOperator
from renalnode.run_record import NO_SUITABLE_SERIES
from renalnode.series_eligibility import DEFAULT_SERIES_RULES, SeriesEligibility

log = logging.getLogger("renalnode.app")


@dataclass(frozen=True)
class SelectionRules:
    eligibility: SeriesEligibility
    sop_classes: tuple[str, ...]
    exclude_image_types: tuple[str, ...]
    max_tilt_from_axial_degrees: float
    slice_thickness_mm: tuple[float, float]
    min_slices: int
    preferred_thickness_mm: float

    @classmethod
    def load(cls, path: Path = DEFAULT_SERIES_RULES) -> SelectionRules:
        data = yaml.safe_load(Path(path).read_text()) or {}
        eligibility = SeriesEligibility.from_rules(data, path)
        try:
            return cls(
                eligibility=eligibility,
                sop_classes=tuple(map(str, data["sop_classes"])),
                exclude_image_types=tuple(str(t).upper() for t in data["exclude_image_types"]),
                max_tilt_from_axial_degrees=float(data["max_tilt_from_axial_degrees"]),
                slice_thickness_mm=(float(data["slice_thickness_mm"][0]), float(data["slice_thickness_mm"][1])),
                min_slices=int(data["min_slices"]),
                preferred_thickness_mm=float(data["preferred_thickness_mm"]),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"series rules {path}: {exc!r}") from None


@dataclass(frozen=True)
class SeriesChoice:
    series_uid: str
    reason: str  # why it qualifies, or why it was passed over


def _text(ds: Dataset, keyword: str) -> str:
    return str(getattr(ds, keyword, "") or "")


def rejection(headers: Sequence[Dataset], rules: SelectionRules) -> str | None:
    """Why a series (its instances' headers) does not qualify, or None when it does."""
    first = headers[0]
    refusal = rules.eligibility.refusal(*(_text(first, k) for k in (
        "Modality", "BodyPartExamined", "SeriesDescription", "StudyDescription")))
    if refusal:
        return refusal
    if _text(first, "SOPClassUID") not in rules.sop_classes:
        return f"SOP class {_text(first, 'SOPClassUID')} is not an image class the rules accept"
    image_type = {str(v).upper() for v in getattr(first, "ImageType", [])}
    excluded = sorted(image_type & set(rules.exclude_image_types))
    if excluded:
        return f"image type {'/'.join(excluded)} is excluded"
    try:
        orientation = np.array(first.ImageOrientationPatient, float).reshape(2, 3)
    except (AttributeError, ValueError):
        return "no image orientation"
    normal = np.cross(orientation[0], orientation[1])
    tilt = float(np.degrees(np.arccos(min(1.0, abs(normal[2]) / np.linalg.norm(normal)))))
    if tilt > rules.max_tilt_from_axial_degrees:
        return f"not axial: plane {tilt:.0f} degrees from axial"
    thickness = float(getattr(first, "SliceThickness", 0) or 0)
    low, high = rules.slice_thickness_mm
    if not low <= thickness <= high:
        return f"slice thickness {thickness:g} mm outside {low:g}-{high:g} mm"
    if len(headers) < rules.min_slices:
        return f"{len(headers)} slices, fewer than {rules.min_slices}"
    return None


def _rank(headers: Sequence[Dataset], rules: SelectionRules) -> tuple:
    first = headers[0]
    contrast = bool(_text(first, "ContrastBolusAgent"))
    thickness = float(getattr(first, "SliceThickness", 0) or 0)
    return (not contrast, abs(thickness - rules.preferred_thickness_mm), -len(headers),
            int(getattr(first, "SeriesNumber", 0) or 0))


def select_series(series: dict[str, Sequence[Dataset]], rules: SelectionRules
                  ) -> tuple[list[SeriesChoice], list[SeriesChoice]]:
    """The qualifying series, best first, and every series that does not qualify, with reasons."""
    qualifying, passed_over = [], []
    for uid, headers in series.items():
        reason = rejection(headers, rules) if headers else "no instances"
        if reason:
            passed_over.append(SeriesChoice(uid, reason))
        else:
            qualifying.append(uid)
    qualifying.sort(key=lambda uid: _rank(series[uid], rules))
    ranked = []
    for uid in qualifying:
        first = series[uid][0]
        ranked.append(SeriesChoice(uid, f"{len(series[uid])} axial slices of {float(first.SliceThickness):g} mm"
                                        f"{', contrast-enhanced' if _text(first, 'ContrastBolusAgent') else ''}"))
    return ranked, passed_over


@dataclass(frozen=True)
class Candidate:
    choice: SeriesChoice
    slices: Sequence[Dataset]


class SeriesSelectionOperator(RecordingOperator):
    """Emits the qualifying series, best first (the volume step takes the first that makes a
    volume); emits nothing (and the run ends) when no series qualifies."""

    def __init__(self, fragment, *args, rules: SelectionRules, **kwargs):
        self.rules = rules
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("study")
        spec.output("series")

    def compute(self, op_input, op_output, context):
        study = op_input.receive("study")
        with self.record.stage("select"):
            ranked, passed_over = select_series(study.series, self.rules)
        self.record.passed_over = {c.series_uid: c.reason for c in passed_over}
        for choice in passed_over:
            log.info("series %s passed over: %s", choice.series_uid, choice.reason)
        if not ranked:
            reasons = "; ".join(f"{c.series_uid}: {c.reason}" for c in passed_over)
            self.record.stop(NO_SUITABLE_SERIES, f"no suitable series in the study ({reasons or 'no DICOM series'})")
            return
        op_output.emit([Candidate(choice, study.series[choice.series_uid]) for choice in ranked], "series")
