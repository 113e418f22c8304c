"""The journal's rows as its callers get them: frozen dataclasses with their states as enums, built
from a database row by `from_db`. Field names are the column names, so Jinja's `row.x` and Python's
`row.x` read alike."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sqlalchemy.engine import Row

from deploy.node.journal.states import DispatchState, JobState, NotificationState, SeriesState


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    study_uid: str
    modality: str
    body_part: str
    series_description: str
    study_description: str
    calling_aet: str
    state: SeriesState
    reason: str
    instances: int
    open_associations: int
    first_received: float
    last_received: float

    @classmethod
    def from_db(cls, row: Row) -> Self:
        return cls(**{**row._mapping, "state": SeriesState(row.state)})


@dataclass(frozen=True)
class JobRow:
    id: int
    series_uid: str
    destinations: tuple[str, ...]
    state: JobState
    attempts: int
    reason: str
    created: float
    started: float | None
    finished: float | None
    output: str
    worker: str          # the worker that holds it (running) or ran it last
    published: float | None  # handed to the broker (distributed mode)

    @classmethod
    def from_db(cls, row: Row) -> Self:
        return cls(**{**row._mapping, "state": JobState(row.state),
                      "destinations": tuple(name for name in row.destinations.split(",") if name)})


@dataclass(frozen=True)
class OutboxRow:
    """One job's result objects for one destination."""
    id: int
    job_id: int
    destination: str
    state: DispatchState
    attempts: int
    next_attempt: float
    last_error: str
    sent: float | None
    claimed_by: str      # the node sending it now (its claim lasts until next_attempt)

    @classmethod
    def from_db(cls, row: Row) -> Self:
        return cls(**{**row._mapping, "state": DispatchState(row.state)})


@dataclass(frozen=True)
class DueDispatch(OutboxRow):
    """An outbox row whose next attempt is due, with the folder of its job's result objects."""
    output: str


@dataclass(frozen=True)
class AuditEvent:
    id: int
    time: float
    event: str
    series_uid: str
    job_id: int | None
    destination: str
    detail: str


@dataclass(frozen=True)
class NotificationRow:
    id: int
    key: str
    event: str
    payload: str         # the JSON body
    state: NotificationState
    attempts: int
    next_attempt: float
    last_error: str
    created: float
    claimed_by: str      # the node delivering it now (its claim lasts until next_attempt)

    @classmethod
    def from_db(cls, row: Row) -> Self:
        return cls(**{**row._mapping, "state": NotificationState(row.state)})


@dataclass(frozen=True)
class QuarantinedSeries:
    """A quarantined series with the job an operator may retry."""
    job_id: int
    series_uid: str
    calling_aet: str
    instances: int
    reason: str


@dataclass(frozen=True)
class WorkerRow:
    name: str            # host/slot
    host: str
    device: str          # cpu, cuda:0, ...
    pid: int
    job_id: int | None   # the job it runs now
    jobs_done: int
    started: float       # when this process started
    last_seen: float


@dataclass(frozen=True)
class DestinationStatus:
    last_success: float | None    # time of the last dispatch that succeeded
    last_failure: float | None
    last_error: str               # of the last failure
    failing_since: float | None   # its first failure after its last success, while something waits for it
