"""The journal's state machine, which the node's crash safety rests on: late instances, superseded
jobs, reclaimed jobs, retries, concurrent first instances; each test on SQLite and on a real
PostgreSQL server (the `journal_url` fixture)."""
from __future__ import annotations

import threading
import time

import pytest
from conftest import run_renalnode

from deploy.node.journal import DispatchState, JobState, Journal, NotificationState, SeriesState, retry_delay

FACTS = {"modality": "CT", "body_part": "ABDOMEN", "series_description": "", "study_description": ""}


@pytest.fixture
def journal(journal_url) -> Journal:
    return Journal(journal_url())


def receive(journal: Journal, series: str, *sops: str, now: float = 100.0) -> None:
    for sop in sops:
        journal.record_instance(sop, series, "1.2.3", f"/spool/{sop}.dcm", "CT1", FACTS, now=now)


def complete_and_enqueue(journal: Journal, series: str) -> int:
    row = journal.series_row(series)
    assert journal.mark_complete(series, row.last_received)
    return journal.enqueue(series, ("pacs",))


def test_late_instance_reopens_the_series_and_supersedes_older_work(journal):
    receive(journal, "1.9", "1.9.1", "1.9.2")
    first = complete_and_enqueue(journal, "1.9")
    claimed = journal.claim()
    assert claimed.id == first and claimed.attempts == 1
    receive(journal, "1.9", "1.9.3", now=500.0)                # arrives while job 1 runs
    row = journal.series_row("1.9")
    assert row.state == SeriesState.RECEIVING and row.instances == 3 and row.first_received == 500.0
    second = complete_and_enqueue(journal, "1.9")
    journal.finish(first, JobState.RESULTS_READY, output="/results/1")  # the partial job ends after the new one exists
    states = {job.id: job.state for job in journal.recent_jobs()}
    assert states == {first: JobState.SUPERSEDED, second: JobState.QUEUED}
    assert journal.outbox_for(first) == []                       # stale results are never sent
    journal.finish(journal.claim().id, JobState.RESULTS_READY, output="/results/2")
    assert [(row.destination, row.output) for row in journal.due_dispatches(now=10 ** 10)] == [("pacs", "/results/2")]


def test_completion_loses_to_a_new_instance(journal):
    receive(journal, "1.8", "1.8.1")
    seen = journal.series_row("1.8").last_received
    receive(journal, "1.8", "1.8.2", now=200.0)
    assert not journal.mark_complete("1.8", seen)
    assert journal.series_row("1.8").state == SeriesState.RECEIVING


def test_reclaim_after_crash_requeues_or_quarantines_spent_jobs(journal):
    receive(journal, "1.7", "1.7.1")
    receive(journal, "1.6", "1.6.1")
    once, spent = complete_and_enqueue(journal, "1.7"), complete_and_enqueue(journal, "1.6")
    journal.claim()
    journal.claim()
    journal.finish(spent, JobState.QUEUED, "crash")                     # job 2: back in the queue after attempt 1 ...
    journal.claim()                                              # ... and running its second attempt
    assert journal.reclaim_running(max_attempts=2) == 1
    states = {job.id: (job.state, job.reason) for job in journal.recent_jobs()}
    assert states[once][0] == JobState.QUEUED
    assert states[spent] == (JobState.FAILED, "the node stopped during each of 2 attempt(s) at this job")
    assert journal.series_row("1.6").state == SeriesState.QUARANTINED


def test_retry_once_and_only_from_quarantine(journal):
    receive(journal, "1.5", "1.5.1")
    job = complete_and_enqueue(journal, "1.5")
    with pytest.raises(ValueError, match="only failed or quarantined"):
        journal.retry(job)
    journal.finish(journal.claim().id, JobState.QUARANTINED, "too few slices")
    assert [row.job_id for row in journal.quarantined()] == [job]
    journal.retry(job)
    assert journal.series_row("1.5").state == SeriesState.COMPLETE and journal.quarantined() == []
    with pytest.raises(ValueError, match="only failed or quarantined"):
        journal.retry(job)


