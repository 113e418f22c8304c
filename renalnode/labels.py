"""The label catalogue: one definition per class, used by training, post-processing, the SEG, SR and
PDF writers, evaluation and the model package check.

renalnode's label values are KiTS23's: 0 background, 1 kidney, 2 solid renal mass, 3 renal cyst.
A model package whose network uses other values names, in `model.json`, the catalogue key of each
of its values (renalnode/model_package.py); its output is mapped onto these values first.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.coding import Code

SCT = "SCT"
ANATOMICAL_STRUCTURE = Code("91723000", SCT, "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", SCT, "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class LabelClass:
    value: int                       # in renalnode's label maps
    key: str                         # in model.json, dataset.json, truth files and metrics
    display_name: str                # a finding's name: "solid mass 2"
    category: Code                   # SEG Segmented Property Category (SNOMED CT)
    property_type: Code              # SEG Segmented Property Type, SR finding (SNOMED CT)
    colour: tuple[int, int, int]     # sRGB; the paper's Fig. 4: kidney green, cyst blue, solid mass red
    is_lesion: bool
    evaluation_name: str             # its row in evaluation tables


KIDNEY_CLASS = LabelClass(1, "kidney", "kidney", ANATOMICAL_STRUCTURE, Code("64033007", SCT, "Kidney"),
                          (0, 200, 0), False, "Kidney")
SOLID_MASS_CLASS = LabelClass(2, "solid_mass", "solid mass", MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
                              Code("108369006", SCT, "Neoplasm"), (230, 0, 0), True, "Solid renal masses")
CYST_CLASS = LabelClass(3, "cyst", "cyst", MORPHOLOGICALLY_ABNORMAL_STRUCTURE, Code("367643001", SCT, "Cyst"),
                        (0, 90, 255), True, "Renal cysts")
CATALOGUE = (KIDNEY_CLASS, SOLID_MASS_CLASS, CYST_CLASS)
CLASS_OF_KEY = {c.key: c for c in CATALOGUE}
CLASS_OF_VALUE = {c.value: c for c in CATALOGUE}

BACKGROUND_KEY = "background"
BACKGROUND, KIDNEY, SOLID_MASS, CYST = 0, KIDNEY_CLASS.value, SOLID_MASS_CLASS.value, CYST_CLASS.value
LABEL_NAMES = {BACKGROUND: BACKGROUND_KEY, **{c.value: c.key for c in CATALOGUE}}
LESION_LABELS = tuple(c.value for c in CATALOGUE if c.is_lesion)
