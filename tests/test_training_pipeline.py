"""The training workspace end to end on CPU: import, plan, preprocess (with nnU-Net's integrity
check), train one fold for a few iterations, resume, validate, evaluate with a held-out test case,
export the model package and segment a volume with it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import run_renalnode

from renalnode.ensemble import EnsemblePredictor, InferenceSettings
from renalnode.model_package import ModelPackageError, load_model_package
from training.workspace import Workspace

SMOKE = ("--profile", "tiny", "--trainer", "nnUNetTrainerRenalSmoke")


@pytest.fixture(scope="module")
def trained(phantom_set, tmp_path_factory):
    ws = tmp_path_factory.mktemp("workspace")
    common = ("--workspace", str(ws), "--dataset", "42")
    run_renalnode("train", "import", *common, "--source", "phantom", "--input", str(phantom_set), "--name", "Smoke",
                  "--test-cases", sorted(p.name for p in phantom_set.iterdir())[-1])
    first = run_renalnode("train", "run", *common, *SMOKE, "--folds", "0")
    return ws, common, first


def test_training_runs_every_nnunet_step(trained):
    ws, _, first = trained
    for step in ("checking data set integrity", "planning", "preprocessing 5 cases", "[fold 0] (1/1) training"):
        assert step in first.stderr
    preprocessed = ws / "nnUNet_preprocessed" / "Dataset042_Smoke"
    plans = json.loads((preprocessed / "nnUNetPlansRenalTiny.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert arch["features_per_stage"] == [16, 32, 64, 128]
    assert (preprocessed / "nnUNetPlans.json").exists()  # nnU-Net's own plan stays beside the tiny one
    fold = ws / "nnUNet_results" / "Dataset042_Smoke" / "nnUNetTrainerRenalSmoke__nnUNetPlansRenalTiny__3d_fullres" / \
        "fold_0"
    assert (fold / "checkpoint_final.pth").exists()
    assert len(list((fold / "validation").glob("*.nii.gz"))) == 1  # 5 training cases: one validates fold 0


def test_rerun_keeps_finished_folds_and_resumes_interrupted_ones(trained):
    ws, common, _ = trained
    again = run_renalnode("train", "run", *common, *SMOKE, "--folds", "0")
    assert "[fold 0] (1/1) already trained, kept" in again.stderr
    # An interrupted fold holds only its latest checkpoint: the next run resumes from it.
    fold = next((ws / "nnUNet_results").glob("*/*/fold_0"))
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_latest.pth")
    resumed = run_renalnode("train", "run", *common, *SMOKE, "--folds", "0")
    assert "[fold 0] (1/1) resuming" in resumed.stderr
    assert (fold / "checkpoint_final.pth").exists()


def test_evaluate_export_and_predict(trained, phantom_set, tmp_path):
    ws, common, _ = trained
    shifted = tmp_path / "shifted"
    run_renalnode("phantom", "--out", str(shifted), "--cases", "1", "--seed", "31", "--small", "--position", "FFP",
                  "--slice-thickness", "6", "--noise-hu", "50")
    (tmp_path / "empty").mkdir()
    missing = run_renalnode("train", "evaluate", *common, *SMOKE, "--shifted", str(tmp_path / "empty"), check=False)
    assert missing.returncode != 0 and "holds no cases" in missing.stderr
    result = run_renalnode("train", "evaluate", *common, *SMOKE, "--shifted", str(shifted), "--input-antialiasing")
    assert "| Class type | Accuracy (%) | Precision (%) | Recall (%) | F1-score (%) | Dice (%) |" in result.stdout
    assert "Held-out test split (ensemble of the folds, probabilities averaged): 1 cases" in result.stdout
    assert "Shifted test set (acquisition outside the training ranges; ensemble of the folds): 1 cases" in result.stdout
    assert "slices 6-6 mm, noise 50-50 HU, positions FFP" in result.stdout
    assert "the network's own argmax) and with the decision offsets and post-processing rules:" in result.stdout
    assert "| Lesions | Size | Count | Detected | Sensitivity (%) | False positives | FP per case |" in result.stdout
    assert "### Post-processing chosen on the cross-validation" in result.stdout
    assert "### Decision offsets chosen on the cross-validation" in result.stdout
    folder = next((ws / "nnUNet_results").glob("*/*/evaluation.json")).parent
    report = json.loads((folder / "evaluation.json").read_text())
    assert report["folds_evaluated"] == [0]
    assert report["cross_validation"]["cases"] == 1 and report["test"]["cases"] == 1 and report["shifted"]["cases"] == 1
    assert all(report[key]["mirroring"] is True for key in ("cross_validation", "test", "shifted"))
    assert result.stdout.count("Predicted with test-time mirroring, as the app predicts by default.") == 3
    assert report["input_antialiasing"] is True
    assert all(report[key]["input_antialiasing"] is True for key in ("cross_validation", "test", "shifted"))
    assert result.stdout.count("Input anti-aliasing (`--input-antialiasing`") == 3
    assert {t["rule"] for t in report["postprocessing"]["trials"]} == {
        "kidney_largest_per_side", "cyst_in_mass_border_share", "lesion_max_distance_mm", "min_solid_mass_ml",
        "min_cyst_ml"}
    for key in ("cross_validation", "test", "shifted"):
        summary, raw = report[key], report[f"{key}_without_postprocessing"]
        for name in ("kidney", "solid_mass", "cyst"):
            m = summary["per_class"][name]
            assert m["tp"] + m["fp"] + m["fn"] + m["tn"] > 0
            assert 0 <= m["accuracy"] <= 1
            assert m["tp"] + m["fn"] == raw["per_class"][name]["tp"] + raw["per_class"][name]["fn"]  # same truth
        assert set(summary["lesion_detection_by_size"]["any_lesion"]) == {"< 1 cm", "1-2 cm", "2-4 cm", "> 4 cm",
                                                                         ">= 1 cm"}
        assert set(summary["volume_error"]) == {"kidney", "solid_mass", "cyst"}
    # The shifted case is predicted on its own (feet-first prone) grid.
    shifted_case = next(p for p in shifted.iterdir() if not p.name.startswith("."))
    predicted = sitk.ReadImage(str(folder / "predictions_shifted" / f"{shifted_case.name}.nii.gz"))
    assert predicted.GetDirection() == sitk.ReadImage(str(shifted_case / "image.nii.gz")).GetDirection()

    # A rerun (after a crash) keeps what the same weights and settings predicted and predicts only
    # what is missing; the figures are the same, here evaluated in this process (the first run used
    # worker processes).
    (folder / "predictions_shifted" / f"{shifted_case.name}.nii.gz").unlink()
    again = run_renalnode("train", "evaluate", *common, *SMOKE, "--shifted", str(shifted), "--input-antialiasing",
                          "--workers", "1")
    assert again.stderr.count(": predicted") == 1 and f"{shifted_case.name}: predicted" in again.stderr
    assert again.stderr.count(": kept from an earlier run") == 2  # the cross-validation case and the test case
    assert json.loads((folder / "evaluation.json").read_text()) == report

    package = tmp_path / "package"
    run_renalnode("train", "export", *common, *SMOKE, "--out", str(package), "--name", "smoke", "--version", "0.0.1")
    loaded = load_model_package(package)
    assert loaded.folds == [0] and loaded.card["trainer"] == "nnUNetTrainerRenalSmoke"
    assert loaded.card["training_data"]["training_cases"] == 5 and loaded.card["training_data"]["test_cases"] == 1
    assert loaded.postprocessing.as_dict() == report["postprocessing"]["rules"]
    # Every candidate offset was tried on the cross-validation and its labels kept beside the model;
    # the card carries the kept ones.
    offset_trials = report["decision_offsets"]["trials"]
    assert len(offset_trials) == 25 and sum(t["chosen"] for t in offset_trials) == 1
    assert loaded.decision_offsets == report["decision_offsets"]["offsets"] == next(
        t["offsets"] for t in offset_trials if t["chosen"])
    assert len(list((folder / "predictions_cross_validation" / "offsets").glob("*/*.nii.gz"))) == 25
    assert loaded.card["cross_validation"]["mirroring"] is True and loaded.card["test"]["mirroring"] is True
    assert loaded.input_antialiasing is True
    shifted = loaded.card["shifted_test"]
    assert shifted["cases"] == 1 and shifted["acquisition"]["slice_mm"] == [6, 6]
    curve = loaded.card["learning_curve"]["0"]
    assert [point["epoch"] for point in curve] == [1, 2]  # the smoke trainer's two epochs
    assert all(point["train_loss"] == point["train_loss"] for point in curve)  # numbers, not NaN
    assert (package / "learning_curve_fold_0.png").is_file()

    # The rules were chosen on the cross-validation predictions the app itself would make: fold 0's
    # network on its validation case, mirrored, anti-aliased, under the kept offsets, from the
    # exported package.
    splits = json.loads((package / "nnunet" / "splits_final.json").read_text())
    [validation_case] = splits[0]["val"]
    predicted = sitk.ReadImage(str(folder / "predictions_cross_validation" / f"{validation_case}.nii.gz"))
    ct = sitk.ReadImage(str(ws / "nnUNet_raw" / "Dataset042_Smoke" / "imagesTr" / f"{validation_case}_0000.nii.gz"),
                        sitk.sitkFloat32)
    assert predicted.GetSize() == ct.GetSize()
    app = EnsemblePredictor(loaded.nnunet_dir, [0], InferenceSettings(), input_antialiasing=loaded.input_antialiasing)
    assert loaded.card["input"]["spacing_mm_zyx"] == app.target_spacing_zyx
    app_labels = app.segment_image(ct, loaded.network_offsets)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(predicted), app_labels)

    case = sorted(p for p in phantom_set.iterdir())[0]
    image = sitk.DICOMOrient(sitk.ReadImage(str(case / "image.nii.gz")), "LPS")
    labels = EnsemblePredictor(loaded.nnunet_dir, loaded.folds, InferenceSettings(use_mirroring=False)).segment(
        sitk.GetArrayFromImage(image).astype(np.float32), image.GetSpacing()[::-1])
    assert labels.shape == sitk.GetArrayFromImage(image).shape
    assert set(np.unique(labels)) <= {0, 1, 2, 3}

    # Other settings make other predictions: nothing is kept, and each folder records what made it.
    unmirrored = run_renalnode("train", "evaluate", *common, *SMOKE, "--no-mirroring", "--no-test")
    assert "kept from an earlier run" not in unmirrored.stderr
    assert unmirrored.stderr.count(f"{validation_case}: predicted") == 1
    written_by = json.loads((folder / "predictions_cross_validation" / "offsets" / "solid_mass+0.0_cyst+0.0" /
                             "prediction_settings.json").read_text())
    assert written_by["mirroring"] is False and written_by["input_antialiasing"] is False
    assert written_by["checkpoints"].keys() == {"0"} and written_by["offsets"] is None

    # A package whose card and folder disagree is refused.
    (package / "nnunet" / "fold_0" / "checkpoint_final.pth").unlink()
    with pytest.raises(ModelPackageError, match="the card lists folds"):
        load_model_package(package)


def test_bad_train_arguments(tmp_path):
    result = run_renalnode("train", "run", "--workspace", str(tmp_path), "--dataset", "5", "--profile", "tiny",
                           check=False)
    assert result.returncode == 2 and "no data set with id 5" in result.stderr
    result = run_renalnode("train", "run", "--workspace", str(tmp_path), "--dataset", "5", "--folds", "0,7",
                           check=False)
    assert result.returncode == 2 and "folds must be among" in result.stderr
    result = run_renalnode("train", "run", "--workspace", str(tmp_path), "--dataset", "5", "--precision", "float16",
                           check=False)
    assert result.returncode == 2 and "invalid choice: 'float16'" in result.stderr


@pytest.mark.parametrize("precision, network_dtype", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_a_cpu_trains_in_the_precision_asked_with_weights_and_loss_in_float32(trained, monkeypatch, precision,
                                                                               network_dtype):
    from renalnode.nnunet_trainers.renalnode_trainers import PRECISION_VARIABLE, nnUNetTrainerRenalSmoke

    ws, _, _ = trained
    Workspace(ws).activate()
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    preprocessed = ws / "nnUNet_preprocessed" / "Dataset042_Smoke"
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())

    def plans():  # nnU-Net's trainer takes the resume flag out of the plans it is given
        return {**json.loads((preprocessed / "nnUNetPlansRenalTiny.json").read_text()), "continue_training": False}
    monkeypatch.setenv(PRECISION_VARIABLE, precision)
    trainer = nnUNetTrainerRenalSmoke(plans(), "3d_fullres", 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    batch = next(trainer.get_dataloaders()[0])
    seen = {}
    trainer.network.register_forward_hook(lambda module, inputs, output: seen.update(network=output[0].dtype))
    trainer.loss.loss.register_forward_pre_hook(lambda module, inputs: seen.update(loss=inputs[0][0].dtype))
    before = next(trainer.network.parameters()).detach().clone()
    result = trainer.train_step(batch)
    assert seen == {"network": network_dtype, "loss": torch.float32}
    after = next(trainer.network.parameters())
    assert after.dtype == torch.float32 and not torch.equal(before, after)  # a float32 step was taken
    assert np.isfinite(result["loss"])

    monkeypatch.setenv(PRECISION_VARIABLE, "float16")
    with pytest.raises(ValueError, match="RENALNODE_PRECISION 'float16' is not one of auto, float32, bfloat16"):
        nnUNetTrainerRenalSmoke(plans(), "3d_fullres", 0, dataset_json, torch.device("cpu"))


def test_fine_tuning_starts_from_an_earlier_model_with_its_plans_and_folds(trained, phantom_set, tmp_path):
    ws, _, _ = trained
    source = ws / "nnUNet_results" / "Dataset042_Smoke" / "nnUNetTrainerRenalSmoke__nnUNetPlansRenalTiny__3d_fullres"
    # The new data set: the earlier cases and one it never saw.
    cases = tmp_path / "cases"
    cases.mkdir()
    for case in phantom_set.iterdir():
        (cases / case.name).symlink_to(case)
    run_renalnode("phantom", "--out", str(cases), "--cases", "1", "--seed", "22", "--small")
    common = ("--workspace", str(ws), "--dataset", "43")
    held_out = sorted(p.name for p in phantom_set.iterdir())[-1]
    run_renalnode("train", "import", *common, "--source", "phantom", "--input", str(cases), "--name", "More",
                  "--test-cases", held_out)

    missing = run_renalnode("train", "run", *common, *SMOKE, "--folds", "0", "--init-from", str(tmp_path), check=False)
    assert missing.returncode == 2 and "is not a trained model" in missing.stderr

    tuned = run_renalnode("train", "run", *common, *SMOKE, "--folds", "0", "--init-from", str(source))
    assert f"fine-tuning from {source / 'fold_0' / 'checkpoint_final.pth'}" in tuned.stderr
    preprocessed = ws / "nnUNet_preprocessed"
    old_plans = json.loads((preprocessed / "Dataset042_Smoke" / "nnUNetPlansRenalTiny.json").read_text())
    new_plans = json.loads((preprocessed / "Dataset043_More" / "nnUNetPlansRenalTiny.json").read_text())
    assert new_plans["dataset_name"] == "Dataset043_More"
    for key in ("spacing", "patch_size", "normalization_schemes", "architecture"):
        assert new_plans["configurations"]["3d_fullres"][key] == old_plans["configurations"]["3d_fullres"][key]

    old_splits = json.loads((preprocessed / "Dataset042_Smoke" / "splits_final.json").read_text())
    new_splits = json.loads((preprocessed / "Dataset043_More" / "splits_final.json").read_text())
    for old, new in zip(old_splits, new_splits):
        assert set(old["val"]) <= set(new["val"]) and not set(new["val"]) & set(new["train"])
    assert sum(["phantom_s22_000" in split["val"] for split in new_splits]) == 1  # the new case validates once

    def first_conv(folder):
        weights = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                             weights_only=False)["network_weights"]
        return next(v for k, v in weights.items() if k.endswith("conv.weight")).float()
    before = first_conv(source)
    after = first_conv(ws / "nnUNet_results" / "Dataset043_More" /
                       "nnUNetTrainerRenalSmoke__nnUNetPlansRenalTiny__3d_fullres")
    # Four small steps from the earlier weights: a network drawn afresh would differ by more than they weigh.
    assert (after - before).abs().mean() < 0.2 * before.abs().mean()

    again = run_renalnode("train", "run", *common, *SMOKE, "--folds", "0", "--init-from", str(source))
    assert "[fold 0] (1/1) already trained, kept" in again.stderr
