"""Training profiles: `full` is nnU-Net's own plan for a GPU; `tiny` shrinks that plan so the whole
pipeline (plan, preprocess, 5-fold training, validation) runs on a 2-core CPU in minutes.

The tiny plan is an edited copy of nnU-Net's plans file saved under its own plans name, so both
can live side by side in one preprocessed folder, and short trainers (renalnode/nnunet_trainers/) set the
schedule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CONFIGURATION = "3d_fullres"
DEFAULT_PLANS = "nnUNetPlans"
TINY_PLANS = "nnUNetPlansRenalTiny"
TINY_FEATURES = (16, 32, 64, 128)
TINY_PATCH = (32, 64, 64)  # upper bound per axis, in nnU-Net's (transposed) axis order
TINY_BATCH = 2


@dataclass(frozen=True)
class Profile:
    name: str
    plans: str
    trainer: str


PROFILES = {
    "full": Profile("full", DEFAULT_PLANS, "nnUNetTrainer"),
    "tiny": Profile("tiny", TINY_PLANS, "nnUNetTrainerRenalTiny"),
}


def tiny_plans(plans: dict) -> dict:
    """nnU-Net's plan for 3d_fullres with 4 stages of 16-128 features, a smaller patch and batch 2."""
    tiny = json.loads(json.dumps(plans))
    tiny["plans_name"] = TINY_PLANS
    config = tiny["configurations"][CONFIGURATION]
    kwargs = config["architecture"]["arch_kwargs"]
    n = len(TINY_FEATURES)
    if kwargs["n_stages"] < n:
        raise ValueError(f"nnU-Net planned only {kwargs['n_stages']} stages; the tiny profile needs {n}")
    kwargs["n_stages"] = n
    kwargs["features_per_stage"] = list(TINY_FEATURES)
    kwargs["kernel_sizes"] = kwargs["kernel_sizes"][:n]
    kwargs["strides"] = kwargs["strides"][:n]
    kwargs["n_conv_per_stage"] = [2] * n
    kwargs["n_conv_per_stage_decoder"] = [1] * (n - 1)
    # The patch must stay divisible by the network's total downsampling along each axis.
    divisor = [1, 1, 1]
    for stride in kwargs["strides"]:
        divisor = [d * s for d, s in zip(divisor, stride)]
    config["patch_size"] = [max(d, min(p, cap) // d * d)
                            for p, cap, d in zip(config["patch_size"], TINY_PATCH, divisor)]
    config["batch_size"] = TINY_BATCH
    # Preprocessed data is shared with the full plan: same spacing and normalisation.
    config["data_identifier"] = plans["configurations"][CONFIGURATION]["data_identifier"]
    tiny["configurations"] = {CONFIGURATION: config}
    return tiny


def write_tiny_plans(preprocessed_dataset: Path) -> Path:
    plans = json.loads((preprocessed_dataset / f"{DEFAULT_PLANS}.json").read_text())
    path = preprocessed_dataset / f"{TINY_PLANS}.json"
    path.write_text(json.dumps(tiny_plans(plans), indent=2) + "\n")
    return path
