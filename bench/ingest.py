"""C-STORE ingest: the node's listener against Orthanc's own ingest of the same series on this
machine, both driven by dcmtk's storescu, and their ratio.

    .venv/bin/python bench/ingest.py [--cases 2] [--small] [--repeats 3]

Each repeat sends every case to Orthanc and to the node (fresh storage each time, order alternated
so that neither profits from a warm page cache). The node's time includes its fsync per instance and
its journal transaction; Orthanc's its own index. Prints instances per second and node / Orthanc.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.local_services import NODE_AET, LocalNode, LocalOrthanc, free_port, store_folder

SENDER = "BENCH"


def send_all(port: int, called: str, cases: list[Path]) -> float:
    start = time.perf_counter()
    for case in cases:
        result = store_folder(port, called, case, SENDER)
        if result.returncode:
            raise RuntimeError(result.stderr[-2000:])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="128 x 128 phantoms instead of 512 x 512")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="renalnode-ingest-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "renalnode", "phantom", "--out", str(tmp / "phantoms"), "--cases",
                        str(args.cases), "--seed", "11", *(["--small"] if args.small else [])], check=True)
        cases = sorted(p / "dicom" for p in (tmp / "phantoms").iterdir() if (p / "dicom").is_dir())
        instances = sum(len(list(c.iterdir())) for c in cases)
        megabytes = sum(f.stat().st_size for c in cases for f in c.iterdir()) / 2 ** 20
        times = {"orthanc": [], "node": []}
        for repeat in range(args.repeats):
            run = tmp / f"run{repeat}"
            orthanc = LocalOrthanc(run / "orthanc").start()
            # A quiet window of an hour: the node only receives while it is measured.
            node = LocalNode(run / "node", orthanc.dicom_port, free_port(), (SENDER,), quiet_seconds=3600).start()
            try:
                order = [("orthanc", orthanc.dicom_port, orthanc.aet), ("node", node.port, NODE_AET)]
                for name, port, called in order if repeat % 2 == 0 else order[::-1]:
                    times[name].append(send_all(port, called, cases))
            finally:
                node.stop()
                orthanc.stop()
            shutil.rmtree(run, ignore_errors=True)
    best = {name: min(values) for name, values in times.items()}
    print(f"{instances} instances, {megabytes:.0f} MB, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"{name:<8} {seconds:7.2f} s  {instances / seconds:7.1f} instances/s  {megabytes / seconds:7.1f} MB/s")
    print(f"ratio node / Orthanc throughput: {best['orthanc'] / best['node']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
