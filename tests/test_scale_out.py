"""Distributed mode on real services: RabbitMQ and PostgreSQL started by the test, two nodes behind
one AE title on one journal and spool, three Celery worker processes. Twelve small studies arrive
at either node, one series split across both; a worker is killed with SIGKILL mid-job three times
(and started again, as its service manager would) and a node once. Every study's SEG, SR and PDF
reach Orthanc exactly once, every series' newest job is dispatched, and no job runs to completion
twice."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import pydicom
import pytest
from conftest import newest_jobs_if_dispatched, run_renalnode

from deploy.local_services import (
    NODE_AET,
    ROOT,
    LocalNode,
    free_port,
    stop_process,
    store_at_once,
    wait_until,
)
from deploy.node.journal import JobState, Journal

SENDER = "MODALITY"
STUDIES = 12


@pytest.fixture(scope="module")
def twelve_studies(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale_out_studies")
    run_renalnode("phantom", "--out", str(out), "--cases", str(STUDIES), "--seed", "61", "--small")
    return [sorted((p / "dicom").glob("*.dcm")) for p in sorted(out.iterdir()) if (p / "dicom").is_dir()]


def test_celery_workers_and_two_nodes_deliver_each_study_once(tmp_path, local_orthanc, postgres, rabbitmq,
                                                               twelve_studies):
    pacs = local_orthanc()
    url = postgres.create_database("scale_out")

    def node(name: str) -> LocalNode:
        return LocalNode(tmp_path / name, pacs.dicom_port, free_port(), (SENDER,), sections={
            "node": {"name": name, "spool": str(tmp_path / "spool"), "journal": url, "quiet_seconds": 3.0,
                     "max_wait_seconds": 300, "max_attempts": 5, "mirroring": False},
            "queue": {"broker": rabbitmq.url}})

    a, b = node("node-a").start(), node("node-b").start()
    workers: dict[int, subprocess.Popen] = {}

    def start_worker(slot: int) -> None:
        log = open(tmp_path / f"worker{slot}.log", "ab")
        workers[slot] = subprocess.Popen([sys.executable, "-m", "renalnode", "worker", "--config", str(a.config),
                                          "--slot", str(slot)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    try:
        for slot in range(3):
            start_worker(slot)
        journal = Journal(url)
        wait_until(lambda: len(journal.workers()) == 3, 180, what="three Celery workers to register")
        waiting_since = time.time()  # no task yet: only their heartbeat writes their rows
        wait_until(lambda: all(w.last_seen > waiting_since for w in journal.workers()), 60, 1,
                   what="the idle Celery workers' heartbeat")

        # Half the studies to each node, and the last series split between both, all at once.
        split = twelve_studies[-1]
        batches = [((a if k % 2 else b).port, files) for k, files in enumerate(twelve_studies[:-1])]
        batches += [(a.port, split[0::2]), (b.port, split[1::2])]
        assert store_at_once(batches, NODE_AET, SENDER) == [0] * len(batches)

        killed_jobs = []
        for kill in range(3):
            busy = wait_until(lambda: [w for w in journal.workers() if w.job_id and w.job_id not in killed_jobs],
                              600, 0.2, what=f"a worker running a job (kill {kill + 1})")
            victim = busy[0]
            slot = int(victim.name.rsplit("/", 1)[1])
            workers[slot].send_signal(signal.SIGKILL)
            workers[slot].wait()
            killed_jobs.append(victim.job_id)
            start_worker(slot)
            if kill == 0:
                a.stop(signal.SIGKILL)
                a.start()

        latest = wait_until(lambda: newest_jobs_if_dispatched(journal, STUDIES), 1500, 2,
                            what=f"the newest job of each of the {STUDIES} series dispatched")

        sent_studies = {pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID for files in twelve_studies}
        assert pacs.instances_by_study() == {uid: Counter(SEG=1, SR=1, DOC=1) for uid in sent_studies}  # each once
        uid = pydicom.dcmread(split[0], stop_before_pixels=True).SeriesInstanceUID
        assert journal.series_row(uid).instances == len(split)
        ready = Counter(e.job_id for e in journal.audit_events(5000, event_prefix=f"job.{JobState.RESULTS_READY}"))
        assert max(ready.values()) == 1                                     # no job ran to completion twice
        sent = Counter(e.job_id for e in journal.audit_events(5000, event_prefix="dispatch.sent"))
        assert sent == Counter({job.id: 1 for job in latest.values()})      # each result set sent once
        taken_over = journal.audit_events(5000, event_prefix=f"job.{JobState.RUNNING}")
        assert sum("(taken over)" in e.detail for e in taken_over) >= 1     # a lost worker's task came back
        assert all(journal.job_row(job).state in (JobState.DISPATCHED, JobState.SUPERSEDED) for job in killed_jobs)
    finally:
        for process in workers.values():
            stop_process(process, signal.SIGKILL)
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)

