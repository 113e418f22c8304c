"""The label contract (DESIGN.md, same as KiTS23): 0 background, 1 kidney, 2 solid renal mass, 3 renal cyst."""
BACKGROUND, KIDNEY, SOLID_MASS, CYST = 0, 1, 2, 3
LABEL_NAMES = {BACKGROUND: "background", KIDNEY: "kidney", SOLID_MASS: "solid_mass", CYST: "cyst"}
LESION_LABELS = (SOLID_MASS, CYST)
