"""Model packages with their own label layout: `model.json` maps the network's values to catalogue
classes, the package check refuses a mapping it cannot trust, and a model whose outputs come in
another order gives the same SEG (codes, colours, voxels) as the bundled one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from app.app import AppSettings, run_study
from renalnode.ensemble import InferenceSettings
from renalnode.labels import CLASS_OF_KEY
from renalnode.model_package import ModelPackageError, load_model_package

DEMO = Path(__file__).resolve().parents[1] / "models" / "renalnode-demo"
FAST = AppSettings(inference=InferenceSettings(use_mirroring=False))
# The network's outputs in another order: background, cyst, kidney, solid mass (was 0, 1, 2, 3).
REORDERED = ("background", "cyst", "kidney", "solid_mass")


# Both packages of the comparison carry it, so the app must give each network output its class's offset.
CYST_OFFSET = {"cyst": 1.5}


def _with_offsets(package: Path) -> Path:
    card = json.loads((package / "model.json").read_text())
    card["decision_offsets"] = CYST_OFFSET
    (package / "model.json").write_text(json.dumps(card))
    return package


def _reordered_package(tmp_path: Path) -> Path:
    """The demo model with its output channels permuted, its dataset.json and card saying so."""
    package = tmp_path / "reordered"
    shutil.copytree(DEMO, package)
    old_index = {key: int(value) for value, key in load_model_package(DEMO).card["labels"].items()}
    order = [old_index[key] for key in REORDERED]
    checkpoint_path = package / "nnunet" / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    weights = checkpoint["network_weights"]
    permuted = [k for k in weights if ".seg_layers." in k]
    assert permuted, "no segmentation head found in the checkpoint"
    for key in permuted:
        weights[key] = weights[key][order].clone()
    torch.save(checkpoint, checkpoint_path)
    dataset = json.loads((package / "nnunet" / "dataset.json").read_text())
    dataset["labels"] = {("tumor" if key == "solid_mass" else key): value for value, key in enumerate(REORDERED)}
    (package / "nnunet" / "dataset.json").write_text(json.dumps(dataset))
    card = json.loads((package / "model.json").read_text())
    card["labels"] = {str(value): key for value, key in enumerate(REORDERED)}
    (package / "model.json").write_text(json.dumps(card))
    return package


def _weightless_copy(folder: Path, **card_changes) -> Path:
    """The demo package at `folder` without its weights (enough for the package check), its card
    changed as given."""
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("*.pth"))
    (folder / "nnunet" / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    card = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**card, **card_changes}))
    return folder


def _segments(seg_path: Path) -> tuple[list[tuple], np.ndarray]:
    ds = pydicom.dcmread(seg_path)
    described = [(s.SegmentLabel, s.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
                  s.SegmentedPropertyTypeCodeSequence[0].CodeValue, tuple(s.RecommendedDisplayCIELabValue))
                 for s in ds.SegmentSequence]
    return described, ds.pixel_array


def test_reordered_model_gives_the_same_seg_codes_colours_and_voxels(phantom_cases, tmp_path):
    study = phantom_cases("HFS") / "dicom"
    shutil.copytree(DEMO, tmp_path / "demo")
    bundled = run_study(study, tmp_path / "bundled", _with_offsets(tmp_path / "demo"), FAST)
    reordered = run_study(study, tmp_path / "reordered-out", _with_offsets(_reordered_package(tmp_path)), FAST)
    assert bundled.status == reordered.status == "completed"
    assert bundled.model["decision_offsets"] == reordered.model["decision_offsets"] == CYST_OFFSET
    expected, expected_pixels = _segments(tmp_path / "bundled" / bundled.outputs["SEG"]["file"])
    found, pixels = _segments(tmp_path / "reordered-out" / reordered.outputs["SEG"]["file"])
    assert any(label.endswith("kidney") for label, *_ in expected)
    assert found == expected
    np.testing.assert_array_equal(pixels, expected_pixels)
    assert reordered.findings == bundled.findings


def test_mapping_translates_values_and_keeps_identity_cheap(tmp_path):
    package = load_model_package(_reordered_package(tmp_path))
    network = np.array([0, 1, 2, 3, 2], np.uint8)
    expected = [0] + [CLASS_OF_KEY[k].value for k in REORDERED[1:]] + [CLASS_OF_KEY["kidney"].value]
    assert package.to_catalogue(network).tolist() == expected
    bundled = load_model_package(DEMO)
    assert bundled.to_catalogue(network) is network


def test_several_values_may_name_one_class_and_others_background(tmp_path):
    """A TotalSegmentator-style layout: left and right kidney, and an organ renalnode does not report."""
    layout = {"0": "background", "1": "kidney", "2": "kidney", "3": "background", "4": "solid_mass", "5": "cyst"}
    package = _weightless_copy(tmp_path / "sides", labels=layout)
    card = json.loads((package / "model.json").read_text())
    dataset = json.loads((package / "nnunet" / "dataset.json").read_text())
    dataset["labels"] = {"background": 0, "kidney_right": 1, "kidney_left": 2, "liver": 3, "tumor": 4, "cyst": 5}
    (package / "nnunet" / "dataset.json").write_text(json.dumps(dataset))
    loaded = load_model_package(package)
    assert loaded.to_catalogue(np.arange(6, dtype=np.uint8)).tolist() == [0, 1, 1, 0, 2, 3]
    # Decision offsets name catalogue classes: every network value of that class gets its offset.
    card["decision_offsets"] = {"kidney": -0.5, "cyst": 1.5, "solid_mass": 0.0}
    (package / "model.json").write_text(json.dumps(card))
    assert load_model_package(package).network_offsets == [0.0, -0.5, -0.5, 0.0, 0.0, 1.5]
    card["decision_offsets"] = {"cyst": 0}
    (package / "model.json").write_text(json.dumps(card))
    assert load_model_package(package).network_offsets is None  # the network's own argmax


@pytest.mark.parametrize("offsets, message", [
    ({"tumour": 1.0}, "decision_offsets names 'tumour'"),
    ({"background": 1.0}, "decision_offsets names 'background'"),
    ({"cyst": "1"}, "must be a finite number"),
    ({"cyst": float("nan")}, "must be a finite number"),
    ({"cyst": True}, "must be a finite number"),
    ([1.0], "must map catalogue classes to numbers"),
])
def test_package_refuses_decision_offsets_it_cannot_apply(tmp_path, offsets, message):
    package = _weightless_copy(tmp_path / "bad-offsets", decision_offsets=offsets)
    with pytest.raises(ModelPackageError, match=message):
        load_model_package(package)


@pytest.mark.parametrize("labels, dataset_values, message", [
    ({"0": "background", "1": "kidney", "2": "solid_mass", "3": "tumour"}, None, "the catalogue has"),
    ({"0": "background", "1": "kidney", "2": "solid_mass"}, [0, 1, 2], "no value for ['cyst']"),
    ({"0": "kidney", "1": "background", "2": "solid_mass", "3": "cyst"}, None, "label 0 must be background"),
    ({"0": "background", "one": "kidney", "2": "solid_mass", "3": "cyst"}, None, "must map the network's values"),
    ({"0": "background", "1": "kidney", "2": "solid_mass", "4": "cyst"}, None, "are not the card's"),
])
def test_package_refuses_mappings_it_cannot_trust(tmp_path, labels, dataset_values, message):
    package = _weightless_copy(tmp_path / "bad", labels=labels)
    if dataset_values is not None:
        dataset = json.loads((package / "nnunet" / "dataset.json").read_text())
        dataset["labels"] = {f"class{v}" if v else "background": v for v in dataset_values}
        (package / "nnunet" / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(ModelPackageError) as raised:
        load_model_package(package)
    assert message in str(raised.value)
