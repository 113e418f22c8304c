"""`renalnode train export`: the model package the app loads (contract in docs/architecture.md and
renalnode/model_package.py): nnU-Net's trained-model folder with each fold's final checkpoint,
and the `model.json` card. Checkpoints keep only what inference reads (weights, trainer name,
init arguments, mirroring axes), which halves their size; the package is written under a
temporary name and renamed when complete."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import torch

from renalnode.labels import LABEL_NAMES
from renalnode.model_package import CARD, CHECKPOINT, FORMAT, NNUNET_DIR, folds_with_checkpoint, load_model_package
from training.profiles import CONFIGURATION, PROFILES
from training.run import model_folder
from training.workspace import Workspace

INFERENCE_KEYS = ("network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes",
                  "current_epoch")
SUMMARY_KEYS = ("cases", "mirroring", "per_class", "average", "lesion_detection", "lesion_detection_by_size",
                "volume_error")
CURVE_EVERY = 10  # epochs between the points of the learning curve kept in the card
NOT_FOR_CLINICAL_USE = ("Research use only; not for diagnostic use unless a site validates it on its own data.")


def learning_curve(checkpoint: dict) -> list[dict]:
    """Every CURVE_EVERY-th epoch (and the last) of nnU-Net's training log: losses and the EMA
    pseudo-Dice of the foreground classes on the fold's validation patches."""
    log = checkpoint.get("logging", {})
    epochs = len(log.get("train_losses", []))
    points = []
    for epoch in sorted(set(range(0, epochs, CURVE_EVERY)) | ({epochs - 1} if epochs else set())):
        points.append({"epoch": epoch + 1, "train_loss": round(float(log["train_losses"][epoch]), 4),
                       "validation_loss": round(float(log["val_losses"][epoch]), 4),
                       "ema_pseudo_dice": round(float(log["ema_fg_dice"][epoch]), 4)})
    return points


def export(ws: Workspace, dataset_id: int, profile: str, out: Path, name: str, version: str,
           trainer: str | None = None, description: str = "", log=sys.stderr) -> Path:
    ws.activate()
    chosen = PROFILES[profile]
    dataset = ws.dataset_name(dataset_id)
    trainer = trainer or chosen.trainer
    folder = model_folder(ws, dataset, trainer, chosen.plans)
    folds = folds_with_checkpoint(folder)
    if not folds:
        raise ValueError(f"no trained fold in {folder}; run `renalnode train run` first")
    evaluation_path = folder / "evaluation.json"
    if not evaluation_path.exists():
        raise ValueError(f"{folder} has not been evaluated; run `renalnode train evaluate` first")
    evaluation = json.loads(evaluation_path.read_text())
    dataset_json = json.loads((ws.raw / dataset / "dataset.json").read_text())
    plans = json.loads((folder / "plans.json").read_text())

    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    nnunet = tmp / NNUNET_DIR
    nnunet.mkdir(parents=True)
    for item in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy2(folder / item, nnunet / item)
    # Which training cases validated which fold: the cross-validation figures' provenance.
    splits = ws.preprocessed / dataset / "splits_final.json"
    if splits.exists():
        shutil.copy2(splits, nnunet / splits.name)
    curves = {}
    for fold in folds:
        checkpoint = torch.load(folder / f"fold_{fold}" / CHECKPOINT, map_location="cpu", weights_only=False)
        (nnunet / f"fold_{fold}").mkdir()
        torch.save({k: checkpoint[k] for k in INFERENCE_KEYS if k in checkpoint}, nnunet / f"fold_{fold}" / CHECKPOINT)
        curves[str(fold)] = learning_curve(checkpoint)
        if (folder / f"fold_{fold}" / "progress.png").exists():
            shutil.copy2(folder / f"fold_{fold}" / "progress.png", tmp / f"learning_curve_fold_{fold}.png")
        print(f"[export] fold {fold}: epoch {checkpoint.get('current_epoch')}", file=log, flush=True)
    cv = evaluation["cross_validation"]
    # The plans hold the spacing in nnU-Net's transposed axis order; the card names it in z, y, x.
    spacing = plans["configurations"][CONFIGURATION]["spacing"]
    spacing_zyx = [spacing[axis] for axis in plans["transpose_backward"]]
    card = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "description": description,
        "intended_use": NOT_FOR_CLINICAL_USE,
        "labels": {str(v): n for v, n in LABEL_NAMES.items()},
        "folds": folds,
        "trainer": trainer,
        "plans": plans["plans_name"],
        "configuration": CONFIGURATION,
        "profile": profile,
        "input": {"modality": "CT", "orientation": dataset_json.get("renalnode", {}).get("orientation", "LPS"),
                  "spacing_mm_zyx": spacing_zyx},
        "training_data": {"dataset": dataset, "description": dataset_json.get("description", ""),
                          "training_cases": dataset_json["numTraining"],
                          "test_cases": len(dataset_json.get("renalnode", {}).get("test_cases", [])),
                          "label_voxels": dataset_json.get("renalnode", {}).get("label_voxels", {})},
        # The offsets and rules the cross-validation kept, and the input anti-aliasing it was
        # predicted with; the app applies exactly these.
        "input_antialiasing": bool(evaluation.get("input_antialiasing", False)),
        "decision_offsets": evaluation.get("decision_offsets", {}).get("offsets", {}),
        "postprocessing": evaluation.get("postprocessing", {}).get("rules", {}),
        "cross_validation": {k: cv[k] for k in SUMMARY_KEYS if k in cv},
        "test": {k: evaluation["test"][k] for k in SUMMARY_KEYS if k in evaluation["test"]}
        if "test" in evaluation else None,
        "shifted_test": {"acquisition": evaluation.get("shifted_acquisition"),
                         **{k: evaluation["shifted"][k] for k in SUMMARY_KEYS if k in evaluation["shifted"]}}
        if "shifted" in evaluation else None,
        "learning_curve": curves,
        "metric_definitions": evaluation["metric_definitions"],
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
    (tmp / "evaluation.md").write_text((folder / "evaluation.md").read_text())
    load_model_package(tmp)  # the package must satisfy the contract before it replaces anything
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
