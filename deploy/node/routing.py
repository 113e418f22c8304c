"""Routing: which received series the node processes, and where each one's results go.

A series is processed only when it is an abdominal CT by the series rules file
(renalnode/series_rules.yaml, read by the app and rendered for Orthanc too: one rule for all).
Then the routing rules file (YAML) gives its destinations: the first rule whose every given
criterion matches wins. Criteria: `modalities` and `calling_aets` (who sent it). A series that is
not eligible or that no rule matches is quarantined, with the reason in the journal and a
notification. The app's series selection then chooses within what is routed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from renalnode.series_eligibility import DEFAULT_SERIES_RULES, SeriesEligibility

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

    def mismatch(self, facts: SeriesFacts) -> str | None:
        if self.modalities and facts.modality.upper() not in self.modalities:
            return f"modality {facts.modality or 'missing'}"
        if self.calling_aets and facts.calling_aet not in self.calling_aets:
            return f"sent by {facts.calling_aet}"
        return None


@dataclass(frozen=True)
class RoutingRules:
    eligibility: SeriesEligibility
    rules: tuple[Rule, ...]


def load_rules(path: Path, known_destinations: set[str], series_rules: Path = DEFAULT_SERIES_RULES) -> RoutingRules:
    data = yaml.safe_load(Path(path).read_text()) or {}
    rules = []
    for item in data.get("rules", []):
        moved = sorted({"body_parts", "descriptions"} & set(item or {}))
        if moved:
            raise ValueError(f"routing rules {path}: rule {item.get('name')!r}: {', '.join(moved)} moved to the "
                             f"series rules file ({series_rules}), which decides for the node, Orthanc and the app")
        try:
            rule = Rule(name=str(item["name"]), destinations=tuple(item["destinations"]),
                        modalities=tuple(str(m).upper() for m in item.get("modalities", [])),
                        calling_aets=tuple(item.get("calling_aets", [])))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"routing rules {path}: rule {item!r}: {exc!r}") from None
        if not rule.destinations:
            raise ValueError(f"routing rules {path}: rule {rule.name} has no destinations")
        unknown = set(rule.destinations) - known_destinations
        if unknown:
            raise ValueError(f"routing rules {path}: rule {rule.name} names unknown destinations {sorted(unknown)}")
        rules.append(rule)
    if not rules:
        raise ValueError(f"routing rules {path}: no rules: nothing would be processed")
    return RoutingRules(SeriesEligibility.load(series_rules), tuple(rules))


class RulesFile:
    """The routing and series rules in force, read again whenever either file changes: IT fixes a
    rule and retries the series it quarantined without restarting the node. A broken edit is logged
    and the rules in force stay."""

    def __init__(self, path: Path, known_destinations: set[str], series_rules: Path = DEFAULT_SERIES_RULES):
        self.path, self.known_destinations, self.series_rules = Path(path), known_destinations, Path(series_rules)
        self._stamp = self._read_stamp()
        self.rules = load_rules(self.path, known_destinations, self.series_rules)

    def _read_stamp(self) -> tuple[int, ...]:
        # The size too: two writes within one clock tick.
        stats = [p.stat() for p in (self.path, self.series_rules)]
        return tuple(v for s in stats for v in (s.st_mtime_ns, s.st_size))

    def current(self) -> RoutingRules:
        try:
            stamp = self._read_stamp()
        except OSError:
            return self.rules
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.rules = load_rules(self.path, self.known_destinations, self.series_rules)
                log.info("routing rules reloaded from %s and %s: %s", self.path, self.series_rules,
                         ", ".join(r.name for r in self.rules.rules))
            except (ValueError, yaml.YAMLError) as exc:
                log.error("routing rules in %s not reloaded, the earlier rules stay in force: %s", self.path, exc)
        return self.rules


def route(routing: RoutingRules, facts: SeriesFacts) -> tuple[Rule | None, str]:
    """The first matching rule of an eligible series, or None with why it is not processed."""
    refusal = routing.eligibility.refusal(facts.modality, facts.body_part, facts.series_description,
                                          facts.study_description)
    if refusal:
        return None, f"not a series renalnode segments: {refusal}"
    reasons = []
    for rule in routing.rules:
        why = rule.mismatch(facts)
        if why is None:
            return rule, f"rule {rule.name}"
        reasons.append(f"{rule.name}: {why}")
    return None, "no routing rule matches (" + "; ".join(reasons) + ")"
