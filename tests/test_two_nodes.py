"""Two nodes, one service: two `renalnode serve` processes under one AE title on one PostgreSQL
journal and one spool, as behind a hospital's load balancer. Studies arrive at either node, one
series split across both; one node is killed with SIGKILL mid-job and restarted. Every study's
results reach the PACS exactly once and no job runs to completion twice."""
from __future__ import annotations

import signal
from collections import Counter

import pydicom
from conftest import newest_jobs_if_dispatched

from deploy.local_services import NODE_AET, LocalNode, free_port, store_at_once, wait_until
from deploy.node.journal import JobState, Journal

SENDER = "MODALITY"


def test_two_nodes_on_one_journal_deliver_each_study_once(tmp_path, local_orthanc, postgres, phantom_set):
    pacs = local_orthanc()
    url = postgres.create_database("two_nodes")
    spool = tmp_path / "spool"

    def node(name: str) -> LocalNode:
        return LocalNode(tmp_path / name, pacs.dicom_port, free_port(), (SENDER,), sections={"node": {
            "name": name, "spool": str(spool), "journal": url, "quiet_seconds": 3.0, "max_wait_seconds": 300,
            "max_attempts": 3, "mirroring": False}})

    a, b = node("node-a").start(), node("node-b").start()
    try:
        studies = [sorted((p / "dicom").glob("*.dcm")) for p in sorted(phantom_set.iterdir())
                   if (p / "dicom").is_dir()][:4]
        # Two studies to node-a, one to node-b, and one series split between them, all at once.
        batches = [(a.port, studies[0]), (a.port, studies[1]), (b.port, studies[2]),
                   (a.port, studies[3][0::2]), (b.port, studies[3][1::2])]
        assert store_at_once(batches, NODE_AET, SENDER) == [0] * len(batches)

        journal = Journal(url)
        running_on_a = wait_until(lambda: [j for j in journal.jobs_in((JobState.RUNNING,))
                                           if j.worker.startswith("node-a/")], 600, 0.2, what="a job on node-a")
        a.stop(signal.SIGKILL)
        a.start()

        latest = wait_until(lambda: newest_jobs_if_dispatched(journal, 4), 900, 2,
                            what="the newest job of each of the 4 series dispatched")

        sent_studies = {pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID for files in studies}
        assert pacs.instances_by_study() == {uid: Counter(SEG=1, SR=1, DOC=1) for uid in sent_studies}  # each once
        split = pydicom.dcmread(studies[3][0], stop_before_pixels=True).SeriesInstanceUID
        assert journal.series_row(split).instances == len(studies[3])      # one series, from both nodes
        others = [j for j in journal.recent_jobs(100) if j.id not in {job.id for job in latest.values()}]
        assert all(j.state == JobState.SUPERSEDED for j in others)
        ready = Counter(e.job_id for e in journal.audit_events(1000, event_prefix=f"job.{JobState.RESULTS_READY}"))
        assert max(ready.values()) == 1                                     # no job ran to completion twice
        sent = Counter(e.job_id for e in journal.audit_events(1000, event_prefix="dispatch.sent"))
        assert sent == Counter({job.id: 1 for job in latest.values()})      # each result set sent once
        killed = journal.job_row(running_on_a[0].id)
        assert killed.attempts >= 2 or killed.state == JobState.SUPERSEDED
        assert {job.worker.split("/")[0] for job in journal.recent_jobs(100)} == {"node-a", "node-b"}
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)
