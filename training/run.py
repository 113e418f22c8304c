"""`renalnode train run`: nnU-Net's own fingerprint (with the data set integrity check), planning,
preprocessing and training, fold by fold, resuming what an interrupted run left.

Each step is skipped when its output is already there, so running the same command again after a
crash or a Ctrl-C goes on where it stopped: a fold with a final checkpoint is done, a fold with a
latest checkpoint resumes from it. A fold whose final checkpoint has fewer epochs than its trainer's
schedule (the schedule was raised) goes on from it, with the learning rate of the longer schedule at
that epoch.

`init_from` fine-tunes: a new data set (more cases, another look) is trained from an earlier
model's weights, as nnU-Net's documented pretraining does it. The earlier model's plans are the new
data set's plans, so its cases are preprocessed to the spacing and normalisation the weights know;
each fold starts from the same fold of the earlier model, and keeps that fold's validation cases
out of training, so the new model's cross-validation never scores a case either model learned.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from renalnode.ensemble import default_device
from renalnode.nnunet_trainers.renalnode_trainers import PRECISION_VARIABLE
from training.profiles import CONFIGURATION, PROFILES, TINY_PLANS, write_tiny_plans
from training.workspace import Workspace


@contextlib.contextmanager
def _env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def model_folder(ws: Workspace, dataset: str, trainer: str, plans: str) -> Path:
    """nnU-Net's trained-model folder: results/Dataset/Trainer__Plans__3d_fullres."""
    return ws.results / dataset / f"{trainer}__{plans}__{CONFIGURATION}"


def inherit_plans(ws: Workspace, dataset: str, plans: str, source: Path) -> None:
    """The earlier model's plans become this data set's `plans`, with their own preprocessed data
    (its spacing may differ from what nnU-Net would plan for this data set)."""
    target = ws.preprocessed / dataset / f"{plans}.json"
    inherited = json.loads((source / "plans.json").read_text())
    inherited["dataset_name"] = dataset
    inherited["plans_name"] = plans
    for config in inherited["configurations"].values():
        if "data_identifier" in config:
            config["data_identifier"] = f"{plans}_inherited_{CONFIGURATION}"
    if target.exists():
        if json.loads(target.read_text()) != inherited:
            raise ValueError(f"{target} exists and is not the plans of {source}; fine-tune into a new data set")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(inherited, indent=2) + "\n")


def inherited_splits(source_splits: list[dict], cases: list[str], seed: int = 12345) -> list[dict]:
    """The earlier model's folds over `cases`, in which every case the earlier model validated on in fold k is
    validated on again in fold k (none of them is trained on), and the cases it never saw are
    dealt over the folds at random; cases it trained on in every fold stay in training."""
    import numpy as np

    known = {case for split in source_splits for case in split["train"] + split["val"]}
    new = [str(c) for c in np.random.default_rng(seed).permutation(sorted(set(cases) - known))]
    splits = []
    for fold, source in enumerate(source_splits):
        val = sorted((set(source["val"]) & set(cases)) | set(new[fold::len(source_splits)]))
        splits.append({"train": sorted(set(cases) - set(val)), "val": val})
    return splits


def write_inherited_splits(ws: Workspace, dataset: str, source: Path) -> None:
    splits_path = ws.preprocessed / dataset / "splits_final.json"
    if splits_path.exists():
        return
    # A package holds its folds; nnU-Net's results folder leaves them with the preprocessed data.
    source_splits = source / "splits_final.json"
    if not source_splits.exists():
        source_dataset = json.loads((source / "plans.json").read_text())["dataset_name"]
        source_splits = ws.preprocessed / source_dataset / "splits_final.json"
    if not source_splits.exists():
        raise ValueError(f"the folds of {source} are unknown: no splits_final.json in it or in {source_splits.parent}")
    cases = sorted(p.name[:-len(".nii.gz")] for p in (ws.raw / dataset / "labelsTr").glob("*.nii.gz"))
    splits_path.write_text(json.dumps(inherited_splits(json.loads(source_splits.read_text()), cases),
                                      indent=2) + "\n")


