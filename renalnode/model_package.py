"""The model package contract (docs/architecture.md): one folder holding the nnU-Net trained-model folder and
a `model.json` card. The training workspace writes it (training/export.py); the app loads any such
folder. `load_model_package` checks that the card and the folder agree before anything runs.

The card's `labels` give the catalogue key (renalnode/labels.py) of each value the network
outputs, so a model trained with another label layout (KiTS-style, TotalSegmentator-style) is
packaged without retraining: several values may name one class (left and right kidney), values of
other structures name "background", and every catalogue class must be named, since a report must
not say "no lesion" from a model that cannot see one."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from renalnode.labels import BACKGROUND, BACKGROUND_KEY, CATALOGUE, LABEL_NAMES
from renalnode.postprocessing_rules import PostprocessingRules

CARD = "model.json"
NNUNET_DIR = "nnunet"
FORMAT = "renalnode-model/1"
CHECKPOINT = "checkpoint_final.pth"
VALUE_OF_KEY = {key: value for value, key in LABEL_NAMES.items()}


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

    @cached_property
    def _catalogue_value_of(self) -> np.ndarray:
        lookup = np.full(max(int(v) for v in self.card["labels"]) + 1, BACKGROUND, np.uint8)
        for value, key in self.card["labels"].items():
            lookup[int(value)] = VALUE_OF_KEY[key]
        return lookup

    def to_catalogue(self, label: np.ndarray) -> np.ndarray:
        """The network's label map with renalnode's label values (the same array when they agree)."""
        lookup = self._catalogue_value_of
        if np.array_equal(lookup, np.arange(len(lookup))):
            return label
        return lookup[label]

    @property
    def decision_offsets(self) -> dict[str, float]:
        """Log-probability offsets per catalogue class, added before the argmax, that the model's
        cross-validation chose (none for a package that names none)."""
        return dict(self.card.get("decision_offsets") or {})

    @property
    def network_offsets(self) -> list[float] | None:
        """`decision_offsets` per network output (every value naming a class gets its offset), as
        EnsemblePredictor takes them; None when they are all zero."""
        offsets = self.decision_offsets
        if not any(offsets.values()):
            return None
        values = sorted(int(v) for v in self.card["labels"])
        return [offsets.get(self.card["labels"][str(v)], 0.0) for v in values]

    @property
    def input_antialiasing(self) -> bool:
        """Whether a CT finer than the model's spacing is low-passed before it is resampled to it
        (EnsemblePredictor's `input_antialiasing`), as the model was evaluated; False for a package
        that does not say."""
        return bool(self.card.get("input_antialiasing", False))

    @property
    def postprocessing(self) -> PostprocessingRules:
        """The rules the model's cross-validation kept (none for a package that names none)."""
        return PostprocessingRules.from_dict(self.card.get("postprocessing"))


def _check_labels(labels, card_path: Path) -> None:
    if not isinstance(labels, dict) or not all(isinstance(v, str) and v.isdigit() and int(v) < 256 for v in labels):
        raise ModelPackageError(f"{card_path}: labels must map the network's values (0-255, as strings) to "
                                f"catalogue keys, not {labels!r}")
    unknown = sorted(set(labels.values()) - set(VALUE_OF_KEY))
    if unknown:
        raise ModelPackageError(f"{card_path}: labels name {unknown}; the catalogue has {sorted(VALUE_OF_KEY)}")
    missing = [c.key for c in CATALOGUE if c.key not in labels.values()]
    if missing:
        raise ModelPackageError(f"{card_path}: labels name no value for {missing}")
    if labels.get("0", BACKGROUND_KEY) != BACKGROUND_KEY:
        raise ModelPackageError(f"{card_path}: label 0 must be background, as nnU-Net requires")


def _check_decision_offsets(offsets, card_path: Path) -> None:
    if offsets is None:
        return
    if not isinstance(offsets, dict):
        raise ModelPackageError(f"{card_path}: decision_offsets must map catalogue classes to numbers, not {offsets!r}")
    for key, value in offsets.items():
        if key not in VALUE_OF_KEY or key == BACKGROUND_KEY:
            raise ModelPackageError(f"{card_path}: decision_offsets names {key!r}; the catalogue's classes are "
                                    f"{[c.key for c in CATALOGUE]}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ModelPackageError(f"{card_path}: decision_offsets[{key!r}] must be a finite number, not {value!r}")


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
    _check_labels(card["labels"], card_path)
    nnunet = path / NNUNET_DIR
    for name in ("plans.json", "dataset.json"):
        if not (nnunet / name).is_file():
            raise ModelPackageError(f"{path}: {NNUNET_DIR}/{name} is missing")
    plans = json.loads((nnunet / "plans.json").read_text())
    if plans.get("plans_name") != card["plans"]:
        raise ModelPackageError(f"{path}: plans.json is {plans.get('plans_name')!r}, the card says {card['plans']!r}")
    dataset_labels = json.loads((nnunet / "dataset.json").read_text()).get("labels", {})
    if any(not isinstance(v, int) for v in dataset_labels.values()):
        raise ModelPackageError(f"{path}: dataset.json has region-based labels, which renalnode does not map")
    if sorted(dataset_labels.values()) != sorted(int(v) for v in card["labels"]):
        raise ModelPackageError(f"{path}: dataset.json label values {sorted(dataset_labels.values())} are not "
                                f"the card's {sorted(int(v) for v in card['labels'])}")
    _check_decision_offsets(card.get("decision_offsets"), card_path)
    if not isinstance(card.get("input_antialiasing", False), bool):
        raise ModelPackageError(f"{card_path}: input_antialiasing must be true or false, not "
                                f"{card['input_antialiasing']!r}")
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
