"""Short nnU-Net trainers for the tiny profile, found by nnU-Net through `nnUNet_extTrainer`.

They change only the schedule; loss, augmentation and validation are nnU-Net's own. Checkpoints
are written often so that an interrupted run resumes close to where it stopped.
"""
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.optim import AdamW


class _ShortSchedule(nnUNetTrainer):
    # (epochs, training iterations per epoch, validation iterations per epoch, checkpoint every N epochs)
    schedule = (1000, 250, 50, 50)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        (self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch,
         self.save_every) = self.schedule


class nnUNetTrainerRenalTiny(_ShortSchedule):
    """The bundled demo model's schedule: 12,000 iterations, about two and a half hours a fold on a
    2-core CPU (its learning curve is in models/renalnode-demo/; at 6,000 it was still rising).

    With this few iterations nnU-Net's SGD learns the kidney but not yet the lesions (seen on the
    phantoms: lesion Dice 0 after 1,750 iterations), so this trainer uses AdamW, which learns the
    small classes several times sooner. Half of each batch is centred on foreground (nnU-Net's
    default is a third): centring every patch on it, as the first demo model did, left too little
    plain abdomen in training, and the model found kidney in the abdominal wall.
    """
    schedule = (480, 25, 3, 10)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.oversample_foreground_percent = 0.5
        self.initial_lr = 2e-3

    def configure_optimizers(self):
        optimizer = AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay, amsgrad=True)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's validation without test-time mirroring, as `renalnode train evaluate` predicts
        the test split on a CPU (8 times faster; the checkpoint still allows mirroring)."""
        axes = self.inference_allowed_mirroring_axes  # type: ignore[has-type]  # set untyped by nnU-Net
        self.inference_allowed_mirroring_axes = None
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            self.inference_allowed_mirroring_axes = axes


class nnUNetTrainerRenalSmoke(_ShortSchedule):
    """A few iterations: proves the pipeline end to end in tests, learns next to nothing."""
    schedule = (2, 2, 1, 1)
