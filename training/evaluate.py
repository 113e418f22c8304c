"""`renalnode train evaluate`: the paper's metrics and lesion-level figures for the cross-validation,
the held-out test split and, optionally, a shifted test set, each with and without the decision
offsets and post-processing rules that the cross-validation chose; as JSON and as Markdown tables
shaped like the paper's Table II.

Every split is predicted as the app predicts (renalnode's ensemble, test-time mirroring unless
turned off): each fold's network on its own validation cases for the cross-validation, the ensemble
of the folds for the test and shifted sets. nnU-Net's own validation predictions are not used:
renalnode's trainers validate without mirroring, and rules chosen on predictions unlike the app's
would be tuned to errors the app does not make (mirroring removes most of the small false lesions
that a minimum volume would otherwise be chosen against).

The offsets and rules are chosen on the cross-validation predictions only
(training/postprocessing_choice.py), then applied unchanged to the test split and the shifted set,
so those stay held out. Each cross-validation case is labelled under every candidate offset from
one network pass. Predictions are written beside the model (`predictions_cross_validation/`, with
every candidate's under `offsets/`; `predictions_test/`, `predictions_shifted/`, with the network's
own argmax under `without_offsets/` when offsets were kept) on each case's own grid, where they can
be opened over the CT.

A rerun (after a crash or a stop) keeps the predictions already written by the same weights and
settings: each prediction folder records them (`prediction_settings.json`), and a folder whose
record differs is emptied and predicted again. Cases are evaluated over worker processes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from renalnode.atomic import replace_atomic, write_bytes_atomic
from renalnode.ensemble import EnsemblePredictor, InferenceSettings, Offsets
from renalnode.labels import CATALOGUE, LABEL_NAMES
from renalnode.model_package import CHECKPOINT, folds_with_checkpoint
from renalnode.postprocessing_rules import PostprocessingRules, apply_rules, body_midline_x, right_of_midline
from training.dataset_import.sources import phantom_cases
from training.metrics import AT_LEAST_1CM, SIZE_BINS, Evaluation, TrueLesions
from training.metrics import __doc__ as METRICS_DOC
from training.postprocessing_choice import choose_offsets, choose_rules, offset_candidates
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
PREDICTION_SETTINGS = "prediction_settings.json"
# A worker holds one case's CT, truth and labels and their masks at a time: a 512 x 512 x 600 CT
# takes a few GiB, so more workers than this would trade memory for little time.
MAX_WORKERS = 4

ANTIALIASED = ("Input anti-aliasing (`--input-antialiasing`, model.json's `input_antialiasing`): a CT finer than "
               "the model's spacing is low-passed before it is resampled to it.")


@dataclass(frozen=True)
class CaseFiles:
    case_id: str
    image: Path
    label: Path
    prediction: Path


@dataclass(frozen=True)
class CaseFacts:
    """What a case's evaluation needs besides the prediction and does not change with it: the body's
    midline and the true lesions, found once and reused under every offset and set of rules."""
    midline: float
    truth: TrueLesions


@dataclass
class CaseSet:
    """Cases whose predictions are on disk, evaluated under any post-processing rules, over `pool`'s
    processes when there is one. `facts` (CaseFacts by case id) may be shared by the sets of several
    candidates' predictions of the same cases."""
    cases: list[CaseFiles]
    facts: dict[str, CaseFacts] = field(default_factory=dict)
    pool: Executor | None = None

    def evaluate(self, rules: PostprocessingRules) -> Evaluation:
        known = [self.facts.get(case.case_id) for case in self.cases]
        mapper = self.pool.map if self.pool is not None else map
        evaluation = Evaluation()
        # Merged in case order, so the figures are the same with or without workers.
        for case, (one, facts) in zip(self.cases, mapper(_evaluate_case, self.cases, repeat(rules), known)):
            self.facts[case.case_id] = facts
            evaluation.merge(one)
        return evaluation


def _evaluate_case(case: CaseFiles, rules: PostprocessingRules,
                   facts: CaseFacts | None) -> tuple[Evaluation, CaseFacts]:
    """One case under `rules`, and its facts (found here unless given)."""
    image = sitk.ReadImage(str(case.image))
    hu = sitk.GetArrayViewFromImage(image)
    gt = _read(case.label)
    spacing_zyx = np.array(image.GetSpacing()[::-1], float)
    if facts is None:
        facts = CaseFacts(body_midline_x(image, hu), TrueLesions.of(gt, spacing_zyx))
    prediction = apply_rules(_read(case.prediction), image, hu, rules, facts.midline)
    evaluation = Evaluation()
    evaluation.add_case(case.case_id, gt, prediction, spacing_zyx,
                        right_of_midline(image, facts.midline, hu.shape), facts.truth)
    return evaluation, facts


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


