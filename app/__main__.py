"""`python -m app -i DICOM_DIR -o OUT_DIR -m MODEL_DIR` (or the HOLOSCAN_* variables in a MAP)."""
import sys

from app.app import main

sys.exit(main())
