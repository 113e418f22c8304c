"""The paper's voxel-wise metrics per class, per-case Dice, and lesion-level detection.

Voxel-wise metrics treat each class one-vs-rest over every voxel of the volume:
accuracy (TP+TN)/(TP+TN+FP+FN), precision TP/(TP+FP), recall TP/(TP+FN), F1 2PR/(P+R). Pooled
over cases, F1 equals the Dice of all voxels together; `dice` is instead the mean of per-case
Dice scores, counting only cases where the class is in the ground truth or the prediction
(both empty is undefined, as in nnU-Net). An undefined ratio (0/0) is reported as None.

Lesion detection: lesions are 26-connected components of a lesion class. A ground-truth lesion
is detected when a predicted component of the same class overlaps it by at least one voxel; a
predicted component that overlaps no ground-truth lesion of its class is a false positive.
The `any_lesion` row applies the same rule with both lesion classes merged, so a mass predicted
as a cyst still counts as found there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from scipy import ndimage

from renalnode.labels import CYST as LABEL_CYST, KIDNEY as LABEL_KIDNEY, LABEL_NAMES, SOLID_MASS as LABEL_SOLID_MASS

CLASSES = (LABEL_KIDNEY, LABEL_SOLID_MASS, LABEL_CYST)
CONNECTIVITY = np.ones((3, 3, 3), bool)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


@dataclass
class Counts:
    """Confusion counts of one class, added up over cases."""
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> "Counts":
        tp = int(np.count_nonzero(gt & pred))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(gt)) - tp
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        self.tn += gt.size - tp - fp - fn
        return self

    def metrics(self) -> dict:
        precision = _ratio(self.tp, self.tp + self.fp)
        recall = _ratio(self.tp, self.tp + self.fn)
        f1 = _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)
        return {"accuracy": _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn),
                "precision": precision, "recall": recall, "f1": f1,
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def dice(gt: np.ndarray, pred: np.ndarray) -> float | None:
    """Dice of two boolean masks; None when both are empty."""
    return _ratio(2 * np.count_nonzero(gt & pred), np.count_nonzero(gt) + np.count_nonzero(pred))


@dataclass
class Detection:
    lesions: int = 0
    detected: int = 0
    predicted: int = 0
    false_positives: int = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> "Detection":
        gt_components, n_gt = ndimage.label(gt, CONNECTIVITY)
        pred_components, n_pred = ndimage.label(pred, CONNECTIVITY)
        both = (gt_components > 0) & (pred_components > 0)
        self.lesions += n_gt
        self.detected += len(np.unique(gt_components[both]))
        self.predicted += n_pred
        self.false_positives += n_pred - len(np.unique(pred_components[both]))
        return self

    def metrics(self, cases: int) -> dict:
        return {"lesions": self.lesions, "detected": self.detected, "sensitivity": _ratio(self.detected, self.lesions),
                "predicted": self.predicted, "false_positives": self.false_positives,
                "false_positives_per_case": _ratio(self.false_positives, cases)}


@dataclass
class Evaluation:
    """Everything added up over a set of cases (a fold, the whole cross-validation, a test split)."""
    counts: dict[int, Counts] = field(default_factory=lambda: {c: Counts() for c in CLASSES})
    case_dice: dict[str, dict[str, float | None]] = field(default_factory=dict)
    detection: dict[str, Detection] = field(default_factory=lambda: {
        LABEL_NAMES[LABEL_SOLID_MASS]: Detection(), LABEL_NAMES[LABEL_CYST]: Detection(), "any_lesion": Detection()})

    def add_case(self, case_id: str, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.shape != pred.shape:
            raise ValueError(f"case {case_id}: prediction shape {pred.shape} differs from ground truth {gt.shape}")
        self.case_dice[case_id] = {}
        for c in CLASSES:
            g, p = gt == c, pred == c
            self.counts[c].add(g, p)
            self.case_dice[case_id][LABEL_NAMES[c]] = dice(g, p)
        for c in (LABEL_SOLID_MASS, LABEL_CYST):
            self.detection[LABEL_NAMES[c]].add(gt == c, pred == c)
        lesion = (LABEL_SOLID_MASS, LABEL_CYST)
        self.detection["any_lesion"].add(np.isin(gt, lesion), np.isin(pred, lesion))

    def merge(self, other: "Evaluation") -> None:
        for c in CLASSES:
            _add_fields(self.counts[c], other.counts[c])
        for name, d in other.detection.items():
            _add_fields(self.detection[name], d)
        self.case_dice.update(other.case_dice)

    def summary(self) -> dict:
        per_class = {}
        for c in CLASSES:
            name = LABEL_NAMES[c]
            scores = [d[name] for d in self.case_dice.values() if d[name] is not None]
            per_class[name] = {**self.counts[c].metrics(), "dice": float(np.mean(scores)) if scores else None,
                               "cases_with_class": len(scores)}
        keys = ("accuracy", "precision", "recall", "f1", "dice")
        average = {k: _mean([per_class[LABEL_NAMES[c]][k] for c in CLASSES]) for k in keys}
        return {"cases": len(self.case_dice), "per_class": per_class, "average": average,
                "case_dice": self.case_dice,
                "lesion_detection": {k: d.metrics(len(self.case_dice)) for k, d in self.detection.items()}}


def _add_fields(total, other) -> None:
    for f in fields(total):
        setattr(total, f.name, getattr(total, f.name) + getattr(other, f.name))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