@contextmanager
def case_pool(workers: int) -> Iterator[Executor | None]:
    """Worker processes for CaseSet, or None for one worker. Spawned, not forked: the parent holds
    torch and its threads, which a forked child must not inherit."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield pool


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def validation_pairs(splits: Path, fold: int, raw: Path) -> list[tuple[str, Path, Path]]:
    """(case id, image, label) of one fold's validation cases, as nnU-Net's splits_final.json holds them."""
    if not splits.is_file():
        raise ValueError(f"{splits} is missing; train the folds first (`renalnode train run`)")
    case_ids = json.loads(splits.read_text())[fold]["val"]
    return [(c, raw / "imagesTr" / f"{c}_0000.nii.gz", raw / "labelsTr" / f"{c}.nii.gz") for c in sorted(case_ids)]


def prediction_settings(model_folder: Path, folds: list[int], mirroring: bool, input_antialiasing: bool) -> dict:
    """What an ensemble's predictions depend on besides the case: the folds' weights (by content, so a
    retrained fold counts as new), mirroring and anti-aliasing."""
    return {"checkpoints": {str(fold): hashlib.sha256((model_folder / f"fold_{fold}" / CHECKPOINT).read_bytes())
                            .hexdigest() for fold in folds},
            "mirroring": mirroring, "input_antialiasing": input_antialiasing}


def _prepare_prediction_folder(out: Path, settings: dict) -> None:
    """Keep `out`'s predictions when they were made under `settings`; otherwise empty it and record them."""
    record = out / PREDICTION_SETTINGS
    out.mkdir(parents=True, exist_ok=True)
    if record.is_file() and json.loads(record.read_text()) == settings:
        return
    for old in out.glob("*.nii.gz"):
        old.unlink()
    write_bytes_atomic(record, json.dumps(settings, indent=2).encode())


def _write_prediction(prediction: sitk.Image, path: Path) -> None:
    """Written under a temporary name and renamed, so a crash never leaves a half-written prediction
    that a rerun would keep."""
    tmp = path.with_name(f".{path.name[: -len('.nii.gz')]}.tmp.nii.gz")
    sitk.WriteImage(prediction, str(tmp), useCompression=True)
    replace_atomic(tmp, path)


def predict_cases(predictor: EnsemblePredictor, pairs: list[tuple[str, Path, Path]], outputs: dict[Path, Offsets],
                  settings: dict, log) -> dict[Path, list[CaseFiles]]:
    """The ensemble's labels for (case id, image, label) triples under each output folder's decision
    offsets (one network pass per case), written there on each image's grid. `settings`
    (prediction_settings) decides whether predictions an earlier run left there are kept."""
    for out, offsets in outputs.items():
        _prepare_prediction_folder(out, {**settings, "offsets": offsets})
    cases: dict[Path, list[CaseFiles]] = {out: [] for out in outputs}
    for n, (case_id, image_path, label_path) in enumerate(pairs, start=1):
        paths = [out / f"{case_id}.nii.gz" for out in outputs]
        if all(path.is_file() for path in paths):
            status = "kept from an earlier run"
        else:
            image = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
            for path, labels in zip(paths, predictor.segment_image_each(image, list(outputs.values()))):
                prediction = sitk.GetImageFromArray(labels)
                prediction.CopyInformation(image)
                _write_prediction(prediction, path)
            status = "predicted"
        for out, path in zip(outputs, paths):
            cases[out].append(CaseFiles(case_id, image_path, label_path, path))
        print(f"  [{n}/{len(pairs)}] {case_id}: {status}", file=log, flush=True)
    return cases


def network_offsets(offsets: dict[str, float]) -> Offsets:
    """Offsets per network output of a workspace's model (its outputs are the catalogue's values)."""
    if not any(offsets.values()):
        return None
    return [offsets.get(LABEL_NAMES[value], 0.0) for value in sorted(LABEL_NAMES)]


