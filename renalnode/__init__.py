"""renalnode: a DICOM node for kidney, renal mass and renal cyst segmentation in abdominal CT."""
__version__ = "0.1.0"
