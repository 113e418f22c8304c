"""The journal: the one source of truth for what the node received and did (DESIGN.md).

SQLAlchemy Core over SQLite (WAL) by default; a PostgreSQL URL is a configuration change. Every
state change is one transaction, so after a crash the journal says exactly where each series,
job and dispatch stood. States are enums (states.py), rows frozen dataclasses (rows.py), tables in
schema.py; `Journal` is the one object callers hold, made of one part per concern:

Series (receiving.py):  receiving -> complete -> queued (its job is made) | quarantined (with reason)
Jobs (job_queue.py):    queued -> running -> results_ready -> dispatched
                                -> queued again (failed attempt, under max_attempts) | failed | quarantined
Outbox (dispatch_outbox.py): one row per (job, destination): pending -> sent, with attempts, last
         error and the next attempt time (exponential back-off, backoff.py).
Audit (audit_trail.py): every association, stored instance count, job state change, dispatch and
         operator action, written in the same transaction as the change it records; UIDs, never
         patient data.
Workers (worker_registry.py): one row per worker (host, device, current job, jobs done, last seen);
         a job records the worker that holds it, so a dead worker's job is queued again.
Notifications (notification_queue.py): webhook messages (quarantined series, failed job, failing
         destination) waiting to be delivered, made in the transaction of their event so that none
         is lost (deploy/node/notify.py).
The hand-off to the worker is three calls (enqueue, claim, finish) so that another queue can
take its place when the node scales out.
"""
from __future__ import annotations

from deploy.node.journal.backoff import retry_delay
from deploy.node.journal.dispatch_outbox import DispatchOutbox
from deploy.node.journal.job_queue import JobQueue
from deploy.node.journal.receiving import Receiving
from deploy.node.journal.states import DispatchState, JobState, NotificationState, SeriesState
from deploy.node.journal.worker_registry import WorkerRegistry

# What callers import from here; the rows' classes are in deploy.node.journal.rows.
__all__ = ["Journal", "retry_delay", "SeriesState", "JobState", "DispatchState", "NotificationState"]


class Journal(Receiving, JobQueue, DispatchOutbox, WorkerRegistry):
    """Series, jobs, outbox, audit log and notifications over one database (see the module's docstring)."""