def offsets_folder(offsets: dict[str, float]) -> str:
    return "_".join(f"{key}{value:+.1f}" for key, value in offsets.items())


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
        lines += ["Without (the network's own argmax) and with the decision offsets and post-processing rules:", "",
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
        if summary.get("input_antialiasing"):
            lines += [ANTIALIASED, ""]
        if key == "shifted" and report.get("shifted_acquisition"):
            a = report["shifted_acquisition"]
            if "pixel_mm" in a:
                lines += [f"Pixel {a['pixel_mm'][0]:.2f}-{a['pixel_mm'][1]:.2f} mm, slices "
                          f"{a['slice_mm'][0]:g}-{a['slice_mm'][1]:g} mm, noise "
                          + (f"{a['noise_hu'][0]:g}-{a['noise_hu'][1]:g} HU" if a.get("noise_hu") else "n/a")
                          + f", positions {', '.join(a['patient_positions'])}.", ""]
        lines += _split_tables(summary, report.get(f"{key}_without_postprocessing"))
    offsets = report.get("decision_offsets")
    if offsets:
        defaults = PostprocessingRules().as_dict()
        judged = {k: v for k, v in offsets.get("judged_under_rules", {}).items() if v != defaults[k]}
        lines += ["### Decision offsets chosen on the cross-validation", "",
                  "Judged under the post-processing rules chosen for no offsets: "
                  + (", ".join(f"`{k} = {v}`" for k, v in judged.items()) or "none") + ".", "",
                  "Kept: " + (", ".join(f"`{k} {v:+.1f}`" for k, v in offsets["offsets"].items() if v) or "none")
                  + ".", "", "| Offsets | Mean F1 (%) | " + " | ".join(f"{row} F1 (%)" for _, row in ROWS)
                  + " | Lesions >= 1 cm found (%) | FP per case (>= 1 cm) | Allowed | Chosen |",
                  "| --- " * (len(ROWS) + 6) + "|"]
        for t in offsets["trials"]:
            lines.append(f"| {', '.join(f'{k} {v:+.1f}' for k, v in t['offsets'].items())} | {_pct(t['mean_f1'])} | "
                         + " | ".join(_pct(t["f1"][name]) for name, _ in ROWS)
                         + f" | {_pct(t['lesion_sensitivity_1cm'])} | {_num(t['false_positives_per_case_1cm'], 2)} | "
                         f"{'yes' if t['allowed'] else 'no'} | {'yes' if t['chosen'] else ''} |")
        lines.append("")
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
             mirroring: bool = True, shifted: Path | None = None, input_antialiasing: bool = False,
             workers: int | None = None, log=sys.stderr) -> dict:
    """Evaluate every trained fold; writes evaluation.json and evaluation.md into the model folder.
    `mirroring`: test-time mirroring in every split's predictions, as the app's RENALNODE_MIRRORING.
    `input_antialiasing`: every split predicted with it (EnsemblePredictor); the export then asks the
    app for it. `workers`: processes that evaluate cases (default_workers() when None)."""
    with case_pool(default_workers() if workers is None else workers) as pool:
        return _evaluate(ws, dataset_id, profile, trainer, test, mirroring, shifted, input_antialiasing, pool, log)


