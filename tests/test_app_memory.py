"""Memory bound: a 512 x 512 x 600 CT goes through the whole application on a 24 GiB machine.

The study is a small phantom resampled onto a 512 x 512 x 600 grid (0.64 mm pixels, 0.5 mm slices),
written as 600 DICOM files, and run through `python -m app` in its own process, whose peak resident
memory is measured by the kernel (ru_maxrss of the waited child)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import SimpleITK as sitk

from renalnode.run_record import COMPLETED, RECORD_NAME
from training.phantom.acquisition import Acquisition
from training.phantom.dicom_series import StudyIdentity, hu_to_stored, write_ct_series

ROOT = Path(__file__).resolve().parents[1]
# A 24 GiB machine also runs the OS, the node and its journal: the app must stay well inside
# (the probabilities are resampled to the CT grid a slab at a time: renalnode/probability_resampling.py).
PEAK_BOUND_GIB = 8.0
LARGE = dict(matrix=512, slices=600, pixel_mm=0.64, slice_mm=0.5)


def large_study(small_case: Path, out: Path) -> Path:
    small = sitk.ReadImage(str(small_case / "image.nii.gz"))
    centre = small.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in small.GetSize()])
    acq = Acquisition(position="HFS", centre=tuple(centre), anatomy_origin=(0.0, 0.0, 0.0), **LARGE)
    grid = sitk.Image([acq.matrix, acq.matrix, acq.slices], sitk.sitkUInt8)
    grid.SetOrigin([float(v) for v in acq.origin])
    grid.SetSpacing([float(v) for v in acq.spacing])
    grid.SetDirection([float(v) for v in acq.direction.ravel()])
    hu = sitk.Resample(small, grid, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    stored = hu_to_stored(sitk.GetArrayViewFromImage(hu))
    del hu
    identity = StudyIdentity(patient_name="Memory^Phantom", patient_id="MEM600", patient_birth_date="19700101",
                             patient_sex="O", study_uid="2.25.600600600", series_uid="2.25.600600601",
                             frame_of_reference_uid="2.25.600600602", study_date="20261129", study_time="120000",
                             accession_number="MEM600", study_id="600", series_description="Abdomen 0.5 mm")
    write_ct_series(stored, acq, identity, out)
    return out


def test_a_512x512x600_ct_runs_within_the_memory_bound(phantom_cases, tmp_path):
    study = large_study(phantom_cases("HFS"), tmp_path / "study")
    assert len(list(study.iterdir())) == 600
    out = tmp_path / "out"
    measure = ("import resource, subprocess, sys; "
               "code = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    env = dict(os.environ, RENALNODE_MIRRORING="0")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "app", "-i", str(study),
                             "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    peak_gib = int(result.stdout.split()[-1]) / 1024 ** 2  # ru_maxrss is in KiB on Linux
    print(f"peak resident memory of the app on 512 x 512 x 600: {peak_gib:.2f} GiB")
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["status"] == COMPLETED, record["reason"]
    assert any(f["kind"] == "kidney" for f in record["findings"])
    assert peak_gib < PEAK_BOUND_GIB
