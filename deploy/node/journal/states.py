"""The states the journal records, as enums whose values are the strings stored in its tables (so
databases written before these enums, and the dashboard's CSS classes, keep working)."""
from __future__ import annotations

from enum import StrEnum


class SeriesState(StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"
    QUEUED = "queued"              # handed to a job, whatever became of the job since
    QUARANTINED = "quarantined"    # not routable, or its job failed or was quarantined


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RESULTS_READY = "results_ready"
    DISPATCHED = "dispatched"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    SUPERSEDED = "superseded"      # a newer job of its series took over
    RETRIED = "retried"            # an operator retried it: a new job took its place


class DispatchState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    SUPERSEDED = "superseded"      # a newer job's results replace these


class NotificationState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"              # given up after the configured attempts
