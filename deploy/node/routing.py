"""Routing rules: which received series the node processes, and where each one's results go.

The rules file (YAML) holds a list; the first rule whose every given criterion matches the series
wins. Criteria: `modalities`, `calling_aets` (who sent it), `body_parts` (BodyPartExamined), and
`descriptions` (regular expressions, any of which must match the series or study description).
A series that matches `body_parts` or, when it has no body part, `descriptions`, passes the anatomy
check. A series that no rule matches is quarantined, with that reason in the journal. The app's own
series rules (app/series_rules.yaml) then choose within what is routed.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger("renalnode.node")


@dataclass(frozen=True)
class SeriesFacts:
    modality: str
    body_part: str
    series_description: str
    study_description: str
    calling_aet: str


@dataclass(frozen=True)
class Rule:
    name: str
    destinations: tuple[str, ...]
    modalities: tuple[str, ...] = ()
    calling_aets: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()

    def mismatch(self, facts: SeriesFacts) -> str | None:
        if self.modalities and facts.modality.upper() not in self.modalities:
            return f"modality {facts.modality or 'missing'}"
        if self.calling_aets and facts.calling_aet not in self.calling_aets:
            return f"sent by {facts.calling_aet}"
        if self.body_parts or self.descriptions:
            text = f"{facts.series_description} {facts.study_description}"
            if facts.body_part.upper() in self.body_parts:
                return None
            if not any(re.search(p, text) for p in self.descriptions):
                return f"body part {facts.body_part or 'missing'} and description do not match"
        return None


def load_rules(path: Path, known_destinations: set[str]) -> list[Rule]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    rules = []
    for item in data.get("rules", []):
        try:
            rule = Rule(name=str(item["name"]), destinations=tuple(item["destinations"]),
                        modalities=tuple(str(m).upper() for m in item.get("modalities", [])),
                        calling_aets=tuple(item.get("calling_aets", [])),
                        body_parts=tuple(str(b).upper() for b in item.get("body_parts", [])),
                        descriptions=tuple(item.get("descriptions", [])))
            for pattern in rule.descriptions:
                re.compile(pattern)
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"routing rules {path}: rule {item!r}: {exc!r}") from None
        if not rule.destinations:
            raise ValueError(f"routing rules {path}: rule {rule.name} has no destinations")
        unknown = set(rule.destinations) - known_destinations
        if unknown:
            raise ValueError(f"routing rules {path}: rule {rule.name} names unknown destinations {sorted(unknown)}")
        rules.append(rule)
    if not rules:
        raise ValueError(f"routing rules {path}: no rules: nothing would be processed")
    return rules


class RulesFile:
    """The rules in force, read again whenever the file changes: IT fixes a rule and retries the
    series it quarantined without restarting the node. A broken edit is logged and the rules in
    force stay."""

    def __init__(self, path: Path, known_destinations: set[str]):
        self.path, self.known_destinations = Path(path), known_destinations
        self._stamp = self._read_stamp()
        self.rules = load_rules(self.path, known_destinations)

    def _read_stamp(self) -> tuple[int, int]:
        status = self.path.stat()
        return status.st_mtime_ns, status.st_size   # the size too: two writes within one clock tick

    def current(self) -> list[Rule]:
        try:
            stamp = self._read_stamp()
        except OSError:
            return self.rules
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.rules = load_rules(self.path, self.known_destinations)
                log.info("routing rules reloaded from %s: %s", self.path, ", ".join(r.name for r in self.rules))
            except (ValueError, yaml.YAMLError) as exc:
                log.error("routing rules in %s not reloaded, the earlier rules stay in force: %s", self.path, exc)
        return self.rules


def route(rules: list[Rule], facts: SeriesFacts) -> tuple[Rule | None, str]:
    """The first matching rule, or None with why no rule matched."""
    reasons = []
    for rule in rules:
        why = rule.mismatch(facts)
        if why is None:
            return rule, f"rule {rule.name}"
        reasons.append(f"{rule.name}: {why}")
    return None, "no routing rule matches (" + "; ".join(reasons) + ")"
