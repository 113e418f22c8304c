"""Short nnU-Net trainers for the tiny profile, found by nnU-Net through `nnUNet_extTrainer`.

They change the schedule, and on a CPU with bfloat16 instructions the network's arithmetic
(`RENALNODE_PRECISION`, as for inference); loss, augmentation and validation are nnU-Net's own.
Checkpoints are written often so that an interrupted run resumes close to where it stopped.
"""
import contextlib
import os

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.optim import AdamW

from renalnode.precision import checked_precision, resolve_precision

PRECISION_VARIABLE = "RENALNODE_PRECISION"


class _Float32Loss(torch.nn.Module):
    """nnU-Net's loss on float32 network outputs. Autocast leaves softmax and sums in the dtype they
    receive: the Dice term's sums over a patch would be rounded to bfloat16's 3 digits."""

    def __init__(self, loss: torch.nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, output, target):
        output = [o.float() for o in output] if isinstance(output, (list, tuple)) else output.float()
        return self.loss(output, target)


class _ShortSchedule(nnUNetTrainer):
    # (epochs, training iterations per epoch, validation iterations per epoch, checkpoint every N epochs)
    schedule = (1000, 250, 50, 50)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        (self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch,
         self.save_every) = self.schedule
        self.cpu_precision = resolve_precision(
            checked_precision(os.environ.get(PRECISION_VARIABLE, "auto"), PRECISION_VARIABLE))

    def _cpu_autocast(self):
        """nnU-Net autocasts only on CUDA. A CPU with bfloat16 instructions runs the tiny network's
        training step 1.8x faster in bfloat16 (0.30 against 0.55 s per batch, measured on this
        project's 2-core build machine). Weights, gradients and the loss stay in float32."""
        if self.device.type == "cpu" and self.cpu_precision == "bfloat16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _build_loss(self):
        return _Float32Loss(super()._build_loss())

    def train_step(self, batch: dict) -> dict:
        with self._cpu_autocast():
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        with self._cpu_autocast():
            return super().validation_step(batch)


class nnUNetTrainerRenalTiny(_ShortSchedule):
    """The bundled demo model's schedule: 24,000 iterations, about three hours a fold on a 2-core
    CPU with bfloat16 instructions (its learning curve is in models/renalnode-demo/; the
    12,000 of the 0.3.0 model were still rising at their end).

    With this few iterations nnU-Net's SGD learns the kidney but not yet the lesions (seen on the
    phantoms: lesion Dice 0 after 1,750 iterations), so this trainer uses AdamW, which learns the
    small classes several times sooner. Half of each batch is centred on foreground (nnU-Net's
    default is a third): centring every patch on it, as the first demo model did, left too little
    plain abdomen in training, and the model found kidney in the abdominal wall.
    """
    schedule = (960, 25, 3, 10)

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


class nnUNetTrainerRenalTinyFinetune(nnUNetTrainerRenalTiny):
    """A short second stage from a trained tiny model (`renalnode train run --init-from`): 4,000
    iterations at half the first stage's learning rate, so the weights adapt to new cases (another
    resolution, another look) without forgetting what the first stage learned. nnU-Net's fine-tuning
    leaves the 1x1x1 output layers to be learned again; they are a few hundred weights."""
    schedule = (160, 25, 3, 10)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3


class nnUNetTrainerRenalSmoke(_ShortSchedule):
    """A few iterations: proves the pipeline end to end in tests, learns next to nothing."""
    schedule = (2, 2, 1, 1)
