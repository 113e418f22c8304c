"""`renalnode train run`: nnU-Net's own fingerprint (with the data set integrity check), planning,
preprocessing and training, fold by fold, resuming what an interrupted run left.

Each step is skipped when its output is already there, so running the same command again after a
crash or a Ctrl-C goes on where it stopped: a fold with a final checkpoint is done, a fold with a
latest checkpoint resumes from it. A fold whose final checkpoint has fewer epochs than its trainer's
schedule (the schedule was raised) goes on from it, with the learning rate of the longer schedule at
that epoch.
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
          device: str | None = None, precision: str | None = None, log=sys.stderr) -> Path:
    """Train the given folds; returns the trained-model folder. `precision` (PRECISIONS) is a CPU's
    arithmetic in renalnode's trainers; by default theirs (`auto`, or RENALNODE_PRECISION)."""
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
        print(f"[fold {fold}] ({n}/{len(folds)}) {'resuming' if resume else 'training'} {trainer} on {device}",
              file=log, flush=True)
        with _env(**({PRECISION_VARIABLE: precision} if precision else {})):
            run_training(dataset, CONFIGURATION, fold, trainer, chosen.plans, continue_training=resume,
                         device=torch.device(device))
    return out
