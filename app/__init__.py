"""The MONAI Deploy application: CT series in, DICOM SEG + TID 1500 SR + PDF report out."""
