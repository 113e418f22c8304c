"""The model package contract (DESIGN.md): one folder holding the nnU-Net trained-model folder and
a `model.json` card. The training workspace writes it (training/export.py); the app loads any such
folder. `load_model_package` checks that the card and the folder agree before anything runs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from renalnode.labels import LABEL_NAMES
from renalnode.postprocessing_rules import PostprocessingRules

CARD = "model.json"
NNUNET_DIR = "nnunet"
FORMAT = "renalnode-model/1"
CHECKPOINT = "checkpoint_final.pth"
EXPECTED_LABELS = {str(value): name for value, name in LABEL_NAMES.items()}


class ModelPackageError(ValueError):
    pass


@dataclass(frozen=True)
class ModelPackage:
    path: Path
    card: dict

    @property
    def nnunet_dir(self) -> Path:
        return self.path / NNUNET_DIR

    @property
    def folds(self) -> list[int]:
        return list(self.card["folds"])

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def version(self) -> str:
        return self.card["version"]

    @property
    def postprocessing(self) -> PostprocessingRules:
        """The rules the model's cross-validation kept (none for a package that names none)."""
        return PostprocessingRules.from_dict(self.card.get("postprocessing"))


def folds_with_checkpoint(model_dir: Path) -> list[int]:
    """Folds of an nnU-Net trained-model folder that hold a final checkpoint."""
    return sorted(int(p.parent.name.split("_")[1]) for p in Path(model_dir).glob(f"fold_*/{CHECKPOINT}"))


def load_model_package(path: Path) -> ModelPackage:
    path = Path(path)
    card_path = path / CARD
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelPackageError(f"{path} is not a model package: {CARD} is missing") from None
    except ValueError as exc:
        raise ModelPackageError(f"{card_path} is not valid JSON: {exc}") from None
    missing = [k for k in ("format", "name", "version", "labels", "folds", "plans", "trainer", "configuration")
               if k not in card]
    if missing:
        raise ModelPackageError(f"{card_path} lacks {missing}")
    if card["format"] != FORMAT:
        raise ModelPackageError(f"{card_path}: format {card['format']!r} is not {FORMAT!r}")
    if card["labels"] != EXPECTED_LABELS:
        raise ModelPackageError(f"{card_path}: labels {card['labels']} differ from the contract {EXPECTED_LABELS}")
    nnunet = path / NNUNET_DIR
    for name in ("plans.json", "dataset.json"):
        if not (nnunet / name).is_file():
            raise ModelPackageError(f"{path}: {NNUNET_DIR}/{name} is missing")
    plans = json.loads((nnunet / "plans.json").read_text())
    if plans.get("plans_name") != card["plans"]:
        raise ModelPackageError(f"{path}: plans.json is {plans.get('plans_name')!r}, the card says {card['plans']!r}")
    dataset_labels = json.loads((nnunet / "dataset.json").read_text()).get("labels", {})
    if {str(v): k for k, v in dataset_labels.items()} != EXPECTED_LABELS:
        raise ModelPackageError(f"{path}: dataset.json labels {dataset_labels} differ from the contract")
    try:
        PostprocessingRules.from_dict(card.get("postprocessing"))
    except (TypeError, ValueError) as exc:
        raise ModelPackageError(f"{card_path}: postprocessing: {exc}") from None
    on_disk = folds_with_checkpoint(nnunet)
    if not card["folds"] or on_disk != sorted(card["folds"]):
        raise ModelPackageError(f"{path}: the card lists folds {card['folds']}, the folder holds {on_disk}")
    return ModelPackage(path, card)


def find_model_package(path: Path) -> Path:
    """The package at `path`, or the single package inside it (a MAP's models folder holds one)."""
    path = Path(path)
    if (path / CARD).is_file():
        return path
    inside = sorted(p.parent for p in path.glob(f"*/{CARD}"))
    if len(inside) == 1:
        return inside[0]
    if not inside:
        raise ModelPackageError(f"no model package ({CARD}) at {path} or in its subfolders")
    raise ModelPackageError(f"{path} holds {len(inside)} model packages ({', '.join(p.name for p in inside)}): "
                            "name one")
