"""Is this an abdominal CT series? One rule, read from the series rules file (series_rules.yaml),
for the node's routing, the app's series selection and (rendered into Orthanc's configuration) the
Orthanc auto-routing script, so that the three always agree.

It decides on what every one of them can see: the modality, BodyPartExamined and the series and
study descriptions. A listed body part qualifies and any other body part does not; without a body
part, a description must name the abdomen. A series whose description marks a localizer, a dose
report or a rendering never qualifies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_SERIES_RULES = Path(__file__).resolve().parent / "series_rules.yaml"


@dataclass(frozen=True)
class SeriesEligibility:
    modality: str
    body_parts: tuple[str, ...]
    description_patterns: tuple[str, ...]
    exclude_description_patterns: tuple[str, ...]

    @classmethod
    def from_rules(cls, data: dict, source: Path | str) -> SeriesEligibility:
        """The eligibility keys of a parsed series rules file."""
        try:
            rule = cls(modality=str(data["modality"]).upper(),
                       body_parts=tuple(str(b).upper() for b in data["body_parts"]),
                       description_patterns=tuple(map(str, data["description_patterns"])),
                       exclude_description_patterns=tuple(map(str, data["exclude_description_patterns"])))
            for pattern in rule.description_patterns + rule.exclude_description_patterns:
                re.compile(pattern)
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"series rules {source}: {exc!r}") from None
        return rule

    @classmethod
    def load(cls, path: Path = DEFAULT_SERIES_RULES) -> SeriesEligibility:
        return cls.from_rules(yaml.safe_load(Path(path).read_text()) or {}, path)

    def refusal(self, modality: str, body_part: str, series_description: str, study_description: str) -> str | None:
        """Why the series is not an abdominal CT renalnode segments, or None when it is."""
        if modality.upper() != self.modality:
            return f"modality {modality or 'missing'} is not {self.modality}"
        for pattern in self.exclude_description_patterns:
            if re.search(pattern, series_description):
                return f"series description matches excluded pattern {pattern!r}"
        if body_part:
            if body_part.upper() not in self.body_parts:
                return f"body part {body_part.upper()} is not abdomen"
            return None
        if not any(re.search(p, f"{series_description} {study_description}") for p in self.description_patterns):
            return "no body part, and no description that names the abdomen"
        return None

    def orthanc_settings(self) -> dict:
        """The rule as the Orthanc auto-routing script reads it from Orthanc's configuration."""
        return {"Modality": self.modality, "BodyParts": list(self.body_parts),
                "DescriptionPatterns": list(self.description_patterns),
                "ExcludeDescriptionPatterns": list(self.exclude_description_patterns)}
