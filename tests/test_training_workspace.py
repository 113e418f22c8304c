"""The training workspace's environment: nnU-Net's folders, and trainers found by name."""
from __future__ import annotations

import os

import pytest
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from renalnode.nnunet_trainers import TRAINERS_DIR
from training.workspace import Workspace

SITE_TRAINER = '''
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerSiteOwn(nnUNetTrainer):
    pass
'''


@pytest.fixture
def clean_nnunet_environment(monkeypatch):
    """activate() writes os.environ; monkeypatch puts each variable back when the test ends."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        monkeypatch.delenv(name, raising=False)


def test_activate_keeps_a_users_trainer_folders(tmp_path, monkeypatch, clean_nnunet_environment):
    site_trainers = tmp_path / "site_trainers"
    site_trainers.mkdir()
    (site_trainers / "site_trainers.py").write_text(SITE_TRAINER)
    monkeypatch.setenv("nnUNet_extTrainer", str(site_trainers))

    Workspace(tmp_path / "ws").activate()
    Workspace(tmp_path / "ws").activate()  # twice, as a CLI run and its pipeline may: no folder named twice

    assert os.environ["nnUNet_extTrainer"].split(os.pathsep) == [str(site_trainers), str(TRAINERS_DIR)]
    assert recursive_find_trainer_class_by_name("nnUNetTrainerSiteOwn").__name__ == "nnUNetTrainerSiteOwn"
    assert recursive_find_trainer_class_by_name("nnUNetTrainerRenalTiny").__name__ == "nnUNetTrainerRenalTiny"
    assert os.environ["nnUNet_results"] == str((tmp_path / "ws" / "nnUNet_results").resolve())


def test_activate_without_user_folders_names_renalnodes_alone(tmp_path, clean_nnunet_environment):
    Workspace(tmp_path / "ws").activate()
    assert os.environ["nnUNet_extTrainer"] == str(TRAINERS_DIR)
