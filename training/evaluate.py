"""`renalnode train evaluate`: the paper's metrics per fold, for the whole cross-validation and for
a held-out test split, as JSON and as a Markdown table shaped like the paper's Table II."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from renalnode.ensemble import EnsemblePredictor
from renalnode.model_package import folds_with_checkpoint
from training.metrics import Evaluation, __doc__ as METRICS_DOC
from training.profiles import PROFILES
from training.run import model_folder
from training.workspace import Workspace

ROWS = (("kidney", "Kidney"), ("solid_mass", "Solid renal masses"), ("cyst", "Renal cysts"))


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def evaluate_fold(folder: Path, fold: int, labels_dir: Path) -> Evaluation:
    """Metrics of one fold from nnU-Net's own validation predictions (fold_N/validation)."""
    evaluation = Evaluation()
    predictions = sorted((folder / f"fold_{fold}" / "validation").glob("*.nii.gz"))
    if not predictions:
        raise ValueError(f"fold {fold} has no validation predictions in {folder}; train it first")
    for pred in predictions:
        case_id = pred.name[: -len(".nii.gz")]
        evaluation.add_case(case_id, _read(labels_dir / pred.name), _read(pred))
    return evaluation


def evaluate_test(folder: Path, folds: list[int], images_dir: Path, labels_dir: Path, mirroring: bool,
                  log) -> Evaluation:
    """Metrics of the fold ensemble on the held-out test cases."""
    evaluation = Evaluation()
    predictor = EnsemblePredictor(folder, folds, use_mirroring=mirroring)
    for label_path in sorted(labels_dir.glob("*.nii.gz")):
        case_id = label_path.name[: -len(".nii.gz")]
        image = sitk.ReadImage(str(images_dir / f"{case_id}_0000.nii.gz"))
        pred = predictor.segment(sitk.GetArrayFromImage(image).astype(np.float32), image.GetSpacing()[::-1])
        evaluation.add_case(case_id, _read(label_path), pred)
        print(f"  test {case_id}: predicted", file=log, flush=True)
    return evaluation


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def markdown(report: dict) -> str:
    lines = []
    for title, key in (("Cross-validation (nnU-Net validation predictions of every fold)", "cross_validation"),
                       ("Held-out test split (ensemble of the folds, probabilities averaged)", "test")):
        summary = report.get(key)
        if not summary:
            continue
        lines += [f"### {title}: {summary['cases']} cases", "",
                  "| Class type | Accuracy (%) | Precision (%) | Recall (%) | F1-score (%) | Dice (%) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, row in ROWS:
            m = summary["per_class"][name]
            lines.append(f"| {row} | {_pct(m['accuracy'])} | {_pct(m['precision'])} | {_pct(m['recall'])} | "
                         f"{_pct(m['f1'])} | {_pct(m['dice'])} |")
        a = summary["average"]
        lines += [f"| Average | {_pct(a['accuracy'])} | {_pct(a['precision'])} | {_pct(a['recall'])} | "
                  f"{_pct(a['f1'])} | {_pct(a['dice'])} |", "",
                  "| Lesions | Count | Detected | Sensitivity (%) | False positives | FP per case |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, d in summary["lesion_detection"].items():
            fp_rate = "n/a" if d["false_positives_per_case"] is None else f"{d['false_positives_per_case']:.2f}"
            lines.append(f"| {name} | {d['lesions']} | {d['detected']} | {_pct(d['sensitivity'])} | "
                         f"{d['false_positives']} | {fp_rate} |")
        lines.append("")
    per_fold = report.get("folds", {})
    if per_fold:
        lines += ["### Per fold: mean Dice (%)", "", "| Fold | Cases | Kidney | Solid mass | Cyst |",
                  "| --- | --- | --- | --- | --- |"]
        for fold, summary in per_fold.items():
            dice = [_pct(summary["per_class"][name]["dice"]) for name, _ in ROWS]
            lines.append(f"| {fold} | {summary['cases']} | " + " | ".join(dice) + " |")
        lines.append("")
    return "\n".join(lines)


def evaluate(ws: Workspace, dataset_id: int, profile: str, trainer: str | None = None, test: bool = True,
             test_mirroring: bool = True, log=sys.stderr) -> dict:
    """Evaluate every trained fold; writes evaluation.json and evaluation.md into the model folder."""
    ws.activate()
    chosen = PROFILES[profile]
    dataset = ws.dataset_name(dataset_id)
    folder = model_folder(ws, dataset, trainer or chosen.trainer, chosen.plans)
    folds = folds_with_checkpoint(folder)
    if not folds:
        raise ValueError(f"no trained fold in {folder}; run `renalnode train run` first")
    raw = ws.raw / dataset
    report: dict = {"dataset": dataset, "model_folder": str(folder), "folds_evaluated": folds,
                    "metric_definitions": " ".join(METRICS_DOC.split()), "folds": {}}
    total = Evaluation()
    for fold in folds:
        fold_eval = evaluate_fold(folder, fold, raw / "labelsTr")
        report["folds"][str(fold)] = fold_eval.summary()
        total.merge(fold_eval)
        print(f"[evaluate] fold {fold}: {len(fold_eval.case_dice)} validation cases", file=log, flush=True)
    report["cross_validation"] = total.summary()
    if test and any((raw / "labelsTs").glob("*.nii.gz")):
        print(f"[evaluate] test split with the ensemble of folds {folds}", file=log, flush=True)
        report["test"] = evaluate_test(folder, folds, raw / "imagesTs", raw / "labelsTs", test_mirroring,
                                       log).summary()
        report["test"]["mirroring"] = test_mirroring
    (folder / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "evaluation.md").write_text(markdown(report))
    return report
