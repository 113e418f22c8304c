"""The journal's state machine, which the node's crash safety rests on: late instances, superseded
jobs, reclaimed jobs, retries, concurrent first instances."""
from __future__ import annotations

import threading

import pytest

from deploy.node import journal as j
from deploy.node.journal import Journal

FACTS = {"modality": "CT", "body_part": "ABDOMEN", "series_description": "", "study_description": ""}


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(f"sqlite:///{tmp_path / 'journal.sqlite'}")


def receive(journal: Journal, series: str, *sops: str, now: float = 100.0) -> None:
    for sop in sops:
        journal.record_instance(sop, series, "1.2.3", f"/spool/{sop}.dcm", "CT1", FACTS, now=now)


def complete_and_enqueue(journal: Journal, series: str) -> int:
    row = journal.series_row(series)
    assert journal.mark_complete(series, row["last_received"])
    return journal.enqueue(series, ("pacs",))


def test_late_instance_reopens_the_series_and_supersedes_older_work(journal):
    receive(journal, "1.9", "1.9.1", "1.9.2")
    first = complete_and_enqueue(journal, "1.9")
    claimed = journal.claim()
    assert claimed.id == first and claimed.attempts == 1
    receive(journal, "1.9", "1.9.3", now=500.0)                # arrives while job 1 runs
    row = journal.series_row("1.9")
    assert row["state"] == j.RECEIVING and row["instances"] == 3 and row["first_received"] == 500.0
    second = complete_and_enqueue(journal, "1.9")
    journal.finish(first, j.RESULTS_READY, output="/results/1")  # the partial job ends after the new one exists
    states = {job["id"]: job["state"] for job in journal.recent_jobs()}
    assert states == {first: j.SUPERSEDED, second: j.QUEUED}
    assert journal.outbox_for(first) == []                       # stale results are never sent
    journal.finish(journal.claim().id, j.RESULTS_READY, output="/results/2")
    assert [row["destination"] for row in journal.due_dispatches(now=10 ** 10)] == ["pacs"]


def test_completion_loses_to_a_new_instance(journal):
    receive(journal, "1.8", "1.8.1")
    seen = journal.series_row("1.8")["last_received"]
    receive(journal, "1.8", "1.8.2", now=200.0)
    assert not journal.mark_complete("1.8", seen)
    assert journal.series_row("1.8")["state"] == j.RECEIVING


def test_reclaim_after_crash_requeues_or_quarantines_spent_jobs(journal):
    receive(journal, "1.7", "1.7.1")
    receive(journal, "1.6", "1.6.1")
    once, spent = complete_and_enqueue(journal, "1.7"), complete_and_enqueue(journal, "1.6")
    journal.claim()
    journal.claim()
    journal.finish(spent, j.QUEUED, "crash")                     # job 2: back in the queue after attempt 1 ...
    journal.claim()                                              # ... and running its second attempt
    assert journal.reclaim_running(max_attempts=2) == 1
    states = {job["id"]: (job["state"], job["reason"]) for job in journal.recent_jobs()}
    assert states[once][0] == j.QUEUED
    assert states[spent] == (j.FAILED, "the node stopped during each of 2 attempt(s) at this job")
    assert journal.series_row("1.6")["state"] == j.QUARANTINED


def test_retry_once_and_only_from_quarantine(journal):
    receive(journal, "1.5", "1.5.1")
    job = complete_and_enqueue(journal, "1.5")
    with pytest.raises(ValueError, match="only failed or quarantined"):
        journal.retry(job)
    journal.finish(journal.claim().id, j.QUARANTINED, "too few slices")
    assert [row["id"] for row in journal.quarantined()] == [job]
    journal.retry(job)
    assert journal.series_row("1.5")["state"] == j.COMPLETE and journal.quarantined() == []
    with pytest.raises(ValueError, match="only failed or quarantined"):
        journal.retry(job)


def test_first_instances_of_one_series_from_concurrent_associations(journal):
    errors = []

    def send(prefix: str):
        try:
            receive(journal, "1.4", *(f"1.4.{prefix}.{n}" for n in range(10)))
        except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(str(t),)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert journal.series_row("1.4")["instances"] == 40
