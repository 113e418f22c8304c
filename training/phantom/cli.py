"""`renalnode phantom`: write synthetic abdominal CT cases with ground truth."""
from __future__ import annotations

import argparse
from pathlib import Path

from training.phantom.acquisition import MIXED, PATIENT_POSITIONS
from training.phantom.dicom_series import TRANSFER_SYNTAXES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "phantom", help="make synthetic contrast-enhanced abdominal CT cases with ground truth",
        description="Write N synthetic cases to OUT/<case_id>/: dicom/ (CT series), image.nii.gz, label.nii.gz "
                    "(0 background, 1 kidney, 2 solid renal mass, 3 renal cyst) and truth.json. "
                    "The same seed makes the same cases; existing complete cases are kept.")
    p.add_argument("--out", type=Path, required=True, help="folder to write the cases into")
    p.add_argument("--cases", type=int, default=1, help="number of cases (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--small", action="store_true", help="128 x 128 matrix, thick slices: for fast tests")
    p.add_argument("--position", choices=sorted(PATIENT_POSITIONS) + [MIXED], default="HFS",
                   help=f"patient position (default HFS); {MIXED}: drawn per case")
    p.add_argument("--slice-thickness", type=float, metavar="MM",
                   help="fix the slice thickness (mm) instead of drawing it, e.g. to render cases outside "
                        "a model's training range")
    p.add_argument("--noise-hu", type=float, metavar="HU",
                   help="fix the noise standard deviation (HU) instead of drawing it")
    p.add_argument("--transfer-syntax", choices=sorted(TRANSFER_SYNTAXES), default="explicit",
                   help="DICOM transfer syntax of the CT files (default explicit VR little endian)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cases < 1:
        raise SystemExit("--cases must be at least 1")
    if args.seed < 0:
        raise SystemExit("--seed must not be negative")
    from training.phantom.generate import generate_cases  # heavy imports only when used

    if args.slice_thickness is not None and not 0.5 <= args.slice_thickness <= 10:
        raise SystemExit("--slice-thickness must be between 0.5 and 10 mm")
    if args.noise_hu is not None and not 0 <= args.noise_hu <= 200:
        raise SystemExit("--noise-hu must be between 0 and 200")
    generate_cases(args.out, args.cases, args.seed, args.position, args.small, args.transfer_syntax,
                   args.slice_thickness, args.noise_hu)
    return 0
