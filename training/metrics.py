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

By size: a true lesion's size is its maximum 3D diameter (between voxel centres, as the SR
reports it); a false positive's is that of the predicted component. Sizes fall into the bins
< 1 cm, 1-2 cm, 2-4 cm and > 4 cm; ">= 1 cm" adds up the last three.

Volume error, as the SR would report it: per kidney side (split at the body's midline), the
predicted kidney volume against the true one; per detected lesion, the volume of the predicted
lesion components that overlap it against its true volume. Errors are signed percentages of the
true volume; the summary gives their mean, the mean of their absolute values and the median of
those.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from scipy import ndimage

from renalnode.labels import CYST as LABEL_CYST
from renalnode.labels import KIDNEY as LABEL_KIDNEY
from renalnode.labels import LABEL_NAMES
from renalnode.labels import SOLID_MASS as LABEL_SOLID_MASS
from renalnode.measurements import max_diameter_mm
from renalnode.postprocessing_rules import CONNECTIVITY

CLASSES = (LABEL_KIDNEY, LABEL_SOLID_MASS, LABEL_CYST)
LESION_CLASSES = (LABEL_SOLID_MASS, LABEL_CYST)
SIZE_BINS = (("< 1 cm", 0.0, 10.0), ("1-2 cm", 10.0, 20.0), ("2-4 cm", 20.0, 40.0), ("> 4 cm", 40.0, np.inf))
AT_LEAST_1CM = ">= 1 cm"
# Detection is counted per lesion class, and for both merged ("any_lesion": a mass called a cyst is found there).
LESION_KINDS = (LABEL_NAMES[LABEL_SOLID_MASS], LABEL_NAMES[LABEL_CYST], "any_lesion")


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


@dataclass
class Counts:
    """Confusion counts of one class, added up over cases."""
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> Counts:
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

    def metrics(self, cases: int) -> dict:
        return {"lesions": self.lesions, "detected": self.detected, "sensitivity": _ratio(self.detected, self.lesions),
                "predicted": self.predicted, "false_positives": self.false_positives,
                "false_positives_per_case": _ratio(self.false_positives, cases)}


def size_bin(diameter_mm: float) -> str:
    return next(name for name, lo, hi in SIZE_BINS if lo <= diameter_mm < hi)


def _diameters(found: np.ndarray, count: int, spacing_zyx: np.ndarray) -> list[float]:
    """Maximum 3D diameter (mm) of components 1..count of a labelled array."""
    out = []
    for index, box in enumerate(ndimage.find_objects(found, count), start=1):
        points = (np.argwhere(found[box] == index) + [b.start for b in box]) * spacing_zyx
        out.append(max_diameter_mm(points))
    return out


@dataclass(frozen=True)
class TrueLesion:
    box: tuple[slice, ...]
    mask: np.ndarray  # the lesion's voxels within `box`
    diameter_mm: float


@dataclass(frozen=True)
class TrueLesions:
    """One case's true lesions of each kind (LESION_KINDS), found and sized once: the same truth is
    evaluated against every candidate's prediction (offsets, rules). Each lesion is kept as its
    bounding box and mask, small enough to pass to worker processes."""
    by_kind: dict[str, list[TrueLesion]]

    @classmethod
    def of(cls, gt: np.ndarray, spacing_zyx: np.ndarray) -> TrueLesions:
        by_kind = {}
        for kind, mask in _lesion_masks(gt).items():
            found, count = ndimage.label(mask, CONNECTIVITY)
            boxes = ndimage.find_objects(found, count)
            by_kind[kind] = [TrueLesion(box, found[box] == index, diameter) for index, (box, diameter)
                             in enumerate(zip(boxes, _diameters(found, count, spacing_zyx)), start=1)]
        return cls(by_kind)


def _lesion_masks(label: np.ndarray) -> dict[str, np.ndarray]:
    """Each kind's mask: one lesion class, or both merged ("any_lesion")."""
    return {LABEL_NAMES[LABEL_SOLID_MASS]: label == LABEL_SOLID_MASS, LABEL_NAMES[LABEL_CYST]: label == LABEL_CYST,
            "any_lesion": np.isin(label, LESION_CLASSES)}


@dataclass
class SizedDetection:
    """Detection per lesion size bin: {bin: Detection}."""
    bins: dict[str, Detection] = field(default_factory=lambda: {name: Detection() for name, _, _ in SIZE_BINS})

    def add(self, lesions: list[TrueLesion], pred_found: np.ndarray, pred_diameters: list[float]) -> None:
        """`pred_found`: the predicted components of the same kind, labelled 1..len(pred_diameters)."""
        hit_pred: set[int] = set()
        for lesion in lesions:
            touching = np.unique(pred_found[lesion.box][lesion.mask])
            touching = touching[touching > 0]
            d = self.bins[size_bin(lesion.diameter_mm)]
            d.lesions += 1
            d.detected += len(touching) > 0
            hit_pred.update(touching.tolist())
        for index, diameter in enumerate(pred_diameters, start=1):
            d = self.bins[size_bin(diameter)]
            d.predicted += 1
            d.false_positives += index not in hit_pred

    def merge(self, other: SizedDetection) -> None:
        for name, d in other.bins.items():
            _add_fields(self.bins[name], d)

    def total(self, smallest: bool = True) -> Detection:
        """All bins added up; without the smallest (< 1 cm) when `smallest` is False."""
        out = Detection()
        for name, d in self.bins.items():
            if smallest or name != SIZE_BINS[0][0]:
                _add_fields(out, d)
        return out

    def metrics(self, cases: int) -> dict:
        out = {name: d.metrics(cases) for name, d in self.bins.items()}
        out[AT_LEAST_1CM] = self.total(smallest=False).metrics(cases)
        return out


def volume_error_summary(errors: list[float]) -> dict:
    if not errors:
        return {"count": 0, "mean_percent": None, "mean_absolute_percent": None, "median_absolute_percent": None}
    values = np.asarray(errors, float)
    return {"count": len(errors), "mean_percent": float(values.mean()),
            "mean_absolute_percent": float(np.abs(values).mean()),
            "median_absolute_percent": float(np.median(np.abs(values)))}


@dataclass
class Evaluation:
    """Everything added up over a set of cases (a fold, the whole cross-validation, a test split)."""
    counts: dict[int, Counts] = field(default_factory=lambda: {c: Counts() for c in CLASSES})
    case_dice: dict[str, dict[str, float | None]] = field(default_factory=dict)
    detection_by_size: dict[str, SizedDetection] = field(default_factory=lambda: {
        kind: SizedDetection() for kind in LESION_KINDS})
    volume_errors: dict[str, list[float]] = field(default_factory=lambda: {
        LABEL_NAMES[c]: [] for c in CLASSES})

    def add_case(self, case_id: str, gt: np.ndarray, pred: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0),
                 right: np.ndarray | None = None, truth: TrueLesions | None = None) -> None:
        """Add one case; `spacing_zyx` (mm) sizes lesions and volumes, `right` (boolean, broadcastable
        to the volume) marks the patient's right side for the kidney volume of each side. `truth`:
        TrueLesions.of(gt, spacing_zyx) when it is known already."""
        if gt.shape != pred.shape:
            raise ValueError(f"case {case_id}: prediction shape {pred.shape} differs from ground truth {gt.shape}")
        spacing_zyx = np.asarray(spacing_zyx, float)
        if truth is None:
            truth = TrueLesions.of(gt, spacing_zyx)
        self.case_dice[case_id] = {}
        for c in CLASSES:
            g, p = gt == c, pred == c
            self.counts[c].add(g, p)
            self.case_dice[case_id][LABEL_NAMES[c]] = dice(g, p)
        for kind, mask in _lesion_masks(pred).items():
            found, count = ndimage.label(mask, CONNECTIVITY)
            self.detection_by_size[kind].add(truth.by_kind[kind], found, _diameters(found, count, spacing_zyx))
            if kind == "any_lesion":  # a lesion's predicted volume: every lesion component on it, of either class
                any_found = found
        self._add_volume_errors(gt, pred, truth, any_found, right)

    def _add_volume_errors(self, gt, pred, truth: TrueLesions, pred_found: np.ndarray, right) -> None:
        if right is not None:
            right = np.broadcast_to(right, gt.shape)
            for side in (right, ~right):
                true = np.count_nonzero((gt == LABEL_KIDNEY) & side)
                if true:
                    predicted = np.count_nonzero((pred == LABEL_KIDNEY) & side)
                    self.volume_errors[LABEL_NAMES[LABEL_KIDNEY]].append(100.0 * (predicted - true) / true)
        sizes = np.bincount(pred_found.ravel())
        for c in LESION_CLASSES:
            for lesion in truth.by_kind[LABEL_NAMES[c]]:
                touching = np.unique(pred_found[lesion.box][lesion.mask])
                touching = touching[touching > 0]
                if len(touching):
                    size = int(np.count_nonzero(lesion.mask))
                    self.volume_errors[LABEL_NAMES[c]].append(100.0 * (int(sizes[touching].sum()) - size) / size)

    def merge(self, other: Evaluation) -> None:
        for c in CLASSES:
            _add_fields(self.counts[c], other.counts[c])
        for name, d in other.detection_by_size.items():
            self.detection_by_size[name].merge(d)
        for name, errors in other.volume_errors.items():
            self.volume_errors[name] += errors
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
                "lesion_detection": {k: d.total().metrics(len(self.case_dice))
                                     for k, d in self.detection_by_size.items()},
                "lesion_detection_by_size": {k: d.metrics(len(self.case_dice))
                                             for k, d in self.detection_by_size.items()},
                "volume_error": {k: volume_error_summary(v) for k, v in self.volume_errors.items()}}


def _add_fields(total, other) -> None:
    for f in fields(total):
        setattr(total, f.name, getattr(total, f.name) + getattr(other, f.name))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
