"""`renalnode train import|run|evaluate|export`: from labelled CTs to a model package."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from renalnode.precision import PRECISIONS
from training.workspace import DEFAULT_WORKSPACE, Workspace


def _folds(text: str) -> list[int]:
    try:
        return [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"folds must be comma-separated integers, not {text!r}") from None


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="training workspace: import, train, evaluate and export nnU-Net models",
                                  description="Turn labelled CTs into the nnU-Net model package the app runs.")
    sub = train.add_subparsers(dest="train_command", required=True, metavar="STEP")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE,
                        help=f"workspace folder holding nnU-Net's raw, preprocessed and results folders "
                             f"(default {DEFAULT_WORKSPACE}, or $RENALNODE_WORKSPACE)")
    common.add_argument("--dataset", type=int, required=True, help="nnU-Net data set id (1-999)")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--profile", choices=["full", "tiny"], default="full",
                       help="full: nnU-Net's defaults for a GPU; tiny: a small network that trains on a CPU in minutes")
    model.add_argument("--trainer", help="nnU-Net trainer class (default: the profile's)")

    p = sub.add_parser("import", parents=[common], help="import labelled CTs into an nnU-Net raw data set")
    p.add_argument("--source", choices=["phantom", "kits", "nifti", "dicom"], required=True)
    p.add_argument("--input", type=Path, required=True, help="folder to import from")
    p.add_argument("--name", default="RenalMasses", help="data set name (letters, digits, - and _)")
    p.add_argument("--label-suffix", default="-label",
                   help="nifti: a label file is <case><suffix>.<ext> beside <case>.<ext> (default -label)")
    p.add_argument("--label-map", help="map source label values or segment names to renalnode labels, e.g. "
                                      "'1=kidney,2=solid_mass,3=cyst' or 'Tumor=solid_mass,Kidney=kidney'")
    p.add_argument("--test-fraction", type=float, default=0.0, help="hold out this fraction of cases for testing")
    p.add_argument("--test-cases", default="", help="comma-separated case ids to hold out for testing")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test split")
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set with this id")
    p.set_defaults(func=run_import)

    p = sub.add_parser("run", parents=[common, model], help="plan, preprocess and train folds (resumes)")
    p.add_argument("--folds", type=_folds, default=[0, 1, 2, 3, 4], help="comma-separated folds (default 0-4)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when present, else cpu")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="a CPU's arithmetic in renalnode's trainers (default: RENALNODE_PRECISION, else auto: "
                        "bfloat16 where the CPU has bfloat16 instructions)")
    p.add_argument("--init-from", type=Path, metavar="MODEL_DIR",
                   help="fine-tune from a trained model: its nnU-Net folder (plans.json, fold_N/checkpoint_final.pth, "
                        "splits_final.json), in a workspace's nnUNet_results or a package's nnunet/; this data set "
                        "takes its plans, and its folds' validation cases stay out of training")
    p.set_defaults(func=run_train)

    p = sub.add_parser("evaluate", parents=[common, model], help="per-fold, cross-validation and test metrics")
    p.add_argument("--no-test", action="store_true", help="skip the held-out test split")
    p.add_argument("--no-mirroring", action="store_true",
                   help="predict every split without test-time mirroring (8x faster on a CPU); the app mirrors "
                        "unless RENALNODE_MIRRORING=0, so rules chosen this way suit an app run without it")
    p.add_argument("--input-antialiasing", action="store_true",
                   help="low-pass a CT finer than the model's spacing before it is resampled to it, in every "
                        "split; the exported package then asks the app for it (model.json's input_antialiasing)")
    p.add_argument("--shifted", type=Path, metavar="DIR",
                   help="also evaluate a shifted test set: cases rendered outside the training ranges, as "
                        "`renalnode phantom` writes them (<case>/image.nii.gz + label.nii.gz)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes that evaluate cases under each candidate offset and rule (default: the CPUs, "
                        "at most 4; each holds one case in memory)")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("export", parents=[common, model], help="write the model package")
    p.add_argument("--out", type=Path, required=True, help="package folder to write")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--version", required=True, help="model version")
    p.add_argument("--description", default="", help="what the model is and what it was trained on")
    p.set_defaults(func=run_export)


def run_import(args) -> int:
    from training.dataset_import import import_dataset

    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.name):
        raise ValueError(f"data set name {args.name!r} may hold only letters, digits, - and _")
    ws = Workspace(args.workspace).activate()
    summary = import_dataset(ws.raw, args.source, args.input, args.dataset, args.name,
                             label_suffix=args.label_suffix, label_map=args.label_map,
                             test_fraction=args.test_fraction,
                             test_cases=[c for c in args.test_cases.split(",") if c], seed=args.seed,
                             overwrite=args.overwrite)
    print(f"{summary.dataset}: {len(summary.training_cases)} training and {len(summary.test_cases)} test cases; "
          f"label voxels {summary.label_voxels}")
    return 0


def run_train(args) -> int:
    from training.run import train

    folder = train(Workspace(args.workspace), args.dataset, args.profile, args.folds, args.trainer, args.device,
                   args.precision, args.init_from)
    print(f"trained folds {args.folds} in {folder}")
    return 0


def run_evaluate(args) -> int:
    from training.evaluate import evaluate, markdown

    report = evaluate(Workspace(args.workspace), args.dataset, args.profile, args.trainer, test=not args.no_test,
                      mirroring=not args.no_mirroring, shifted=args.shifted,
                      input_antialiasing=args.input_antialiasing, workers=args.workers)
    print(markdown(report))
    print(f"written: {report['model_folder']}/evaluation.json and evaluation.md")
    return 0


def run_export(args) -> int:
    from training.export import export

    out = export(Workspace(args.workspace), args.dataset, args.profile, args.out, args.name, args.version,
                 args.trainer, args.description)
    print(f"model package written to {out}")
    return 0