def test_first_instances_of_one_series_from_concurrent_associations(journal):
    errors = []

    def send(prefix: str):
        try:
            receive(journal, "1.4", *(f"1.4.{prefix}.{n}" for n in range(10)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(str(t),)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert journal.series_row("1.4").instances == 80


def test_audit_log_follows_a_job_and_answers_renalnode_status(journal, tmp_path):
    receive(journal, "1.7", "1.7.1", "1.7.2")
    job = complete_and_enqueue(journal, "1.7")
    journal.claim()
    journal.finish(job, JobState.RESULTS_READY, output="/results/7")
    (row,) = journal.due_dispatches()
    journal.dispatch_failed(row.id, "association with PACS failed", 0)
    journal.dispatched(row.id, "3 object(s)")
    events = [e.event for e in reversed(journal.audit_events(series_uid="1.7"))]
    assert events == ["series.complete", "job.queued", "job.running", "job.results_ready", "dispatch.failed",
                      "dispatch.sent", "job.dispatched"]
    assert [e.event for e in journal.audit_events(event_prefix="dispatch")] == ["dispatch.sent", "dispatch.failed"]
    assert {e.job_id for e in journal.audit_events(job_id=job)} == {job}
    assert [row.state for row in journal.outbox_for(job)] == [DispatchState.SENT]
    assert journal.job_row(job).state == JobState.DISPATCHED
    status = journal.destination_status(["pacs", "web"])
    assert status["pacs"].last_success >= status["pacs"].last_failure and status["pacs"].failing_since is None
    assert status["pacs"].last_error == "association with PACS failed" and status["web"].last_success is None

    config = tmp_path / "node.yaml"
    config.write_text("listener: {allowed_calling_aets: [CT1]}\n"
                      f"node: {{journal: '{journal.engine.url.render_as_string(hide_password=False)}'}}\n")
    printed = run_renalnode("status", "--config", str(config), "--job", str(job)).stdout
    assert [line.split()[2] for line in printed.splitlines()][::-1] == events[1:]
    assert "dispatch.failed      job 1 series 1.7 to pacs  association with PACS failed" in printed


def test_journal_notifications_only_when_asked(journal_url):
    quiet = Journal(journal_url())
    noisy = Journal(journal_url(), notify=True)
    for journal in (quiet, noisy):
        receive(journal, "1.8", "1.8.1")
        row = journal.series_row("1.8")
        journal.mark_complete("1.8", row.last_received)
        journal.enqueue("1.8", (), JobState.QUARANTINED, "no routing rule matches")
    assert quiet.notification_rows() == []
    (note,) = noisy.notification_rows()
    assert note.event == "job.quarantined" and note.state == NotificationState.PENDING
    assert '"series_uid": "1.8"' in note.payload and "no routing rule matches" in note.payload


def test_an_overtaken_job_never_quarantines_nor_notifies(journal_url):
    journal = Journal(journal_url(), notify=True)
    receive(journal, "1.10", "1.10.1")
    first = complete_and_enqueue(journal, "1.10")
    journal.claim()
    receive(journal, "1.10", "1.10.2", now=500.0)        # more instances while it runs
    second = complete_and_enqueue(journal, "1.10")
    assert journal.finish(first, JobState.QUARANTINED, "too few slices") == JobState.SUPERSEDED
    assert journal.series_row("1.10").state == SeriesState.QUEUED and journal.notification_rows() == []
    assert journal.quarantined() == [] and journal.job_row(second).state == JobState.QUEUED


def test_a_destination_stops_failing_when_nothing_waits_for_it(journal):
    receive(journal, "1.11", "1.11.1")
    job = complete_and_enqueue(journal, "1.11")
    journal.claim()
    journal.finish(job, JobState.RESULTS_READY, output="/results/11")
    (row,) = journal.due_dispatches()
    journal.dispatch_failed(row.id, "refused", 0)
    assert journal.destination_status(["pacs"])["pacs"].failing_since is not None
    receive(journal, "1.11", "1.11.2", now=900.0)        # a late instance: the unsent results are superseded
    complete_and_enqueue(journal, "1.11")
    assert [row.state for row in journal.outbox_for(job)] == [DispatchState.SUPERSEDED]
    status = journal.destination_status(["pacs"])["pacs"]
    assert status.failing_since is None and status.last_error == "refused"


def test_a_job_the_node_died_in_too_often_fails_and_notifies(journal_url):
    journal = Journal(journal_url(), notify=True)
    receive(journal, "1.12", "1.12.1")
    job = complete_and_enqueue(journal, "1.12")
    journal.claim()
    assert journal.reclaim_running(max_attempts=1) == 0
    (note,) = journal.notification_rows()
    assert note.event == "job.failed" and f'"job": {job}' in note.payload
    assert [e.event for e in journal.audit_events(job_id=job)][0] == "job.failed"


def test_states_are_stored_as_the_strings_of_their_enums(journal):
    """Databases written before the enums, and the dashboard's CSS classes, use these strings."""
    from sqlalchemy import select

    from deploy.node.journal.schema import jobs, series

    receive(journal, "1.13", "1.13.1")
    job = complete_and_enqueue(journal, "1.13")
    claimed = journal.claim()
    assert claimed == journal.job_row(job) and claimed.state == JobState.RUNNING and claimed.started is not None
    assert claimed.destinations == ("pacs",) and claimed.attempts == 1
    with journal.engine.connect() as db:
        stored = (db.execute(select(series.c.state)).scalar_one(), db.execute(select(jobs.c.state)).scalar_one())
    assert stored == ("queued", "running") and type(stored[1]) is str
    assert [state.value for state in JobState] == ["queued", "running", "results_ready", "dispatched", "failed",
                                                   "quarantined", "superseded", "retried"]


def test_retry_delay_doubles_up_to_its_maximum():
    assert [retry_delay(n, 5, 600) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert retry_delay(10 ** 6, 5, 600) == 600


def test_what_was_new_is_told_on_every_database(journal_url):
    """The first instance of a series, a resent instance, and one notification per failing period:
    answers that rest on whether an insert-or-ignore inserted (PostgreSQL's driver has no row count)."""
    journal = Journal(journal_url(), notify=True)
    first, second, resent = (journal.record_instance(sop, "1.5", "1.2.3", f"/spool/{sop}.dcm", "CT1", FACTS)
                             for sop in ("1.5.1", "1.5.2", "1.5.1"))
    assert (first, second, resent) == (True, False, False)
    assert journal.series_row("1.5").instances == 2
    assert journal.notify_destination_failing("pacs", 100.0, "refused") is True
    assert journal.notify_destination_failing("pacs", 100.0, "refused") is False
    assert len(journal.notification_rows()) == 1


def test_nodes_sharing_a_journal_claim_sends_and_reclaim_only_their_own_jobs(journal_url):
    """Two nodes on one journal: one outbox row and one notification are sent by one node only; a
    restarted node makes its own claims due at once and requeues only its own workers' jobs."""
    journal = Journal(journal_url(), notify=True)
    for uid in ("1.14", "1.15", "1.16"):
        receive(journal, uid, f"{uid}.1")
        complete_and_enqueue(journal, uid)
    a_job, b_job = journal.claim("node-a/0"), journal.claim("node-b/0")
    journal.finish(a_job.id, JobState.RESULTS_READY, output="/results/a")
    (row,) = journal.due_dispatches()
    assert journal.claim_dispatch(row.id, "node-a") and not journal.claim_dispatch(row.id, "node-b")
    assert journal.due_dispatches() == []                                  # claimed: due for nobody
    journal.notify_destination_failing("pacs", 100.0, "refused")
    (note,) = journal.due_notifications()
    assert journal.claim_notification(note.id, "node-b") and not journal.claim_notification(note.id, "node-a")

    journal.release_claims("node-b")                                        # node-b restarts
    assert journal.due_dispatches() == [] and [n.id for n in journal.due_notifications()] == [note.id]
    assert journal.reclaim_running(max_attempts=3, node="node-b") == 1
    assert journal.job_row(b_job.id).state == JobState.QUEUED and journal.job_row(a_job.id).state \
        == JobState.RESULTS_READY
    journal.release_claims("node-a")
    (again,) = journal.due_dispatches()
    assert again.id == row.id and again.claimed_by == ""
    journal.dispatched(row.id, "3 object(s)")
    assert [r.state for r in journal.outbox_for(a_job.id)] == [DispatchState.SENT]


def test_a_heartbeat_keeps_the_job_and_count_of_a_worker(journal):
    journal.worker_started("host/0", "host", "cpu", 4242)
    receive(journal, "1.2.10", "1.2.10.1")
    job = complete_and_enqueue(journal, "1.2.10")
    journal.worker_seen("host/0", job)
    before = journal.workers()[0]
    time.sleep(0.01)
    journal.worker_alive("host/0")
    (after,) = journal.workers()
    assert after.last_seen > before.last_seen
    assert (after.job_id, after.jobs_done, after.started) == (job, 0, before.started)
