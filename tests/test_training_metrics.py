"""The paper's metric functions against values computed by hand on small arrays."""
from __future__ import annotations

import numpy as np
import pytest

from training.metrics import Counts, Evaluation, TrueLesions, dice


def test_counts_and_ratios_by_hand():
    gt = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    m = Counts().add(gt, pred).metrics()
    # TP 2, FP 1, FN 1, TN 4
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 4)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert dice(gt, pred) == pytest.approx(4 / 6)


def test_undefined_ratios_are_none():
    empty = np.zeros(5, bool)
    m = Counts().add(empty, empty).metrics()
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None
    assert m["accuracy"] == 1.0
    assert dice(empty, empty) is None


def test_lesion_detection_rule():
    gt = np.zeros((1, 5, 12), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 1:3, 0:2] = 2    # mass A: found by an overlapping prediction
    gt[0, 1:3, 5:7] = 2    # mass B: missed
    pred[0, 2:4, 1:3] = 2  # overlaps A by one voxel
    pred[0, 1, 9:11] = 2   # false positive
    gt[0, 4, 9:11] = 3     # a cyst predicted as a mass: found among any lesions, not among cysts
    pred[0, 4, 9:11] = 2
    ev = Evaluation()
    ev.add_case("a", gt, pred)
    s = ev.summary()["lesion_detection"]
    d = s["solid_mass"]
    assert (d["lesions"], d["detected"], d["predicted"], d["false_positives"]) == (2, 1, 3, 2)
    assert d["sensitivity"] == 0.5 and d["false_positives_per_case"] == 2.0
    assert (s["cyst"]["lesions"], s["cyst"]["detected"], s["cyst"]["predicted"]) == (1, 0, 0)
    any_lesion = s["any_lesion"]
    assert (any_lesion["lesions"], any_lesion["detected"], any_lesion["false_positives"]) == (3, 2, 1)

    # The truth found once and given gives the same figures for any prediction.
    again = Evaluation()
    again.add_case("a", gt, pred, truth=TrueLesions.of(gt, np.ones(3)))
    assert again.summary()["lesion_detection"] == s
    no_lesions = Evaluation()  # ... and it is the given truth that counts
    no_lesions.add_case("a", gt, pred, truth=TrueLesions.of(np.zeros_like(gt), np.ones(3)))
    assert no_lesions.summary()["lesion_detection"]["any_lesion"]["lesions"] == 0


def test_evaluation_per_class_pooled_and_per_case():
    gt1 = np.array([[[1, 1, 2, 0]]])
    pr1 = np.array([[[1, 0, 2, 0]]])
    gt2 = np.array([[[3, 3, 0, 0]]])
    pr2 = np.array([[[3, 0, 0, 1]]])
    ev = Evaluation()
    ev.add_case("a", gt1, pr1)
    ev.add_case("b", gt2, pr2)
    s = ev.summary()
    kidney = s["per_class"]["kidney"]
    # Pooled kidney: TP 1, FP 1 (case b), FN 1 (case a), TN 5
    assert (kidney["tp"], kidney["fp"], kidney["fn"], kidney["tn"]) == (1, 1, 1, 5)
    # Per-case kidney Dice: a = 2/3, b = 0 (predicted, absent) -> mean 1/3
    assert kidney["dice"] == pytest.approx(1 / 3)
    assert s["case_dice"]["a"]["cyst"] is None  # cyst neither in truth nor prediction of case a
    assert s["per_class"]["cyst"]["dice"] == pytest.approx(2 / 3)
    assert s["per_class"]["solid_mass"]["f1"] == 1.0
    assert s["lesion_detection"]["any_lesion"]["lesions"] == 2
    assert s["average"]["f1"] == pytest.approx(np.mean([0.5, 1.0, 2 / 3]))

    merged = Evaluation()
    for case_id, g, p in (("a", gt1, pr1), ("b", gt2, pr2)):
        single = Evaluation()
        single.add_case(case_id, g, p)
        merged.merge(single)
    assert merged.summary() == s


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="case x"):
        Evaluation().add_case("x", np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_detection_by_size_and_volume_errors_by_hand():
    gt = np.zeros((3, 4, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[1, 1, 0:5] = 2        # a mass 4 voxels x 3 mm = 12 mm long: 1-2 cm, detected
    pred[1, 1, 0:6] = 2      # ... by a component of 6 voxels: volume error +20 %
    gt[1, 3, 10] = 3         # a one-voxel cyst (0 mm): < 1 cm, missed
    pred[0, 0, 15:17] = 3    # a false cyst of 3 mm: < 1 cm
    gt[2, 0:2, 0:2] = 1      # kidney, right of the midline (x index < 8): 4 voxels
    pred[2, 0:2, 0:2] = 1
    pred[2, 2, 0] = 1        # one more: +25 %
    gt[2, 0:2, 12:14] = 1    # left kidney, exact
    pred[2, 0:2, 12:14] = 1
    right = (np.arange(20) < 8)[None, None, :]
    ev = Evaluation()
    ev.add_case("a", gt, pred, spacing_zyx=(3.0, 3.0, 3.0), right=right)
    s = ev.summary()
    mass = s["lesion_detection_by_size"]["solid_mass"]
    assert (mass["1-2 cm"]["lesions"], mass["1-2 cm"]["detected"], mass["1-2 cm"]["false_positives"]) == (1, 1, 0)
    assert mass[">= 1 cm"]["sensitivity"] == 1.0 and mass["< 1 cm"]["lesions"] == 0
    cyst = s["lesion_detection_by_size"]["cyst"]
    assert (cyst["< 1 cm"]["lesions"], cyst["< 1 cm"]["detected"], cyst["< 1 cm"]["false_positives"]) == (1, 0, 1)
    assert cyst[">= 1 cm"]["lesions"] == 0 and cyst[">= 1 cm"]["sensitivity"] is None
    assert s["lesion_detection_by_size"]["any_lesion"][">= 1 cm"]["detected"] == 1
    assert s["volume_error"]["solid_mass"]["mean_percent"] == pytest.approx(20.0)
    assert s["volume_error"]["cyst"]["count"] == 0  # the missed cyst has no predicted volume
    kidney = s["volume_error"]["kidney"]
    assert kidney["count"] == 2 and kidney["mean_percent"] == pytest.approx(12.5)
    assert kidney["median_absolute_percent"] == pytest.approx(12.5)
