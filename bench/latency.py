"""Latency of one study through the node: from the last instance sent to the results stored in
Orthanc, in stages taken from the journal (quiet window, queue, app, dispatch), against the app's
own run time as the baseline that the node's overhead is measured from.

    .venv/bin/python bench/latency.py [--small] [--mirroring] [--quiet-seconds 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.local_services import NODE_AET, LocalNode, LocalOrthanc, free_port, store_folder, wait_until
from deploy.node.journal import Journal

SENDER = "BENCH"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--mirroring", action="store_true")
    parser.add_argument("--quiet-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="renalnode-latency-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "renalnode", "phantom", "--out", str(tmp / "phantom"), "--cases", "1",
                        "--seed", "5", *(["--small"] if args.small else [])], check=True)
        (case,) = [p / "dicom" for p in (tmp / "phantom").iterdir() if (p / "dicom").is_dir()]
        orthanc = LocalOrthanc(tmp / "orthanc").start()
        node = LocalNode(tmp / "node", orthanc.dicom_port, free_port(), (SENDER,), args.quiet_seconds,
                         args.mirroring).start()
        try:
            sent = store_folder(node.port, NODE_AET, case, SENDER)
            if sent.returncode:
                raise RuntimeError(sent.stderr[-2000:])
            last_sent = time.time()
            wait_until(lambda: all(orthanc.series_by_modality().get(m) for m in ("SEG", "SR", "DOC")), 3600, 0.5,
                       what="results in Orthanc")
            arrived = time.time()
            journal = Journal(node.journal_url)
            (job,) = journal.recent_jobs(1)
            received = journal.series_row(job.series_uid)
            sent_at = max(row.sent for row in journal.outbox_for(job.id))
        finally:
            node.stop()
            orthanc.stop()
    stages = {"quiet window": job.created - received.last_received, "queue": job.started - job.created,
              "app": job.finished - job.started, "dispatch": sent_at - job.finished}
    print(f"last instance sent -> results in Orthanc: {arrived - last_sent:.2f} s")
    for name, seconds in stages.items():
        print(f"  {name:<13} {seconds:7.2f} s")
    overhead = arrived - last_sent - stages["app"]
    print(f"node overhead beyond the app (quiet window included): {overhead:.2f} s; "
          f"total / app: {(arrived - last_sent) / stages['app']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
