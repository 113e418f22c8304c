"""Worker processes on one machine (`[workers] count`): two processes share the journal's queue, a
worker killed with SIGKILL mid-job has its job queued again and is restarted, every study's results
arrive once, and no worker outlives its node, whether it is stopped or killed."""
from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

from conftest import run_renalnode

from deploy.local_services import NODE_AET, LocalNode, free_port, wait_until
from deploy.node.journal import JobState, Journal

SENDER = "MODALITY"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\tZ" not in next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except FileNotFoundError:
        return False


def test_worker_processes_share_the_queue_and_a_killed_one_is_replaced(tmp_path, local_orthanc, phantom_set):
    pacs = local_orthanc()
    node = LocalNode(tmp_path / "node", pacs.dicom_port, free_port(), (SENDER,),
                     sections={"workers": {"count": 2}}).start()
    try:
        journal = Journal(node.journal_url)
        wait_until(lambda: len(journal.workers()) == 2, 120, what="two worker processes to register")
        cases = sorted(p / "dicom" for p in phantom_set.iterdir() if (p / "dicom").is_dir())[:4]
        senders = [subprocess.Popen(["/usr/bin/storescu", "-aet", SENDER, "-aec", NODE_AET, "+sd", "+r", "127.0.0.1",
                                     str(node.port), str(case)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for case in cases]
        assert [sender.wait(300) for sender in senders] == [0, 0, 0, 0]

        busy = wait_until(lambda: [w for w in journal.workers() if w.job_id], 300, 0.2, what="a worker to run a job")
        victim = busy[0]
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(lambda: [j.state for j in journal.recent_jobs()] == [JobState.DISPATCHED] * 4, 900, 2,
                   what="four dispatched jobs")

        found = pacs.series_by_modality()
        assert {m: len(found.get(m, [])) for m in ("SEG", "SR", "DOC")} == {"SEG": 4, "SR": 4, "DOC": 4}
        assert all(len(series["Instances"]) == 1 for m in ("SEG", "SR", "DOC") for series in found[m])
        jobs = journal.recent_jobs()
        assert len({job.worker for job in jobs}) == 2                      # both processes took jobs
        killed_job = journal.job_row(victim.job_id)
        assert killed_job.attempts == 2 and killed_job.state == JobState.DISPATCHED
        ready = Counter(e.job_id for e in journal.audit_events(1000, event_prefix=f"job.{JobState.RESULTS_READY}"))
        assert sorted(ready.values()) == [1, 1, 1, 1]                       # no job ran to completion twice
        assert [e.detail for e in journal.audit_events(event_prefix="worker.exited")] == [
            f"{victim.name}: exit status -9, 1 job(s) queued again"]
        restarted = {w.name: w for w in journal.workers()}[victim.name]
        assert restarted.pid != victim.pid and alive(restarted.pid)
        status = run_renalnode("status", "--config", str(node.config)).stdout
        assert sum(line.startswith("worker ") for line in status.splitlines()) == 2

        pids = [w.pid for w in journal.workers()]
        node.stop(signal.SIGKILL)                                           # no worker outlives its node
        wait_until(lambda: not any(alive(pid) for pid in pids), 30, what="the worker processes to end")
    finally:
        node.stop(signal.SIGKILL)
