"""Short nnU-Net trainers for the tiny profile, found by nnU-Net through `nnUNet_extTrainer`.

They change only the schedule; loss, augmentation and validation are nnU-Net's own. Checkpoints
are written often so that an interrupted run resumes close to where it stopped.
"""
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class _ShortSchedule(nnUNetTrainer):
    # (epochs, training iterations per epoch, validation iterations per epoch, checkpoint every N epochs)
    schedule = (1000, 250, 50, 50)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        (self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch,
         self.save_every) = self.schedule


class nnUNetTrainerRenalTiny(_ShortSchedule):
    """The bundled demo model's schedule: 5-fold training on a 2-core CPU in about an hour.

    Every patch is centred on foreground (nnU-Net's default forces it for a third of each batch):
    with this few iterations the small lesion classes would otherwise hardly be seen.
    """
    schedule = (70, 25, 4, 5)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.oversample_foreground_percent = 1.0


class nnUNetTrainerRenalSmoke(_ShortSchedule):
    """A few iterations: proves the pipeline end to end in tests, learns next to nothing."""
    schedule = (2, 2, 1, 1)
