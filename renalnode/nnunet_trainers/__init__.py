"""renalnode's nnU-Net trainers, in the core because inference needs them too: nnU-Net rebuilds a
trained model's network through its trainer class, which it looks up by name in the folders of
`nnUNet_extTrainer` (each module there is imported on its own, outside this package)."""
import os
from collections.abc import MutableMapping
from pathlib import Path

TRAINERS_DIR = Path(__file__).resolve().parent


def add_trainers_folder(environ: MutableMapping[str, str] = os.environ) -> None:
    """Put renalnode's trainer folder in `environ`'s nnUNet_extTrainer after the folders already
    named there (os.pathsep-separated, as nnU-Net reads it), so a user's own trainers stay findable."""
    folders = [f for f in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if f]
    if str(TRAINERS_DIR) not in folders:
        environ["nnUNet_extTrainer"] = os.pathsep.join(folders + [str(TRAINERS_DIR)])
