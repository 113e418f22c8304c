"""Synthetic contrast-enhanced abdominal CT cases with ground truth, one folder per case.

Each case folder holds `dicom/` (the CT series), `image.nii.gz` (the same CT as a volume),
`label.nii.gz` (0 background, 1 kidney, 2 solid renal mass, 3 renal cyst, on the image grid) and
`truth.json` (every kidney and lesion measured from the label map in patient coordinates).
A case is written under a temporary name and renamed when complete, so a crash leaves no
half-written case behind, and a rerun skips the cases that are already there.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from renalnode.labels import CYST as LABEL_CYST
from renalnode.labels import KIDNEY as LABEL_KIDNEY
from renalnode.labels import SOLID_MASS as LABEL_SOLID_MASS
from renalnode.measurements import measure
from renalnode.uids import deterministic_uid
from training.phantom.acquisition import MIXED, PATIENT_POSITIONS, Acquisition, sample_acquisition
from training.phantom.anatomy import Anatomy, paint_anatomy, sample_body
from training.phantom.canvas import Canvas
from training.phantom.dicom_series import StudyIdentity, hu_to_stored, stored_to_hu, write_ct_series
from training.phantom.scanner import Reconstruction, attenuation, block_centre, reconstruct, sample_reconstruction
from training.phantom.tissues import labels_of, sample_phase

# Sub-samples per voxel edge are chosen so that samples lie at most this far apart (mm).
SUBSAMPLE_MM = 1.3
SERIES_DESCRIPTION = {"non_contrast": "Abdomen non-contrast", "corticomedullary": "Abdomen renal arterial",
                      "nephrographic": "Abdomen nephrographic", "excretory": "Abdomen excretory"}

_GIVEN = ["Alex", "Sam", "Robin", "Kim", "Jordan", "Charlie", "Morgan", "Taylor", "Jamie", "Riley", "Noa", "Eli"]
_FAMILY = ["Phantom", "Voxel", "Hounsfield", "Tomograph", "Sinogram", "Isocentre", "Gantry", "Kernel", "Collimator"]


@dataclass
class PhantomCase:
    case_id: str
    seed: int
    index: int
    requested: dict      # what the caller fixed: position (or "mixed"), small, slice thickness, noise
    phase: str
    reconstruction: Reconstruction
    acquisition: Acquisition
    identity: StudyIdentity
    anatomy: Anatomy
    stored: np.ndarray   # int16 stored values, image order (k, j, i)
    label: np.ndarray    # uint8 labels, image order
    tissue: np.ndarray   # uint8 tissue ids at voxel centres, image order
    lesions: np.ndarray  # uint8 lesion numbers (Lesion.number, 0 = none) at voxel centres, image order

    @property
    def hu(self) -> np.ndarray:
        return stored_to_hu(self.stored)

    def parameters(self) -> dict:
        """What identifies the case: a rerun with the same parameters makes the same case."""
        return {"seed": self.seed, "index": self.index, **self.requested}


def case_id_for(seed: int, index: int) -> str:
    return f"phantom_s{seed}_{index:03d}"


def _odd_factor(step_mm: float) -> int:
    f = int(np.ceil(step_mm / SUBSAMPLE_MM))
    return f if f % 2 else f + 1


def requested_parameters(position: str, small: bool, slice_mm: float | None, noise_hu: float | None) -> dict:
    wanted = {"position": position, "small": small}
    if slice_mm is not None:
        wanted["slice_mm"] = slice_mm
    if noise_hu is not None:
        wanted["noise_hu"] = noise_hu
    return wanted


def _identity(rng: np.random.Generator, seed: int, index: int, position: str, small: bool, phase: str,
              overrides: tuple = ()) -> StudyIdentity:
    key = (seed, index, position, small) + overrides
    day = int(rng.integers(0, 365))
    date = (np.datetime64("2026-01-01") + day).astype(str).replace("-", "")
    birth = (np.datetime64("1940-01-01") + int(rng.integers(0, 365 * 60))).astype(str).replace("-", "")
    return StudyIdentity(
        patient_name=f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}",
        patient_id=f"PH{rng.integers(10 ** 7, 10 ** 8)}",
        patient_birth_date=birth,
        patient_sex=str(rng.choice(["F", "M"])),
        study_uid=deterministic_uid("study", *key),
        series_uid=deterministic_uid("series", *key),
        frame_of_reference_uid=deterministic_uid("frame", *key),
        study_date=date,
        study_time=f"{rng.integers(7, 19):02d}{rng.integers(0, 60):02d}00",
        accession_number=f"ACC{rng.integers(10 ** 6, 10 ** 7)}",
        study_id=str(rng.integers(1000, 9999)),
        series_description=SERIES_DESCRIPTION[phase],
        contrast=phase != "non_contrast",
    )


def make_case(seed: int, index: int, position: str = "HFS", small: bool = False, slice_mm: float | None = None,
              noise_hu: float | None = None) -> PhantomCase:
    """Build one case in memory. The anatomy depends only on (seed, index); `slice_mm` and
    `noise_hu` fix what is otherwise drawn at random (to render a case outside the usual ranges)."""
    if position != MIXED and position not in PATIENT_POSITIONS:
        raise ValueError(f"unknown patient position {position!r}; expected {MIXED!r} or one of "
                         f"{sorted(PATIENT_POSITIONS)}")
    requested = requested_parameters(position, small, slice_mm, noise_hu)
    anatomy_seed, scan_seed, noise_seed, identity_seed = np.random.SeedSequence([seed, index]).spawn(4)
    anatomy_rng = np.random.default_rng(anatomy_seed)
    scan_rng = np.random.default_rng(scan_seed)
    body = sample_body(anatomy_rng)
    drawn_position = str(scan_rng.choice(sorted(PATIENT_POSITIONS)))
    position = drawn_position if position == MIXED else position
    acq = sample_acquisition(scan_rng, body["body_a"], -8.0, position, small, slice_mm)
    phase = sample_phase(scan_rng)
    recon = sample_reconstruction(scan_rng, noise_hu)

    factors_xyz = (_odd_factor(acq.pixel_mm), _odd_factor(acq.pixel_mm), _odd_factor(acq.slice_mm))
    x, y, z = acq.canonical_axes(factors_xyz)
    shift = np.asarray(acq.anatomy_origin)
    canvas = Canvas(x - shift[0], y - shift[1], z - shift[2])
    # Canonical voxel-centre coordinates in the anatomy frame, for snapping lesion centres.
    centres = [axis - s for axis, s in zip(acq.canonical_axes(), shift)]

    def snap(point):
        return np.array([c[np.abs(c - p).argmin()] for c, p in zip(centres, point)])

    anatomy = paint_anatomy(canvas, anatomy_rng, body, prone=position.endswith("P"), voxel_size=acq.spacing,
                            snap=snap)
    noise_rng = np.random.default_rng(noise_seed)
    factors = factors_xyz[::-1]
    hu = reconstruct(attenuation(canvas.tissue, canvas.lesion, noise_rng, phase), factors, acq.pixel_mm, noise_rng,
                     recon)
    tissue = block_centre(canvas.tissue, factors)
    overrides = tuple(item for item in requested.items() if item[0] in ("slice_mm", "noise_hu"))
    return PhantomCase(
        case_id=case_id_for(seed, index), seed=seed, index=index, requested=requested, phase=phase,
        reconstruction=recon, acquisition=acq,
        identity=_identity(np.random.default_rng(identity_seed), seed, index, position, small, phase, overrides),
        anatomy=anatomy,
        stored=acq.to_image(hu_to_stored(hu)), label=acq.to_image(labels_of(tissue)), tissue=acq.to_image(tissue),
        lesions=acq.to_image(block_centre(canvas.lesion, factors)))


def truth_of(case: PhantomCase) -> dict:
    """Every kidney and lesion, measured on the label map in patient coordinates."""
    acq = case.acquisition
    geometry = acq.image(case.label)
    # Kidney side from patient x of each voxel (LPS: +x is the patient's left), never array index.
    x_mm = (acq.origin[0] + acq.direction[0, 0] * acq.pixel_mm * np.arange(acq.matrix))[None, None, :]
    x_mm = x_mm - acq.anatomy_origin[0]
    # A kidney or lesion that the field of view or the slab leaves out entirely has no truth entry.
    kidneys = []
    for k in case.anatomy.kidneys:
        side_mask = (x_mm < 0) if k.side == "right" else (x_mm > 0)
        mask = (case.label == LABEL_KIDNEY) & side_mask
        if mask.any():
            kidneys.append({"side": k.side, **measure(mask, geometry).as_dict()})
    lesions = []
    for lesion in case.anatomy.lesions:
        mask = case.lesions == lesion.number
        if not mask.any():
            continue
        label = LABEL_CYST if lesion.kind == "cyst" else LABEL_SOLID_MASS
        lesions.append({"id": lesion.number, "class": lesion.kind, "label": label, "subtype": lesion.subtype,
                        "side": lesion.side, "growth": lesion.growth,
                        "nominal_diameter_mm": round(2 * lesion.radius, 2), **measure(mask, geometry).as_dict()})
    return {
        "case_id": case.case_id,
        "parameters": case.parameters(),
        "coordinates": "DICOM patient coordinates (LPS), mm; centroids and diameters from voxel centres",
        "labels": {"0": "background", "1": "kidney", "2": "solid_mass", "3": "cyst"},
        "series_instance_uid": case.identity.series_uid,
        "study_instance_uid": case.identity.study_uid,
        "patient_position": acq.position,
        "contrast_phase": case.phase,
        "reconstruction": case.reconstruction.as_dict(),
        "kidney_variant": case.anatomy.variant,
        "size_ijk": [acq.matrix, acq.matrix, acq.slices],
        "spacing_mm": [float(s) for s in acq.spacing],
        "voxel_volume_ml": float(np.prod(acq.spacing)) / 1000.0,
        "kidneys": kidneys,
        "lesions": lesions,
    }


def write_case(case: PhantomCase, out: Path, transfer_syntax: str = "explicit") -> Path:
    """Write a case folder atomically: built under a temporary name, renamed when complete."""
    final = out / case.case_id
    tmp = out / f".{case.case_id}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_ct_series(case.stored, case.acquisition, case.identity, tmp / "dicom", transfer_syntax)
    sitk.WriteImage(case.acquisition.image(case.hu.astype(np.int16)), str(tmp / "image.nii.gz"), useCompression=True)
    sitk.WriteImage(case.acquisition.image(case.label), str(tmp / "label.nii.gz"), useCompression=True)
    truth = truth_of(case)
    truth["transfer_syntax"] = transfer_syntax
    (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    tmp.rename(final)
    return final


def existing_parameters(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "truth.json").read_text())["parameters"]
    except (OSError, ValueError, KeyError):
        return None


def generate_cases(out: Path, cases: int, seed: int, position: str = "HFS", small: bool = False,
                   transfer_syntax: str = "explicit", slice_mm: float | None = None, noise_hu: float | None = None,
                   log=sys.stderr) -> list[Path]:
    """Make `cases` cases under `out`, reporting progress a line per case; existing ones are kept."""
    out.mkdir(parents=True, exist_ok=True)
    folders = []
    for index in range(cases):
        case_id = case_id_for(seed, index)
        folder = out / case_id
        wanted = {"seed": seed, "index": index, **requested_parameters(position, small, slice_mm, noise_hu)}
        if folder.exists():
            found = existing_parameters(folder)
            if found != wanted:
                raise FileExistsError(f"{folder} exists but was made with {found}, not {wanted}; "
                                      "remove it or choose another --out")
            print(f"[{index + 1}/{cases}] {case_id}: already there, kept", file=log, flush=True)
            folders.append(folder)
            continue
        start = time.monotonic()
        case = make_case(seed, index, position, small, slice_mm, noise_hu)
        folders.append(write_case(case, out, transfer_syntax))
        acq = case.acquisition
        print(f"[{index + 1}/{cases}] {case_id}: {acq.matrix}x{acq.matrix}x{acq.slices} "
              f"({acq.pixel_mm:.2f}x{acq.pixel_mm:.2f}x{acq.slice_mm:g} mm, {acq.position}, {case.phase}, "
              f"noise {case.reconstruction.noise_hu:.0f} HU), {case.anatomy.variant} kidneys, "
              f"{len(case.anatomy.lesions)} lesion(s), "
              f"{time.monotonic() - start:.1f} s", file=log, flush=True)
    return folders
