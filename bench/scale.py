"""Throughput of the distributed mode with 1, 2 and 3 Celery worker processes on the same small
studies: studies per minute from the first instance sent to the last result set sent, the ratio to
one worker (the baseline, measured in the same run), and the time from a job's creation to a
worker's start. RabbitMQ, PostgreSQL, Orthanc and the node run here on loopback.

    .venv/bin/python bench/scale.py [--studies 6] [--workers 1 2 3]

On a machine with fewer cores than workers, the workers share the cores: the ratio then shows
what the queue costs or gains, not what more GPUs would give.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.local_services import (
    NODE_AET,
    ROOT,
    LocalNode,
    LocalOrthanc,
    LocalPostgres,
    LocalRabbitMQ,
    free_port,
    stop_process,
    store_at_once,
    wait_until,
)
from deploy.node.journal import JobState, Journal

SENDER = "BENCH"


def run(workers: int, studies: list[list[Path]], work: Path, postgres: LocalPostgres,
        rabbitmq: LocalRabbitMQ) -> tuple[float, float]:
    """(studies per minute, median seconds from job creation to a worker's start)."""
    url = postgres.create_database(f"scale_{workers}_{int(time.time())}")
    pacs = LocalOrthanc(work / f"pacs{workers}").start()
    node = LocalNode(work / f"node{workers}", pacs.dicom_port, free_port(), (SENDER,), sections={
        "node": {"name": "bench", "spool": str(work / f"spool{workers}"), "journal": url, "quiet_seconds": 2.0,
                 "mirroring": False}, "queue": {"broker": rabbitmq.url, "name": f"bench{workers}"}}).start()
    processes = []
    try:
        for slot in range(workers):
            log = open(work / f"worker{workers}_{slot}.log", "ab")
            processes.append(subprocess.Popen([sys.executable, "-m", "renalnode", "worker", "--config",
                                               str(node.config), "--slot", str(slot)], stdout=log,
                                              stderr=subprocess.STDOUT, cwd=ROOT))
        journal = Journal(url)
        wait_until(lambda: len(journal.workers()) == workers, 300, what=f"{workers} worker(s) to register")
        time.sleep(5)  # the Celery workers connect to the broker after they registered
        start = time.time()
        codes = store_at_once([(node.port, files) for files in studies], NODE_AET, SENDER)
        assert codes == [0] * len(studies), codes
        wait_until(lambda: len(jobs := journal.jobs_in((JobState.DISPATCHED,))) == len(studies) and jobs, 3600, 1,
                   what="every study dispatched")
        sent = max(row.sent for job in journal.jobs_in((JobState.DISPATCHED,)) for row in journal.outbox_for(job.id))
        waits = [job.started - job.created for job in journal.jobs_in((JobState.DISPATCHED,)) if job.started]
        return len(studies) / ((sent - start) / 60), statistics.median(waits)
    finally:
        for process in processes:
            stop_process(process)
        node.stop()
        pacs.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="renalnode-scale-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "renalnode", "phantom", "--out", str(work / "phantoms"), "--cases",
                        str(args.studies), "--seed", "71", "--small"], check=True, capture_output=True)
        studies = [sorted((case / "dicom").glob("*.dcm")) for case in sorted((work / "phantoms").iterdir())]
        postgres, rabbitmq = LocalPostgres().start(), LocalRabbitMQ().start()
        try:
            results = {n: run(n, studies, work, postgres, rabbitmq) for n in args.workers}
        finally:
            rabbitmq.remove()
            postgres.remove()
    baseline = results[args.workers[0]][0]
    print(f"{args.studies} small studies, distributed mode (RabbitMQ, PostgreSQL), no mirroring")
    print(f"{'workers':>7}  {'studies/min':>11}  {'ratio':>5}  {'created -> started (median)':>27}")
    for n, (rate, wait) in results.items():
        print(f"{n:>7}  {rate:>11.2f}  {rate / baseline:>5.2f}  {wait:>25.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
