"""Tissue classes of the phantom, their attenuation in a contrast-enhanced (portal venous,
nephrographic phase) abdominal CT, and the tissue-to-label mapping of the DESIGN.md label contract."""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from renalnode import labels


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    SUBCUTANEOUS_FAT = 2
    VISCERAL_FAT = 3
    MUSCLE = 4
    BONE_CORTEX = 5
    BONE_MARROW = 6
    DISC = 7
    CSF = 8
    LIVER = 9
    SPLEEN = 10
    PANCREAS = 11
    BILE = 12
    ARTERY = 13
    VEIN = 14
    BOWEL_WALL = 15
    BOWEL_FLUID = 16
    GAS = 17
    STOOL = 18
    KIDNEY_CORTEX = 19
    KIDNEY_MEDULLA = 20
    RENAL_SINUS_FAT = 21
    URINE = 22
    CYST = 23
    SOLID_MASS = 24
    NECROSIS = 25
    RIB = 26


# Mean HU, the half-width of its per-case variation (contrast timing, scanner), and the amplitude
# of its low-frequency texture. Kidneys are in the nephrographic phase, the one renal mass
# protocols read: cortex and medulla both enhance (the cortex more), solid masses enhance less
# than the parenchyma around them, cysts not at all.
HU_MODEL: dict[Tissue, tuple[float, float, float]] = {
    Tissue.AIR: (-1000, 0, 0),
    Tissue.SKIN: (30, 10, 3),
    Tissue.SUBCUTANEOUS_FAT: (-100, 8, 4),
    Tissue.VISCERAL_FAT: (-95, 8, 6),
    Tissue.MUSCLE: (55, 8, 4),
    Tissue.BONE_CORTEX: (850, 150, 40),
    Tissue.BONE_MARROW: (250, 60, 25),
    Tissue.DISC: (85, 10, 5),
    Tissue.CSF: (10, 5, 2),
    Tissue.LIVER: (105, 15, 5),
    Tissue.SPLEEN: (115, 15, 6),
    Tissue.PANCREAS: (95, 12, 8),
    Tissue.BILE: (12, 6, 2),
    Tissue.ARTERY: (200, 50, 4),
    Tissue.VEIN: (140, 20, 4),
    Tissue.BOWEL_WALL: (65, 10, 6),
    Tissue.BOWEL_FLUID: (20, 8, 6),
    Tissue.GAS: (-960, 20, 10),
    Tissue.STOOL: (-40, 30, 60),
    Tissue.KIDNEY_CORTEX: (185, 30, 6),
    Tissue.KIDNEY_MEDULLA: (140, 20, 6),
    Tissue.RENAL_SINUS_FAT: (-85, 10, 6),
    Tissue.URINE: (10, 6, 2),
    Tissue.CYST: (7, 6, 2),
    Tissue.SOLID_MASS: (95, 20, 25),
    Tissue.NECROSIS: (30, 10, 8),
    Tissue.RIB: (500, 100, 40),
}

KIDNEY_TISSUES = (Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA, Tissue.RENAL_SINUS_FAT, Tissue.URINE)

_LABEL_OF_TISSUE = np.zeros(256, np.uint8)
_LABEL_OF_TISSUE[list(KIDNEY_TISSUES)] = labels.KIDNEY
_LABEL_OF_TISSUE[[Tissue.SOLID_MASS, Tissue.NECROSIS]] = labels.SOLID_MASS
_LABEL_OF_TISSUE[Tissue.CYST] = labels.CYST


def labels_of(tissue: np.ndarray) -> np.ndarray:
    """The label map (uint8) of a tissue map."""
    return _LABEL_OF_TISSUE[tissue]


def sample_hu_table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-case mean HU and texture amplitude for every tissue id (lookup tables of length 256)."""
    means = np.zeros(256, np.float32)
    texture = np.zeros(256, np.float32)
    for tissue, (mean, spread, amplitude) in HU_MODEL.items():
        means[tissue] = mean + rng.uniform(-spread, spread)
        texture[tissue] = amplitude
    return means, texture
