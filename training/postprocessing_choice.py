"""Which post-processing rules a model gets, decided on its cross-validation predictions, as
nnU-Net's `determine_postprocessing` decides "keep the largest component" per class.

Candidates are tried in the order the app applies them (renalnode/postprocessing_rules.py):
the kidney rule, then cysts touching a solid mass merged into it, then the lesion distance limits,
then a minimum volume per lesion class. A candidate is kept only when it raises the cross-validated
F1 of the class it acts on (kidney; both lesion classes for the merge and the distance limit,
neither of which may fall; one lesion class for its minimum volume) without lowering the detection
sensitivity of lesions of 1 cm and more. Among the values of one rule, the one with the highest F1
wins. Every trial is recorded.
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from renalnode.postprocessing_rules import PostprocessingRules
from training.metrics import AT_LEAST_1CM

DISTANCE_CANDIDATES_MM = (0.0, 5.0, 10.0, 20.0)  # 0: touching the kidney
# Up to 1 ml (a sphere of 12 mm): 0.5 ml, the largest candidate before, was the one kept for both classes.
MIN_VOLUME_CANDIDATES_ML = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# An F1 must rise by more than this to count: rounding noise never decides.
MIN_GAIN = 1e-4


def _f1(summary: dict, name: str) -> float:
    return summary["per_class"][name]["f1"] or 0.0


def _sensitivity_1cm(summary: dict) -> float:
    return summary["lesion_detection_by_size"]["any_lesion"][AT_LEAST_1CM]["sensitivity"] or 0.0


def choose_rules(evaluate: Callable[[PostprocessingRules], dict], log=sys.stderr) -> tuple[PostprocessingRules, list]:
    """The kept rules and the record of every trial. `evaluate(rules)` returns the cross-validation
    summary (training.metrics.Evaluation.summary) with those rules applied."""
    current = PostprocessingRules()
    best = evaluate(current)
    trials: list[dict] = []

    def attempt(rule: str, values, classes: tuple[str, ...]) -> None:
        nonlocal current, best
        base = {c: _f1(best, c) for c in classes}
        winner = None
        for value in values:
            candidate = dataclasses.replace(current, **{rule: value})
            summary = evaluate(candidate)
            scores = {c: _f1(summary, c) for c in classes}
            gains = {c: scores[c] - base[c] for c in classes}
            keeps = (max(gains.values()) > MIN_GAIN and min(gains.values()) >= -MIN_GAIN
                     and _sensitivity_1cm(summary) >= _sensitivity_1cm(best))
            trials.append({"rule": rule, "value": value, "f1_before": base, "f1_after": scores,
                           "lesion_sensitivity_1cm": _sensitivity_1cm(summary), "raises_f1": keeps})
            print(f"[postprocessing] {rule} = {value}: F1 " + ", ".join(
                f"{c} {100 * base[c]:.2f} -> {100 * scores[c]:.2f}" for c in classes)
                  + (" (raises)" if keeps else ""), file=log, flush=True)
            if keeps and (winner is None or sum(scores.values()) > sum(winner[1].values())):
                winner = (candidate, scores, summary)
        if winner:
            current, _, best = winner

    attempt("kidney_largest_per_side", [True], ("kidney",))
    attempt("cyst_touching_mass_is_mass", [True], ("solid_mass", "cyst"))
    attempt("lesion_max_distance_mm", DISTANCE_CANDIDATES_MM, ("solid_mass", "cyst"))
    attempt("min_solid_mass_ml", MIN_VOLUME_CANDIDATES_ML, ("solid_mass",))
    attempt("min_cyst_ml", MIN_VOLUME_CANDIDATES_ML, ("cyst",))
    return current, trials
