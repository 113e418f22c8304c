"""Webhook notifications against a real HTTP receiver: delivered with retries, once per event and
once per failing period of a destination, given up after max_attempts, never with the URL's token
in a log line."""
from __future__ import annotations

import logging
import time

import pytest
from conftest import WebhookReceiver
from test_journal import complete_and_enqueue, receive

from deploy.local_services import free_port
from deploy.node.config import NotificationConfig
from deploy.node.journal import JobState, Journal, NotificationState
from deploy.node.metrics import NodeMetrics
from deploy.node.notify import Notifier


@pytest.fixture
def receiver():
    made = []

    def make(failures: int = 0) -> WebhookReceiver:
        made.append(WebhookReceiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(f"sqlite:///{tmp_path / 'journal.sqlite'}", notify=True)


def notifier(journal, tmp_path, url: str, **settings) -> Notifier:
    config = NotificationConfig(webhook_url=url, **{"retry_base_seconds": 1, "timeout_seconds": 5, **settings})
    return Notifier(config, journal, NodeMetrics(journal, tmp_path), ["pacs"], "RENALNODE", "http://dash.example")


def series_with_job(journal: Journal, uid: str) -> int:
    receive(journal, uid, f"{uid}.1")
    return complete_and_enqueue(journal, uid)


def test_quarantine_and_failed_job_are_delivered_after_retries(journal, receiver, tmp_path):
    hook = receiver(failures=2)
    series_with_job(journal, "1.1")
    journal.finish(journal.claim().id, JobState.QUARANTINED, "no CT series with at least 20 slices")
    series_with_job(journal, "1.2")
    journal.finish(journal.claim().id, JobState.FAILED, "RuntimeError: out of memory (attempt 3 of 3)")
    sender = notifier(journal, tmp_path, hook.url)
    now = time.time()
    for _ in range(6):        # two refusals, each followed by a back-off, then both delivered
        sender.step(now)
        now += 60
    assert sorted(b["event"] for b in hook.bodies) == ["job.failed", "job.quarantined"]
    quarantined = next(b for b in hook.bodies if b["event"] == "job.quarantined")
    assert quarantined["series_uid"] == "1.1" and quarantined["study_uid"] == "1.2.3"
    assert quarantined["reason"] == "no CT series with at least 20 slices" and quarantined["node"] == "RENALNODE"
    assert quarantined["dashboard"] == f"http://dash.example/jobs/{quarantined['job']}"
    assert [r.state for r in journal.notification_rows()] == [NotificationState.SENT, NotificationState.SENT]
    assert sum(r.attempts for r in journal.notification_rows()) == 4   # 2 refused + 2 delivered
    assert not sender.step(now) and len(hook.bodies) == 2                 # never twice


def test_failing_destination_is_notified_once_per_failing_period(journal, receiver, tmp_path):
    hook = receiver()
    sender = notifier(journal, tmp_path, hook.url, destination_failing_seconds=300)
    job = series_with_job(journal, "1.3")
    journal.claim()
    journal.finish(job, JobState.RESULTS_READY, output="/results/1")
    (row,) = journal.due_dispatches()
    journal.dispatch_failed(row.id, "association with PACS@pacs:104 failed", 0)
    start = time.time()
    sender.step(start + 10)
    assert hook.bodies == []                              # failing, but not yet for long
    sender.step(start + 400)
    sender.step(start + 800)
    (body,) = hook.bodies
    assert body["event"] == "destination.failing" and body["destination"] == "pacs"
    assert body["last_error"] == "association with PACS@pacs:104 failed"
    assert body["dashboard"] == "http://dash.example/destinations"
    journal.dispatched(row.id)                         # it recovers ...
    sender.step(start + 900)
    assert len(hook.bodies) == 1
    job = series_with_job(journal, "1.4")                 # ... and fails again: a new period, a new message
    journal.claim()
    journal.finish(job, JobState.RESULTS_READY, output="/results/2")
    (row,) = journal.due_dispatches()
    journal.dispatch_failed(row.id, "C-STORE refused", 0)
    sender.step(time.time() + 400)
    assert [b["event"] for b in hook.bodies] == ["destination.failing"] * 2 and hook.bodies[1]["last_error"] == (
        "C-STORE refused")


def test_unreachable_webhook_is_given_up_and_its_url_never_logged(journal, tmp_path, caplog):
    url = f"http://127.0.0.1:{free_port()}/hook?token=SECRET-TOKEN"   # nothing listens there
    series_with_job(journal, "1.5")
    journal.finish(journal.claim().id, JobState.QUARANTINED, "MR series")
    sender = notifier(journal, tmp_path, url, max_attempts=3)
    caplog.set_level(logging.INFO, logger="renalnode.node")
    now = time.time()
    for _ in range(5):
        assert sender.step(now) is False
        now += 3600
    (row,) = journal.notification_rows()
    assert row.state == NotificationState.FAILED and row.attempts == 3 and row.last_error == "ConnectionError"
    assert "not delivered after 3 attempts" in caplog.text and "SECRET-TOKEN" not in caplog.text
    scraped = sender.metrics.registry.get_sample_value("renalnode_notifications_total", {"outcome": "failed"})
    assert scraped == 3
