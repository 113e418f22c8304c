"""`train evaluate`'s case evaluation over worker processes against one process, on the same cases
and rules: the work repeated for each of the 25 candidate offsets and each candidate rule. First,
one process with each case's facts (midline, true lesions) found in the run against known, as every
candidate after the first finds them.

    .venv/bin/python bench/evaluate_workers.py [--cases 4] [--slice-thickness 2.5] [--workers 2 4]

Full-matrix phantoms are made (512 x 512 class, as the demo model's full-matrix validation cases);
each case's truth stands in for its prediction with a few invented specks, so no model is needed and
every rule has something to act on. The figures of every worker count are checked to equal the
single process's before its time is printed, and so are those with the facts found in the run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from renalnode import labels
from renalnode.postprocessing_rules import PostprocessingRules
from training.dataset_import.sources import phantom_cases
from training.evaluate import CaseFiles, CaseSet, case_pool

RULES = PostprocessingRules(kidney_largest_per_side=True, cyst_in_mass_border_share=0.25, lesion_max_distance_mm=0.0,
                            min_cyst_ml=0.1)


def make_cases(folder: Path, count: int, slice_mm: float) -> list[CaseFiles]:
    subprocess.run([sys.executable, "-m", "renalnode", "phantom", "--out", str(folder / "phantoms"), "--cases",
                    str(count), "--seed", "77", "--position", "mixed", "--slice-thickness", str(slice_mm)],
                   check=True, capture_output=True)
    rng = np.random.default_rng(77)
    cases = []
    for case_id, image, label in phantom_cases(folder / "phantoms"):
        truth = sitk.ReadImage(str(label))
        array = sitk.GetArrayFromImage(truth)
        for _ in range(5):  # specks of solid mass anywhere: the rules and the false positive count act
            z, y, x = (rng.integers(2, n - 2) for n in array.shape)
            array[z - 1:z + 1, y - 1:y + 1, x - 1:x + 1] = labels.SOLID_MASS
        prediction = sitk.GetImageFromArray(array)
        prediction.CopyInformation(truth)
        path = folder / f"{case_id}_prediction.nii.gz"
        sitk.WriteImage(prediction, str(path), useCompression=True)
        cases.append(CaseFiles(case_id, image, label, path))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--slice-thickness", type=float, default=2.5)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = make_cases(Path(tmp), args.cases, args.slice_thickness)
        one = CaseSet(cases)
        start = time.perf_counter()
        finding = one.evaluate(RULES).summary()
        finding_s = time.perf_counter() - start
        start = time.perf_counter()
        baseline = one.evaluate(RULES).summary()
        base_s = time.perf_counter() - start
        if finding != baseline:
            raise SystemExit("the facts found once gave other figures than the facts found in the run")
        print(f"{len(cases)} cases ({args.slice_thickness} mm slices), one set of rules")
        print(f"  1 process, facts found in the run: {finding_s:6.1f} s")
        print(f"  1 process, facts known:            {base_s:6.1f} s   {finding_s / base_s:.2f}x faster, same figures")
        for workers in args.workers:
            with case_pool(workers) as pool:
                pooled = CaseSet(cases, dict(one.facts), pool)
                pooled.evaluate(RULES)  # workers started and their imports done before timing
                start = time.perf_counter()
                summary = pooled.evaluate(RULES).summary()
                seconds = time.perf_counter() - start
            if summary != baseline:
                raise SystemExit(f"{workers} workers gave other figures than one process")
            print(f"  {workers} workers, facts known:            {seconds:6.1f} s   "
                  f"{base_s / seconds:.2f}x faster than 1 process, same figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
