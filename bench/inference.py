"""Inference benchmark: renalnode's ensemble operator against plain nnU-Net on the same model package,
volume, folds and mirroring, and the app's time per stage.

    .venv/bin/python bench/inference.py [--case PHANTOM_CASE] [--full] [--slice-thickness MM]
                                         [--device cpu|cuda] [--no-mirroring] [--folds 0 1 2 3 4]
                                         [--region-focus] [--no-app] [--model DIR]

Without --case a phantom is made (128 x 128 with --small, the default; 512 x 512 with --full).
Plain nnU-Net is `nnUNetv2_predict_from_modelfolder` (nnUNetv2_predict on a model folder), as a
site would run it per study: a new process that loads the folds, reads the NIfTI, predicts and writes
the label file. renalnode's time is one study in a warm process (model loaded, one small call made),
which is how the node runs it, with one lever more at a time (float32, then bfloat16 on a CPU, then
the region focus when asked, then the input anti-aliasing when the package asks for it), each with its
per-class Dice against plain nnU-Net's labels.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("nnUNet_def_n_proc", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk
import torch

from app.app import DEFAULT_MODEL, AppSettings, run_study
from operators.ct_volume import series_to_volume
from operators.study_loader import read_study
from renalnode.ensemble import EnsemblePredictor, InferenceSettings
from renalnode.model_package import find_model_package, load_model_package
from renalnode.nnunet_trainers import add_trainers_folder
from renalnode.orientation import canonical

ROOT = Path(__file__).resolve().parents[1]


def make_phantom(folder: Path, full: bool, slice_mm: float | None) -> Path:
    command = [sys.executable, "-m", "renalnode", "phantom", "--out", str(folder), "--cases", "1", "--seed", "11"]
    command += [] if full else ["--small"]
    command += [] if slice_mm is None else ["--slice-thickness", str(slice_mm)]
    subprocess.run(command, check=True, capture_output=True)
    return next(p for p in folder.iterdir() if not p.name.startswith("."))


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def plain_nnunet(ct: sitk.Image, package_dir: Path, folds: list[int], mirroring: bool, device: str,
                 work: Path) -> tuple[np.ndarray, float]:
    """nnUNetv2_predict_from_modelfolder on the canonical volume, as a separate process."""
    (work / "in").mkdir()
    sitk.WriteImage(canonical(ct), str(work / "in" / "case_0000.nii.gz"))
    command = [str(Path(sys.executable).parent / "nnUNetv2_predict_from_modelfolder"), "-i", str(work / "in"),
               "-o", str(work / "out"), "-m", str(package_dir / "nnunet"), "-f", *map(str, folds),
               "-step_size", "0.5", "-device", device, "-npp", "1", "-nps", "1"]
    if not mirroring:
        command.append("--disable_tta")
    # nnU-Net runs torch on nnUNet_def_n_proc threads (this script sets 1 for its own worker pools):
    # plain nnU-Net gets every core, as renalnode does.
    env = dict(os.environ, nnUNet_def_n_proc=str(os.cpu_count() or 1))
    add_trainers_folder(env)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - start
    return sitk.GetArrayFromImage(sitk.ReadImage(str(work / "out" / "case.nii.gz"))), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", type=Path, help="a phantom case folder (with dicom/); made when absent")
    parser.add_argument("--full", action="store_true", help="make a 512 x 512 phantom instead of a small one")
    parser.add_argument("--slice-thickness", type=float, help="of the phantom made (mm; 1 gives about 300 slices)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-mirroring", action="store_true")
    parser.add_argument("--folds", type=int, nargs="+",
                        help="folds to run; one fold may be named several times (the paper's 5 folds from a "
                             "package with fewer: --folds 0 0 0 0 0)")
    parser.add_argument("--region-focus", action="store_true", help="also time the kidney-region focus")
    parser.add_argument("--no-app", action="store_true", help="skip the app's per-stage times")
    args = parser.parse_args()
    mirroring = not args.no_mirroring
    package = load_model_package(find_model_package(args.model))
    folds = args.folds or package.folds

    with tempfile.TemporaryDirectory(prefix="renalnode-bench-") as tmp:
        tmp = Path(tmp)
        case = args.case or make_phantom(tmp / "phantom", args.full, args.slice_thickness)
        study = read_study(case / "dicom")
        (slices,) = study.series.values()
        ct = series_to_volume(slices).image
        print(f"volume {ct.GetSize()} voxels, spacing {tuple(round(s, 2) for s in ct.GetSpacing())} mm; "
              f"model {package.name} {package.version}, folds {folds}, mirroring {mirroring}, device {args.device}"
              + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))

        plain, plain_seconds = plain_nnunet(ct, package.path, folds, mirroring, args.device, tmp)
        print(f"plain nnUNetv2_predict (new process, load + predict + files): {plain_seconds:8.2f} s")
        # renalnode's ensemble, one setting more at a time: each lever's share is the change it makes.
        variants = [("float32", False, False), ("bfloat16", False, False)] if args.device == "cpu" \
            else [("float32", False, False)]
        if args.region_focus:
            variants.append((variants[-1][0], True, False))
        # Last, the input anti-aliasing the package asks for: plain nnU-Net has none, so its Dice with
        # plain says how much the filter changes, not whether the loop is nnU-Net's.
        if package.input_antialiasing:
            variants.append((*variants[-1][:2], True))
        for precision, focus, antialiasing in variants:
            inference = InferenceSettings(use_mirroring=mirroring, precision=precision, region_focus=focus)
            predictor, load_seconds = timed(EnsemblePredictor, package.nnunet_dir, folds, inference,
                                            torch.device(args.device), antialiasing)
            _, first_seconds = timed(predictor.segment_image, _corner(ct))  # the first call's one-time costs
            ours, warm_seconds = timed(predictor.segment_image, ct)
            in_lps = sitk.GetArrayFromImage(canonical(_on_grid(ours, ct)))
            dice = {name: _dice(in_lps, plain, int(value)) for value, name in package.card["labels"].items()
                    if int(value)}
            print(f"renalnode {precision}{' + region focus' if focus else ''}"
                  f"{' + input anti-aliasing (the package asks for it)' if antialiasing else ''}: "
                  f"load {load_seconds:.2f} s, "
                  f"warm-up {first_seconds:.2f} s, warm study {warm_seconds:8.2f} s; ratio plain / warm "
                  f"{plain_seconds / warm_seconds:.2f}x; Dice with plain: "
                  + ", ".join(f"{name} {value:.4f}" for name, value in dice.items()), flush=True)
            del predictor
        if args.no_app:
            return 0

        settings = AppSettings(inference=InferenceSettings(use_mirroring=mirroring))
        run_study(case / "dicom", tmp / "app-first", package.path, settings)  # loads the model into the cache
        record = run_study(case / "dicom", tmp / "app-warm", package.path, settings)
        print("app stages, warm process (s): " + ", ".join(f"{k} {v:.2f}" for k, v in record.stage_seconds.items())
              + f"; total {sum(record.stage_seconds.values()):.2f}")
    return 0


def _corner(ct: sitk.Image) -> sitk.Image:
    """A small block of the CT: one quick call that pays the process's one-time costs."""
    size = [min(n, 96) for n in ct.GetSize()]
    return sitk.RegionOfInterest(ct, size, [0, 0, 0])


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    both = int(((a == label) & (b == label)).sum())
    total = int((a == label).sum() + (b == label).sum())
    return 1.0 if total == 0 else 2 * both / total


def _on_grid(labels: np.ndarray, ct: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(ct)
    return image


if __name__ == "__main__":
    sys.exit(main())
