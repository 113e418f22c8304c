"""Which decision offsets and post-processing rules a model gets, decided on its cross-validation
predictions, as nnU-Net's `determine_postprocessing` decides "keep the largest component" per class.

Decision offsets come first, since the rules act on their labels: a log-probability offset per
lesion class, added before the argmax. A network trained on few examples of a class is often sure of
the voxels it calls that class and too shy of the rest (the demo model's cysts: precision 99 %,
recall 43 %); an offset moves the decision boundary without retraining. Every combination of
OFFSET_CANDIDATES is tried, under the rules chosen for no offsets (most false lesions lie away from
the kidneys, where those rules remove them whatever the offsets), and the one with the highest mean
F1 of the foreground classes wins, if it beats no offsets without lowering the detection
sensitivity of lesions of 1 cm and more or raising their false positives per case. The rules are
then chosen again under the kept offsets (training/evaluate.py runs the three steps).

Candidates are tried in the order the app applies them (renalnode/postprocessing_rules.py):
the kidney rule, then cysts wrapped in a solid mass merged into it, then the lesion distance limits,
then a minimum volume per lesion class. A candidate is kept only when it raises the cross-validated
F1 of the class it acts on (kidney; both lesion classes for the merge and the distance limit,
neither of which may fall; one lesion class for its minimum volume) without lowering the detection
sensitivity of lesions of 1 cm and more. Among the values of one rule, the one with the highest F1
wins. Every trial is recorded.
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Callable

from renalnode.labels import CATALOGUE
from renalnode.postprocessing_rules import PostprocessingRules
from training.metrics import AT_LEAST_1CM

# Log-probability offsets tried for each lesion class: +1 calls a voxel cyst from 37 % (1/e) of the
# probability of the class that would win otherwise, +3 from 5 %. Each case's candidates are held
# in memory at once (one uint8 map each, on the CT's grid).
OFFSET_CANDIDATES = (-1.0, 0.0, 1.0, 2.0, 3.0)
LESION_KEYS = tuple(c.key for c in CATALOGUE if c.is_lesion)
FOREGROUND_KEYS = tuple(c.key for c in CATALOGUE)

BORDER_SHARE_CANDIDATES = (0.0, 0.25, 0.5, 0.75)  # 0: any contact with a solid mass
DISTANCE_CANDIDATES_MM = (0.0, 5.0, 10.0, 20.0)  # 0: touching the kidney
# Up to 1 ml (a sphere of 12 mm): 0.5 ml, the largest candidate before, was the one kept for both classes.
MIN_VOLUME_CANDIDATES_ML = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# An F1 must rise by more than this to count: rounding noise never decides.
MIN_GAIN = 1e-4


def _f1(summary: dict, name: str) -> float:
    return summary["per_class"][name]["f1"] or 0.0


def _sensitivity_1cm(summary: dict) -> float:
    return summary["lesion_detection_by_size"]["any_lesion"][AT_LEAST_1CM]["sensitivity"] or 0.0


def _false_positives_1cm(summary: dict) -> float:
    return summary["lesion_detection_by_size"]["any_lesion"][AT_LEAST_1CM]["false_positives_per_case"] or 0.0


def _mean_f1(summary: dict) -> float:
    return sum(_f1(summary, c) for c in FOREGROUND_KEYS) / len(FOREGROUND_KEYS)


def offset_candidates() -> list[dict[str, float]]:
    """Every combination of OFFSET_CANDIDATES over the lesion classes, no offsets first."""
    grid = [dict(zip(LESION_KEYS, values)) for values in itertools.product(OFFSET_CANDIDATES, repeat=len(LESION_KEYS))]
    return sorted(grid, key=lambda offsets: any(offsets.values()))


def choose_offsets(candidates: list[dict[str, float]], evaluate: Callable[[dict[str, float]], dict],
                   log=sys.stderr) -> tuple[dict[str, float], list]:
    """The kept offsets (the first candidate, no offsets, unless one beats it) and the record of every
    trial. `evaluate(offsets)` returns the cross-validation summary of the labels under `offsets`."""
    base = evaluate(candidates[0])
    best, best_summary = candidates[0], base
    trials: list[dict] = []
    for offsets in candidates:
        summary = base if offsets is candidates[0] else evaluate(offsets)
        allowed = (_sensitivity_1cm(summary) >= _sensitivity_1cm(base)
                   and _false_positives_1cm(summary) <= _false_positives_1cm(base))
        trials.append({"offsets": offsets, "f1": {c: _f1(summary, c) for c in FOREGROUND_KEYS},
                       "mean_f1": _mean_f1(summary), "lesion_sensitivity_1cm": _sensitivity_1cm(summary),
                       "false_positives_per_case_1cm": _false_positives_1cm(summary), "allowed": allowed})
        print("[decision offsets] " + ", ".join(f"{c} {v:+.1f}" for c, v in offsets.items())
              + f": mean F1 {100 * _mean_f1(summary):.2f} (" + ", ".join(
                  f"{c} {100 * _f1(summary, c):.2f}" for c in FOREGROUND_KEYS)
              + f"), lesions >= 1 cm found {100 * _sensitivity_1cm(summary):.1f} %, "
              f"FP {_false_positives_1cm(summary):.2f} a case" + ("" if allowed else " (refused)"),
              file=log, flush=True)
        if allowed and _mean_f1(summary) > _mean_f1(best_summary) + MIN_GAIN:
            best, best_summary = offsets, summary
    for trial in trials:
        trial["chosen"] = trial["offsets"] == best
    return best, trials


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
    attempt("cyst_in_mass_border_share", BORDER_SHARE_CANDIDATES, ("solid_mass", "cyst"))
    attempt("lesion_max_distance_mm", DISTANCE_CANDIDATES_MM, ("solid_mass", "cyst"))
    attempt("min_solid_mass_ml", MIN_VOLUME_CANDIDATES_ML, ("solid_mass",))
    attempt("min_cyst_ml", MIN_VOLUME_CANDIDATES_ML, ("cyst",))
    return current, trials