def prepare(ws: Workspace, dataset_id: int, plans: str, processes: int, log=sys.stderr) -> str:
    """Fingerprint, plan and preprocess the data set once; returns its name."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    dataset = ws.dataset_name(dataset_id)
    folder = ws.preprocessed / dataset
    # nnU-Net's planner sets torch's thread count from nnUNet_n_proc_DA, which must then be positive.
    with _env(nnUNet_n_proc_DA=str(max(1, int(os.environ.get("nnUNet_n_proc_DA", "1"))))):
        if not (folder / "dataset_fingerprint.json").exists():
            print(f"[prepare] {dataset}: checking data set integrity and extracting the fingerprint", file=log,
                  flush=True)
            extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=True,
                                 show_progress_bar=False)
        if not (folder / "nnUNetPlans.json").exists():
            print(f"[prepare] {dataset}: planning", file=log, flush=True)
            plan_experiments([dataset_id])
    if plans == TINY_PLANS and not (folder / f"{TINY_PLANS}.json").exists():
        write_tiny_plans(folder)
    identifier = json.loads((folder / f"{plans}.json").read_text())["configurations"][CONFIGURATION][
        "data_identifier"]
    raw_cases = len(list((ws.raw / dataset / "labelsTr").glob("*.nii.gz")))
    done = len(list((folder / identifier).glob("*.pkl"))) if (folder / identifier).exists() else 0
    if done < raw_cases:
        print(f"[prepare] {dataset}: preprocessing {raw_cases} cases for {plans}", file=log, flush=True)
        preprocess([dataset_id], plans, [CONFIGURATION], [processes], show_progress_bar=False)
    return dataset


def _epochs_trained(checkpoint: Path) -> int:
    import torch
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["current_epoch"])


def _planned_epochs(trainer: str) -> int | None:
    """The epoch count of one of renalnode's trainers; None for nnU-Net's own."""
    from renalnode.nnunet_trainers import renalnode_trainers
    schedule = getattr(getattr(renalnode_trainers, trainer, None), "schedule", None)
    return schedule[0] if schedule else None


def train(ws: Workspace, dataset_id: int, profile: str, folds: list[int], trainer: str | None = None,
          device: str | None = None, precision: str | None = None, init_from: Path | None = None,
          log=sys.stderr) -> Path:
    """Train the given folds; returns the trained-model folder. `precision` (PRECISIONS) is a CPU's
    arithmetic in renalnode's trainers; by default theirs (`auto`, or RENALNODE_PRECISION).
    `init_from` is a trained-model folder (nnU-Net's results layout, or a package's `nnunet/`) whose
    plans, folds and weights a fine-tuning starts from."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    if not folds or any(f not in range(5) for f in folds):
        raise ValueError("folds must be among 0, 1, 2, 3, 4")
    ws.activate()
    device = device or default_device().type
    if device == "cpu":
        # Two cores: augmenting in the training process is faster than feeding it from a worker.
        os.environ.setdefault("nnUNet_n_proc_DA", "0")
    processes = int(os.environ.setdefault("nnUNet_def_n_proc", str(min(4, os.cpu_count() or 1))))
    chosen = PROFILES[profile]
    trainer = trainer or chosen.trainer
    if init_from is not None:
        missing = [f for f in folds if not (init_from / f"fold_{f}" / "checkpoint_final.pth").exists()]
        if not (init_from / "plans.json").exists() or missing:
            raise ValueError(f"{init_from} is not a trained model with plans.json and the final "
                             f"checkpoints of folds {missing or folds}")
        dataset = ws.dataset_name(dataset_id)
        inherit_plans(ws, dataset, chosen.plans, init_from)
        write_inherited_splits(ws, dataset, init_from)
    dataset = prepare(ws, dataset_id, chosen.plans, processes, log)

    import torch
    from nnunetv2.run.run_training import run_training

    out = model_folder(ws, dataset, trainer, chosen.plans)
    for n, fold in enumerate(folds, start=1):
        fold_dir = out / f"fold_{fold}"
        final, latest = fold_dir / "checkpoint_final.pth", fold_dir / "checkpoint_latest.pth"
        if final.exists():
            done, planned = _epochs_trained(final), _planned_epochs(trainer)
            if planned is None or done >= planned:
                print(f"[fold {fold}] ({n}/{len(folds)}) already trained, kept", file=log, flush=True)
                continue
            # The trainer's schedule was raised since: nnU-Net would resume from the final checkpoint
            # even after a newer latest one, so the final becomes the latest.
            print(f"[fold {fold}] trained {done} of {planned} epochs: continuing", file=log, flush=True)
            if latest.exists() and _epochs_trained(latest) > done:
                final.unlink()
            else:
                final.replace(latest)
        resume = latest.exists()
        # A resumed fine-tuning goes on from its own checkpoint, not from the earlier weights.
        start = None if resume or init_from is None else init_from / f"fold_{fold}" / "checkpoint_final.pth"
        action = "resuming" if resume else f"fine-tuning from {start}" if start else "training"
        print(f"[fold {fold}] ({n}/{len(folds)}) {action} {trainer} on {device}", file=log, flush=True)
        with _env(**({PRECISION_VARIABLE: precision} if precision else {})):
            run_training(dataset, CONFIGURATION, fold, trainer, chosen.plans,
                         pretrained_weights=str(start) if start else None, continue_training=resume,
                         device=torch.device(device))
    return out
