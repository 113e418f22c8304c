"""Tissue classes of the phantom, their attenuation in each contrast phase of an abdominal CT,
and the tissue-to-label mapping of the docs/architecture.md label contract.

Every case draws its phase and then each tissue's mean HU within a physiological range around that
phase's value (domain randomisation: a network trained on such cases cannot rely on one set of CT
numbers, only on shape and context)."""
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
    HYPERDENSE_CYST = 27  # proteinaceous or haemorrhagic content, never enhancing
    CYST_SEPTUM = 28      # thin septa of a septated cyst (Bosniak II-IIF), part of the cyst
    CALCIFICATION = 29    # calcium in a cyst wall, part of the cyst


# Contrast phases of a renal CT, with how often a case is drawn in each.
PHASES = {"non_contrast": 0.15, "corticomedullary": 0.25, "nephrographic": 0.40, "excretory": 0.20}

# Mean HU in the non-contrast, corticomedullary (arterial), nephrographic and excretory phases; the
# half-width of its per-case variation; the amplitude of its low-frequency texture. In the
# corticomedullary phase the cortex enhances and the medulla does not yet; in the nephrographic
# phase both enhance; in the excretory phase the collecting system fills with dense contrast.
HU_MODEL: dict[Tissue, tuple[tuple[float, float, float, float], float, float]] = {
    Tissue.AIR: ((-1000, -1000, -1000, -1000), 0, 0),
    Tissue.SKIN: ((30, 30, 30, 30), 10, 3),
    Tissue.SUBCUTANEOUS_FAT: ((-100, -100, -100, -100), 15, 4),
    Tissue.VISCERAL_FAT: ((-95, -95, -95, -95), 15, 6),
    Tissue.MUSCLE: ((50, 55, 60, 58), 10, 4),
    Tissue.BONE_CORTEX: ((850, 850, 850, 850), 250, 40),
    Tissue.BONE_MARROW: ((250, 250, 250, 250), 80, 25),
    Tissue.DISC: ((85, 85, 85, 85), 10, 5),
    Tissue.CSF: ((10, 10, 10, 10), 5, 2),
    Tissue.LIVER: ((55, 75, 110, 90), 15, 5),
    Tissue.SPLEEN: ((48, 120, 115, 95), 15, 8),
    Tissue.PANCREAS: ((45, 110, 95, 80), 12, 8),
    Tissue.BILE: ((12, 12, 12, 12), 6, 2),
    Tissue.ARTERY: ((42, 320, 180, 120), 50, 4),
    Tissue.VEIN: ((42, 110, 160, 120), 25, 4),
    Tissue.BOWEL_WALL: ((40, 80, 70, 60), 10, 6),
    Tissue.BOWEL_FLUID: ((15, 15, 15, 15), 10, 6),
    Tissue.GAS: ((-960, -960, -960, -960), 20, 10),
    Tissue.STOOL: ((-40, -40, -40, -40), 30, 60),
    Tissue.KIDNEY_CORTEX: ((35, 200, 175, 140), 35, 6),
    Tissue.KIDNEY_MEDULLA: ((33, 70, 150, 135), 20, 6),
    Tissue.RENAL_SINUS_FAT: ((-85, -85, -85, -85), 15, 6),
    Tissue.URINE: ((10, 10, 15, 700), 8, 2),
    Tissue.CYST: ((7, 7, 7, 7), 8, 2),
    Tissue.HYPERDENSE_CYST: ((65, 65, 65, 65), 20, 3),
    Tissue.CYST_SEPTUM: ((30, 70, 80, 70), 10, 4),
    Tissue.CALCIFICATION: ((500, 500, 500, 500), 200, 60),
    Tissue.SOLID_MASS: ((0, 0, 0, 0), 0, 25),  # drawn against the kidney: see sample_hu_table
    Tissue.NECROSIS: ((25, 25, 25, 25), 10, 8),
    Tissue.RIB: ((500, 500, 500, 500), 150, 40),
}
# The excretory phase's dense urine varies far more than the other tissues (300-1100 HU).
EXCRETED_CONTRAST_SPREAD = 400
# Positive oral contrast fills the bowel in some cases.
ORAL_CONTRAST_FRACTION, ORAL_CONTRAST_HU = 0.2, (150.0, 450.0)

KIDNEY_TISSUES = (Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA, Tissue.RENAL_SINUS_FAT, Tissue.URINE)
CYST_TISSUES = (Tissue.CYST, Tissue.HYPERDENSE_CYST, Tissue.CYST_SEPTUM, Tissue.CALCIFICATION)

_LABEL_OF_TISSUE = np.zeros(256, np.uint8)
_LABEL_OF_TISSUE[list(KIDNEY_TISSUES)] = labels.KIDNEY
_LABEL_OF_TISSUE[[Tissue.SOLID_MASS, Tissue.NECROSIS]] = labels.SOLID_MASS
_LABEL_OF_TISSUE[list(CYST_TISSUES)] = labels.CYST


def labels_of(tissue: np.ndarray) -> np.ndarray:
    """The label map (uint8) of a tissue map."""
    return _LABEL_OF_TISSUE[tissue]


def sample_phase(rng: np.random.Generator) -> str:
    return str(rng.choice(list(PHASES), p=list(PHASES.values())))


def sample_hu_table(rng: np.random.Generator, phase: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-case mean HU and texture amplitude for every tissue id (lookup tables of length 256)."""
    column = list(PHASES).index(phase)
    means = np.zeros(256, np.float32)
    texture = np.zeros(256, np.float32)
    texture_gain = rng.uniform(0.5, 2.0)
    for tissue, (phase_means, spread, amplitude) in HU_MODEL.items():
        if tissue == Tissue.URINE and phase == "excretory":
            spread = EXCRETED_CONTRAST_SPREAD
        means[tissue] = phase_means[column] + rng.uniform(-spread, spread)
        texture[tissue] = amplitude * texture_gain
    if rng.random() < ORAL_CONTRAST_FRACTION:
        means[Tissue.BOWEL_FLUID] = rng.uniform(*ORAL_CONTRAST_HU)
    # Solid masses enhance less than the parenchyma around them; unenhanced, they differ from it
    # by a little either way (the reason renal mass protocols give contrast).
    cortex = means[Tissue.KIDNEY_CORTEX]
    if phase == "non_contrast":
        means[Tissue.SOLID_MASS] = cortex + rng.choice([-1, 1]) * rng.uniform(10, 25)
    else:
        means[Tissue.SOLID_MASS] = 30 + (cortex - 30) * rng.uniform(0.3, 0.75)
    return means, texture
