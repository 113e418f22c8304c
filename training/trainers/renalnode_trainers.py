"""Short nnU-Net trainers for the tiny profile, found by nnU-Net through `nnUNet_extTrainer`.

They change only the schedule; loss, augmentation and validation are nnU-Net's own. Checkpoints
are written often so that an interrupted run resumes close to where it stopped.
"""
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerRenalTiny(nnUNetTrainer):
    """The bundled demo model's schedule: 5-fold training on a 2-core CPU in minutes."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 4
        self.save_every = 5


class nnUNetTrainerRenalSmoke(nnUNetTrainer):
    """A few iterations: proves the pipeline end to end in tests, learns next to nothing."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1