def _evaluate(ws: Workspace, dataset_id: int, profile: str, trainer: str | None, test: bool, mirroring: bool,
              shifted: Path | None, input_antialiasing: bool, pool: Executor | None, log) -> dict:
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
                    "input_antialiasing": input_antialiasing,
                    "metric_definitions": " ".join(METRICS_DOC.split()), "folds": {}}
    settings = InferenceSettings(use_mirroring=mirroring)
    written_by = {fold: prediction_settings(folder, [fold], mirroring, input_antialiasing) for fold in folds}
    splits = ws.preprocessed / dataset / "splits_final.json"
    cv_folder = folder / "predictions_cross_validation"
    candidates = offset_candidates()
    candidate_folders = {offsets_folder(o): cv_folder / "offsets" / offsets_folder(o) for o in candidates}
    facts: dict[str, CaseFacts] = {}  # one per case, shared by every candidate's predictions
    candidate_cases: dict[str, list[CaseFiles]] = {name: [] for name in candidate_folders}
    fold_cases: dict[int, list[str]] = {}
    for fold in folds:
        pairs = validation_pairs(splits, fold, raw)
        fold_cases[fold] = [case_id for case_id, _, _ in pairs]
        print(f"[evaluate] fold {fold}: predicting its {len(pairs)} validation cases "
              f"({'with' if mirroring else 'without'} mirroring) under {len(candidates)} decision offsets",
              file=log, flush=True)
        predicted = predict_cases(EnsemblePredictor(folder, [fold], settings, input_antialiasing=input_antialiasing),
                                  pairs,
                                  {candidate_folders[offsets_folder(o)]: network_offsets(o) for o in candidates},
                                  written_by[fold], log)
        for name, out in candidate_folders.items():
            candidate_cases[name] += predicted[out]
    sets = {name: CaseSet(cases, facts, pool) for name, cases in candidate_cases.items()}
    print(f"[evaluate] choosing decision offsets and post-processing on {sum(map(len, fold_cases.values()))} "
          f"cross-validation cases (folds {folds})", file=log, flush=True)
    # Offsets are judged under the rules that suit the network's own argmax: most false lesions lie
    # away from the kidneys, where those rules remove them whatever the offsets, and only what is
    # left should count against an offset. The rules are then chosen again under the kept offsets.
    print("[evaluate] rules for the network's own argmax, to judge the offsets under", file=log, flush=True)
    argmax_rules, _ = choose_rules(lambda r: sets[offsets_folder(candidates[0])].evaluate(r).summary(), log)
    offsets, offset_trials = choose_offsets(
        candidates, lambda o: sets[offsets_folder(o)].evaluate(argmax_rules).summary(), log)
    report["decision_offsets"] = {"offsets": offsets, "judged_under_rules": argmax_rules.as_dict(),
                                  "trials": offset_trials}
    print(f"[evaluate] rules under the kept offsets {offsets}", file=log, flush=True)
    # What the app predicts before its rules, where the cross-validation predictions always were.
    cross_validation = CaseSet([dataclasses.replace(c, prediction=cv_folder / c.prediction.name)
                                for c in sets[offsets_folder(offsets)].cases], facts, pool)
    for case in sets[offsets_folder(offsets)].cases:
        shutil.copy2(case.prediction, cv_folder / case.prediction.name)
    rules, trials = choose_rules(lambda r: cross_validation.evaluate(r).summary(), log)
    report["postprocessing"] = {"rules": rules.as_dict(), "trials": trials}
    report["cross_validation_without_postprocessing"] = sets[offsets_folder(candidates[0])].evaluate(none).summary()
    report["cross_validation"] = cross_validation.evaluate(rules).summary()
    report["cross_validation"].update(mirroring=mirroring, input_antialiasing=input_antialiasing)
    for fold, case_ids in fold_cases.items():
        fold_set = CaseSet([c for c in cross_validation.cases if c.case_id in case_ids], facts, pool)
        report["folds"][str(fold)] = fold_set.evaluate(rules).summary()
    targets = []
    if test and any((raw / "labelsTs").glob("*.nii.gz")):
        pairs = [(p.name[: -len(".nii.gz")], raw / "imagesTs" / p.name.replace(".nii.gz", "_0000.nii.gz"), p)
                 for p in sorted((raw / "labelsTs").glob("*.nii.gz"))]
        targets.append(("test", pairs))
    if shifted is not None:
        targets.append(("shifted", list(phantom_cases(shifted))))
        report["shifted_acquisition"] = shifted_description(shifted)
    if targets:
        predictor = EnsemblePredictor(folder, folds, settings, input_antialiasing=input_antialiasing)
        ensemble_settings = prediction_settings(folder, folds, mirroring, input_antialiasing)
    for key, pairs in targets:
        print(f"[evaluate] {key}: {len(pairs)} cases with the ensemble of folds {folds}", file=log, flush=True)
        out = folder / f"predictions_{key}"
        outputs = {out: network_offsets(offsets)}
        if outputs[out] is not None:  # the network's own argmax too, for the "without" figures
            outputs[out / "without_offsets"] = None
        predicted = predict_cases(predictor, pairs, outputs, ensemble_settings, log)
        key_facts: dict[str, CaseFacts] = {}
        report[f"{key}_without_postprocessing"] = CaseSet(predicted[list(outputs)[-1]], key_facts, pool).evaluate(
            none).summary()
        report[key] = CaseSet(predicted[out], key_facts, pool).evaluate(rules).summary()
        report[key].update(mirroring=mirroring, input_antialiasing=input_antialiasing)
    (folder / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "evaluation.md").write_text(markdown(report))
    return report
