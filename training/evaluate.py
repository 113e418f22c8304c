"""`renalnode train evaluate`: the paper's metrics and lesion-level figures for the cross-validation,
the held-out test split and, optionally, a shifted test set, each with and without the
post-processing rules that the cross-validation chose; as JSON and as Markdown tables shaped like
the paper's Table II.

Every split is predicted as the app predicts (renalnode's ensemble, test-time mirroring unless
turned off): each fold's network on its own validation cases for the cross-validation, the ensemble
of the folds for the test and shifted sets. nnU-Net's own validation predictions are not used:
renalnode's trainers validate without mirroring, and rules chosen on predictions unlike the app's
would be tuned to errors the app does not make (mirroring removes most of the small false lesions
that a minimum volume would otherwise be chosen against).

The rules are chosen on the cross-validation predictions only (training/postprocessing_choice.py),
then applied unchanged to the test split and the shifted set, so those stay held out. Predictions
are written beside the model (`predictions_cross_validation/`, `predictions_test/`,
`predictions_shifted/`) on each case's own grid, where they can be opened over the CT.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from renalnode.ensemble import EnsemblePredictor, InferenceSettings
from renalnode.labels import CATALOGUE
from renalnode.model_package import folds_with_checkpoint
from renalnode.postprocessing_rules import PostprocessingRules, apply_rules, body_midline_x, right_of_midline
from training.dataset_import.sources import phantom_cases
from training.metrics import AT_LEAST_1CM, SIZE_BINS, Evaluation
from training.metrics import __doc__ as METRICS_DOC
from training.postprocessing_choice import choose_rules
from training.profiles import PROFILES
from training.run import model_folder
from training.workspace import Workspace

ROWS = tuple((c.key, c.evaluation_name) for c in CATALOGUE)
LESION_ROWS = tuple(row for row, c in zip(ROWS, CATALOGUE) if c.is_lesion) + (("any_lesion", "Any lesion"),)
SPLITS = (("cross_validation", "Cross-validation (each fold's network on its validation cases)"),
          ("test", "Held-out test split (ensemble of the folds, probabilities averaged)"),
          ("shifted", "Shifted test set (acquisition outside the training ranges; ensemble of the folds)"))

MIRRORED = "Predicted with test-time mirroring, as the app predicts by default."
NOT_MIRRORED = "Predicted without test-time mirroring (`--no-mirroring`); the app mirrors by default."


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    image: Path
    label: Path
    prediction: Path


@dataclass
class CaseSet:
    """Cases whose predictions are on disk, evaluated under any post-processing rules. Each case's
    body midline is found once and reused for every set of rules."""
    cases: list[CaseFiles]
    midlines: dict[str, float] = field(default_factory=dict)

    def evaluate(self, rules: PostprocessingRules) -> Evaluation:
        evaluation = Evaluation()
        for case in self.cases:
            image = sitk.ReadImage(str(case.image))
            hu = sitk.GetArrayViewFromImage(image)
            if case.case_id not in self.midlines:
                self.midlines[case.case_id] = body_midline_x(image, hu)
            midline = self.midlines[case.case_id]
            prediction = apply_rules(_read(case.prediction), image, hu, rules, midline)
            evaluation.add_case(case.case_id, _read(case.label), prediction, image.GetSpacing()[::-1],
                                right_of_midline(image, midline, hu.shape))
        return evaluation


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def validation_pairs(splits: Path, fold: int, raw: Path) -> list[tuple[str, Path, Path]]:
    """(case id, image, label) of one fold's validation cases, as nnU-Net's splits_final.json holds them."""
    if not splits.is_file():
        raise ValueError(f"{splits} is missing; train the folds first (`renalnode train run`)")
    case_ids = json.loads(splits.read_text())[fold]["val"]
    return [(c, raw / "imagesTr" / f"{c}_0000.nii.gz", raw / "labelsTr" / f"{c}.nii.gz") for c in sorted(case_ids)]


def predict_cases(predictor: EnsemblePredictor, pairs: list[tuple[str, Path, Path]], out: Path, log) -> list[CaseFiles]:
    """The ensemble's labels for (case id, image, label) triples, written to `out` on each image's grid."""
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for n, (case_id, image_path, label_path) in enumerate(pairs, start=1):
        image = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
        prediction = sitk.GetImageFromArray(predictor.segment_image(image))
        prediction.CopyInformation(image)
        path = out / f"{case_id}.nii.gz"
        sitk.WriteImage(prediction, str(path), useCompression=True)
        cases.append(CaseFiles(case_id, image_path, label_path, path))
        print(f"  [{n}/{len(pairs)}] {case_id}: predicted", file=log, flush=True)
    return cases


def shifted_description(folder: Path) -> dict:
    """The acquisition of a shifted set made by `renalnode phantom`, from its truth.json files."""
    pixel, slices, noise, positions = [], [], [], set()
    for case in sorted(p for p in folder.iterdir() if (p / "truth.json").is_file()):
        truth = json.loads((case / "truth.json").read_text())
        pixel.append(truth["spacing_mm"][0])
        slices.append(truth["spacing_mm"][2])
        noise.append(truth.get("reconstruction", {}).get("noise_hu"))
        positions.add(truth["patient_position"])
    if not pixel:
        return {"folder": str(folder)}
    noise = [n for n in noise if n is not None]
    return {"folder": str(folder), "pixel_mm": [min(pixel), max(pixel)], "slice_mm": [min(slices), max(slices)],
            "noise_hu": [min(noise), max(noise)] if noise else None, "patient_positions": sorted(positions)}


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _num(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _split_tables(summary: dict, raw: dict | None) -> list[str]:
    lines = ["| Class type | Accuracy (%) | Precision (%) | Recall (%) | F1-score (%) | Dice (%) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, row in ROWS:
        m = summary["per_class"][name]
        lines.append(f"| {row} | {_pct(m['accuracy'])} | {_pct(m['precision'])} | {_pct(m['recall'])} | "
                     f"{_pct(m['f1'])} | {_pct(m['dice'])} |")
    a = summary["average"]
    lines += [f"| Average | {_pct(a['accuracy'])} | {_pct(a['precision'])} | {_pct(a['recall'])} | "
              f"{_pct(a['f1'])} | {_pct(a['dice'])} |", ""]
    if raw:
        lines += ["Without and with the post-processing rules:", "",
                  "| Class type | F1 without (%) | F1 with (%) | Dice without (%) | Dice with (%) | "
                  "FP per case without | FP per case with |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, row in ROWS:
            before, after = raw["per_class"][name], summary["per_class"][name]
            fp = ("", "") if name == "kidney" else tuple(
                _num(s["lesion_detection"][name]["false_positives_per_case"], 2) for s in (raw, summary))
            lines.append(f"| {row} | {_pct(before['f1'])} | {_pct(after['f1'])} | {_pct(before['dice'])} | "
                         f"{_pct(after['dice'])} | {fp[0]} | {fp[1]} |")
        lines.append("")
    lines += ["| Lesions | Size | Count | Detected | Sensitivity (%) | False positives | FP per case |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in LESION_ROWS:
        by_size = summary["lesion_detection_by_size"][name]
        for size in [b for b, _, _ in SIZE_BINS] + [AT_LEAST_1CM]:
            d = by_size[size]
            lines.append(f"| {row} | {size} | {d['lesions']} | {d['detected']} | {_pct(d['sensitivity'])} | "
                         f"{d['false_positives']} | {_num(d['false_positives_per_case'], 2)} |")
        d = summary["lesion_detection"][name]
        lines.append(f"| {row} | all | {d['lesions']} | {d['detected']} | {_pct(d['sensitivity'])} | "
                     f"{d['false_positives']} | {_num(d['false_positives_per_case'], 2)} |")
    lines += ["", "| Volume error (as the SR reports it) | Objects | Mean (%) | Mean absolute (%) | "
              "Median absolute (%) |", "| --- | --- | --- | --- | --- |"]
    for name, row in (("kidney", "Kidney (per side)"),) + ROWS[1:]:
        v = summary["volume_error"][name]
        lines.append(f"| {row} | {v['count']} | {_num(v['mean_percent'])} | {_num(v['mean_absolute_percent'])} | "
                     f"{_num(v['median_absolute_percent'])} |")
    return lines + [""]


def markdown(report: dict) -> str:
    lines = []
    for key, title in SPLITS:
        summary = report.get(key)
        if not summary:
            continue
        lines += [f"### {title}: {summary['cases']} cases", ""]
        if "mirroring" in summary:
            lines += [MIRRORED if summary["mirroring"] else NOT_MIRRORED, ""]
        if key == "shifted" and report.get("shifted_acquisition"):
            a = report["shifted_acquisition"]
            if "pixel_mm" in a:
                lines += [f"Pixel {a['pixel_mm'][0]:.2f}-{a['pixel_mm'][1]:.2f} mm, slices "
                          f"{a['slice_mm'][0]:g}-{a['slice_mm'][1]:g} mm, noise "
                          + (f"{a['noise_hu'][0]:g}-{a['noise_hu'][1]:g} HU" if a.get("noise_hu") else "n/a")
                          + f", positions {', '.join(a['patient_positions'])}.", ""]
        lines += _split_tables(summary, report.get(f"{key}_without_postprocessing"))
    choice = report.get("postprocessing")
    if choice:
        defaults = PostprocessingRules().as_dict()
        kept = {k: v for k, v in choice["rules"].items() if v != defaults[k]}
        lines += ["### Post-processing chosen on the cross-validation", "",
                  "Kept: " + (", ".join(f"`{k} = {v}`" for k, v in kept.items()) if kept else "none") + ".", "",
                  "| Rule | Value | F1 before (%) | F1 after (%) | Lesions >= 1 cm found (%) | Raises F1 |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for t in choice["trials"]:
            before = ", ".join(f"{c} {_pct(v)}" for c, v in t["f1_before"].items())
            after = ", ".join(f"{c} {_pct(v)}" for c, v in t["f1_after"].items())
            lines.append(f"| {t['rule']} | {t['value']} | {before} | {after} | {_pct(t['lesion_sensitivity_1cm'])} | "
                         f"{'yes' if t['raises_f1'] else 'no'} |")
        lines.append("")
    per_fold = report.get("folds", {})
    if per_fold:
        lines += ["### Per fold (with post-processing): mean Dice (%)", "",
                  "| Fold | Cases | Kidney | Solid mass | Cyst |", "| --- | --- | --- | --- | --- |"]
        for fold, summary in per_fold.items():
            dice = [_pct(summary["per_class"][name]["dice"]) for name, _ in ROWS]
            lines.append(f"| {fold} | {summary['cases']} | " + " | ".join(dice) + " |")
        lines.append("")
    return "\n".join(lines)


def evaluate(ws: Workspace, dataset_id: int, profile: str, trainer: str | None = None, test: bool = True,
             mirroring: bool = True, shifted: Path | None = None, log=sys.stderr) -> dict:
    """Evaluate every trained fold; writes evaluation.json and evaluation.md into the model folder.
    `mirroring`: test-time mirroring in every split's predictions, as the app's RENALNODE_MIRRORING."""
    ws.activate()
    chosen = PROFILES[profile]
    dataset = ws.dataset_name(dataset_id)
    folder = model_folder(ws, dataset, trainer or chosen.trainer, chosen.plans)
    folds = folds_with_checkpoint(folder)
    if not folds:
        raise ValueError(f"no trained fold in {folder}; run `renalnode train run` first")
    if shifted is not None and (not shifted.is_dir() or not any(True for _ in phantom_cases(shifted))):
        raise ValueError(f"{shifted} holds no cases (<case>/image.nii.gz + label.nii.gz, as renalnode phantom "
                         "writes them)")
    raw = ws.raw / dataset
    none = PostprocessingRules()
    report: dict = {"dataset": dataset, "model_folder": str(folder), "folds_evaluated": folds,
                    "metric_definitions": " ".join(METRICS_DOC.split()), "folds": {}}
    settings = InferenceSettings(use_mirroring=mirroring)
    splits = ws.preprocessed / dataset / "splits_final.json"
    fold_sets = {}
    for fold in folds:
        pairs = validation_pairs(splits, fold, raw)
        print(f"[evaluate] fold {fold}: predicting its {len(pairs)} validation cases "
              f"({'with' if mirroring else 'without'} mirroring)", file=log, flush=True)
        fold_sets[fold] = CaseSet(predict_cases(EnsemblePredictor(folder, [fold], settings), pairs,
                                                folder / "predictions_cross_validation", log))
    cross_validation = CaseSet([c for s in fold_sets.values() for c in s.cases])
    print(f"[evaluate] choosing post-processing on {len(cross_validation.cases)} cross-validation cases "
          f"(folds {folds})", file=log, flush=True)
    rules, trials = choose_rules(lambda r: cross_validation.evaluate(r).summary(), log)
    report["postprocessing"] = {"rules": rules.as_dict(), "trials": trials}
    report["cross_validation_without_postprocessing"] = cross_validation.evaluate(none).summary()
    report["cross_validation"] = cross_validation.evaluate(rules).summary()
    report["cross_validation"]["mirroring"] = mirroring
    for fold, case_set in fold_sets.items():
        case_set.midlines = cross_validation.midlines
        report["folds"][str(fold)] = case_set.evaluate(rules).summary()
    targets = []
    if test and any((raw / "labelsTs").glob("*.nii.gz")):
        pairs = [(p.name[: -len(".nii.gz")], raw / "imagesTs" / p.name.replace(".nii.gz", "_0000.nii.gz"), p)
                 for p in sorted((raw / "labelsTs").glob("*.nii.gz"))]
        targets.append(("test", pairs))
    if shifted is not None:
        targets.append(("shifted", list(phantom_cases(shifted))))
        report["shifted_acquisition"] = shifted_description(shifted)
    if targets:
        predictor = EnsemblePredictor(folder, folds, settings)
    for key, pairs in targets:
        print(f"[evaluate] {key}: {len(pairs)} cases with the ensemble of folds {folds}", file=log, flush=True)
        case_set = CaseSet(predict_cases(predictor, pairs, folder / f"predictions_{key}", log))
        report[f"{key}_without_postprocessing"] = case_set.evaluate(none).summary()
        report[key] = case_set.evaluate(rules).summary()
        report[key]["mirroring"] = mirroring
    (folder / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "evaluation.md").write_text(markdown(report))
    return report
