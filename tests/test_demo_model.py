"""The bundled demo model: a valid package whose card matches its folder and the README."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from renalnode.model_package import load_model_package

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "renalnode-demo"


def test_demo_package_loads_and_card_matches_folder():
    package = load_model_package(DEMO)
    card = package.card
    assert package.folds == [0, 1, 2, 3, 4]
    assert card["profile"] == "tiny" and card["trainer"] == "nnUNetTrainerRenalTiny"
    plans = json.loads((package.nnunet_dir / "plans.json").read_text())
    assert plans["plans_name"] == card["plans"] == "nnUNetPlansRenalTiny"
    features = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"]
    for fold in package.folds:
        checkpoint = torch.load(package.nnunet_dir / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                                weights_only=False)
        assert checkpoint["trainer_name"] == card["trainer"]
        first_conv = next(v for k, v in checkpoint["network_weights"].items() if k.endswith("conv.weight"))
        assert first_conv.shape[0] == features[0]
    # Small enough to commit, and stated to be phantom-trained and not for clinical use.
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size < 15 * 2 ** 20
    assert "phantom" in card["description"].lower() and "not for clinical use" in card["description"].lower()
    cv = card["cross_validation"]
    assert cv["cases"] == card["training_data"]["training_cases"]
    assert set(cv["per_class"]) == {"kidney", "solid_mass", "cyst"}


def test_readme_shows_the_demo_models_cross_validation():
    card = load_model_package(DEMO).card
    readme = (ROOT / "README.md").read_text()
    kidney = card["cross_validation"]["per_class"]["kidney"]
    row = f"| Kidney | {100 * kidney['accuracy']:.2f} | {100 * kidney['precision']:.2f} | {100 * kidney['recall']:.2f} |"
    assert row in readme
