"""renalnode's nnU-Net trainers, in the core because inference needs them too: nnU-Net rebuilds a
trained model's network through its trainer class, which it looks up by name in the folders of
`nnUNet_extTrainer` (each module there is imported on its own, outside this package)."""
from pathlib import Path

TRAINERS_DIR = Path(__file__).resolve().parent
