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
    makefile = (ROOT / "Makefile").read_text()
    assert f"DEMO_FOLDS := {','.join(map(str, package.folds))}\n" in makefile  # made by make demo-model
    assert package.input_antialiasing is ("--input-antialiasing" in makefile)
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
    assert size < 60 * 2 ** 20
    assert "phantom" in card["description"].lower() and "not for clinical use" in card["description"].lower()
    cv = card["cross_validation"]
    # One fold validates a fifth of the training cases; all five folds validate every one.
    assert cv["cases"] == sum(len(fold_cases) for fold_cases in _validation_cases(package))
    assert set(cv["per_class"]) == {"kidney", "solid_mass", "cyst"}
    # Lesion-level figures, the rules the app applies, the shifted set and the learning curve.
    assert card["test"]["lesion_detection_by_size"]["any_lesion"][">= 1 cm"]["lesions"] > 0
    # The rules the card names are the ones applied (a rule newer than the card is off).
    applied = package.postprocessing.as_dict()
    assert card["postprocessing"] and all(applied[rule] == value for rule, value in card["postprocessing"].items())
    shifted = card["shifted_test"]
    assert shifted["cases"] > 0 and shifted["acquisition"]["slice_mm"][1] < 1.5  # thinner than any training case
    for fold in package.folds:
        curve = card["learning_curve"][str(fold)]
        assert curve[-1]["epoch"] == checkpoint_epochs(package, fold)
        assert curve[-1]["ema_pseudo_dice"] > curve[0]["ema_pseudo_dice"]
        assert (DEMO / f"learning_curve_fold_{fold}.png").is_file()


def _validation_cases(package):
    splits = json.loads((package.nnunet_dir / "splits_final.json").read_text())
    return [splits[fold]["val"] for fold in package.folds]


def checkpoint_epochs(package, fold) -> int:
    checkpoint = torch.load(package.nnunet_dir / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    return checkpoint["current_epoch"]


def test_readme_shows_the_demo_models_evaluation():
    card = load_model_package(DEMO).card
    readme = (ROOT / "README.md").read_text()
    for key in ("cross_validation", "test", "shifted_test"):
        kidney = card[key]["per_class"]["kidney"]
        row = (f"| Kidney | {100 * kidney['accuracy']:.2f} | {100 * kidney['precision']:.2f} | "
               f"{100 * kidney['recall']:.2f} |")
        assert row in readme, key
