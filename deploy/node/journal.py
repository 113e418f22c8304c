"""The journal: the one source of truth for what the node received and did (DESIGN.md).

SQLAlchemy Core over SQLite (WAL) by default; a PostgreSQL URL is a configuration change. Every
state change is one transaction, so after a crash the journal says exactly where each series,
job and dispatch stood.

Series:  receiving -> complete -> queued (its job is made) | quarantined (with reason)
Jobs:    queued -> running -> results_ready -> dispatched
                            -> queued again (failed attempt, under max_attempts) | failed | quarantined
Outbox:  one row per (job, destination): pending -> sent, with attempts, last error and the next
         attempt time (exponential back-off).
The hand-off to the worker is three calls (enqueue, claim, finish) so that another queue can
take its place when the node scales out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import (Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        create_engine, event, func, insert, select, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

metadata = MetaData()

series = Table(
    "series", metadata,
    Column("series_uid", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("modality", String(16), nullable=False, default=""),
    Column("body_part", String(64), nullable=False, default=""),
    Column("series_description", String(128), nullable=False, default=""),
    Column("study_description", String(128), nullable=False, default=""),
    Column("calling_aet", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("instances", Integer, nullable=False, default=0),
    Column("open_associations", Integer, nullable=False, default=0),
    Column("first_received", Float, nullable=False),
    Column("last_received", Float, nullable=False),
)
instances = Table(
    "instances", metadata,
    Column("sop_uid", String(64), primary_key=True),
    Column("series_uid", String(64), ForeignKey("series.series_uid"), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("received", Float, nullable=False),
)
jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_uid", String(64), ForeignKey("series.series_uid"), nullable=False, index=True),
    Column("destinations", Text, nullable=False),   # comma-separated destination names
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=False, default=""),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("finished", Float),
    Column("output", Text, nullable=False, default=""),  # folder of the result objects
)
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False, index=True),
    Column("destination", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("sent", Float),
    UniqueConstraint("job_id", "destination"),
)

RECEIVING, COMPLETE, QUEUED, QUARANTINED = "receiving", "complete", "queued", "quarantined"
RUNNING, RESULTS_READY, DISPATCHED, FAILED = "running", "results_ready", "dispatched", "failed"
SUPERSEDED, RETRIED = "superseded", "retried"  # a newer job took over; an operator retried it
PENDING, SENT = "pending", "sent"


def _sqlite_pragmas(connection, _record):
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@dataclass(frozen=True)
class Job:
    id: int
    series_uid: str
    destinations: tuple[str, ...]
    attempts: int
    output: str


class Journal:
    def __init__(self, url: str):
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    # --- listener -------------------------------------------------------------------------------
    def record_instance(self, sop_uid: str, series_uid: str, study_uid: str, path: str, calling_aet: str,
                        facts: dict[str, str], now: float | None = None) -> None:
        """A stored instance. A series that had finished receiving starts receiving again: late
        instances are processed with the rest, never dropped (the rerun writes the same UIDs)."""
        now = now or time.time()
        with self.engine.begin() as db:
            # Two associations may bring the first instances of one series at once: insert-or-ignore.
            db.execute(self._insert_ignore(series).values(
                series_uid=series_uid, study_uid=study_uid, calling_aet=calling_aet, state=RECEIVING,
                first_received=now, last_received=now, instances=0, open_associations=0, reason="", **facts))
            db.execute(self._insert_ignore(instances).values(sop_uid=sop_uid, series_uid=series_uid, path=path,
                                                              received=now))
            # A series reopened by a late instance starts a new receiving period (and maximum wait).
            db.execute(update(series).where(series.c.series_uid == series_uid, series.c.state != RECEIVING)
                       .values(first_received=now))
            db.execute(update(series).where(series.c.series_uid == series_uid).values(
                state=RECEIVING, reason="", last_received=now,
                instances=select(func.count()).select_from(instances)
                .where(instances.c.series_uid == series_uid).scalar_subquery()))

    def _insert_ignore(self, table: Table):
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"journal database {dialect} is not supported (SQLite or PostgreSQL)")
        module = sqlite if dialect == "sqlite" else postgresql
        return module.insert(table).on_conflict_do_nothing()

    def association_opened(self, series_uid: str) -> None:
        with self.engine.begin() as db:
            db.execute(update(series).where(series.c.series_uid == series_uid)
                       .values(open_associations=series.c.open_associations + 1))

    def association_closed(self, series_uids: set[str]) -> None:
        with self.engine.begin() as db:
            for uid in series_uids:
                db.execute(update(series).where(series.c.series_uid == uid).values(
                    open_associations=func.max(series.c.open_associations - 1, 0)
                    if self.engine.dialect.name == "sqlite" else func.greatest(series.c.open_associations - 1, 0)))

    def reset_open_associations(self) -> None:
        """At start: no association survives a restart."""
        with self.engine.begin() as db:
            db.execute(update(series).where(series.c.open_associations != 0).values(open_associations=0))

    # --- completion -----------------------------------------------------------------------------
    def receiving_series(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(series).where(series.c.state == RECEIVING))]

    def series_row(self, series_uid: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(select(series).where(series.c.series_uid == series_uid)).first()
            return dict(row._mapping) if row else None

    def instance_paths(self, series_uid: str) -> list[str]:
        with self.engine.connect() as db:
            return [r.path for r in db.execute(select(instances.c.path).where(instances.c.series_uid == series_uid))]

    def mark_complete(self, series_uid: str, last_received: float) -> bool:
        """Complete, unless an instance arrived since the caller looked (then it is still receiving)."""
        with self.engine.begin() as db:
            return db.execute(update(series).where(series.c.series_uid == series_uid, series.c.state == RECEIVING,
                                                   series.c.last_received == last_received)
                              .values(state=COMPLETE)).rowcount == 1

    def complete_series(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(series).where(series.c.state == COMPLETE))]

    def enqueue(self, series_uid: str, destinations: tuple[str, ...], state: str = QUEUED, reason: str = "",
                now: float | None = None) -> int | None:
        """A complete series gets its job: queued to run, or quarantined at once (not routable). Older
        queued jobs and unsent results of the series are superseded: only the newest, complete series
        may reach the destinations. None when the series is no longer complete (an instance arrived)."""
        with self.engine.begin() as db:
            if not db.execute(update(series).where(series.c.series_uid == series_uid, series.c.state == COMPLETE)
                              .values(state=state, reason=reason)).rowcount:
                return None
            older = select(jobs.c.id).where(jobs.c.series_uid == series_uid)
            db.execute(update(jobs).where(jobs.c.series_uid == series_uid, jobs.c.state == QUEUED)
                       .values(state=SUPERSEDED))
            db.execute(update(outbox).where(outbox.c.job_id.in_(older), outbox.c.state == PENDING)
                       .values(state=SUPERSEDED))
            return db.execute(insert(jobs).values(series_uid=series_uid, destinations=",".join(destinations),
                                                  state=state, attempts=0, reason=reason, output="",
                                                  created=now or time.time())).inserted_primary_key[0]

    # --- worker ---------------------------------------------------------------------------------
    def claim(self) -> Job | None:
        """The oldest queued job, now running (one transaction, so two workers never share one)."""
        with self.engine.begin() as db:
            row = db.execute(select(jobs).where(jobs.c.state == QUEUED).order_by(jobs.c.id).limit(1)).first()
            if row is None:
                return None
            claimed = db.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == QUEUED).values(
                state=RUNNING, started=time.time(), attempts=jobs.c.attempts + 1)).rowcount
            if not claimed:
                return None
            return Job(row.id, row.series_uid, tuple(d for d in row.destinations.split(",") if d), row.attempts + 1,
                       row.output)

    def finish(self, job_id: int, state: str, reason: str = "", output: str = "") -> None:
        """A job's result: results ready (outbox rows made), or failed, quarantined, or queued again.
        A job overtaken by a newer one of its series (late instances) never sends and never
        quarantines the series: the newer job speaks for it."""
        now = time.time()
        with self.engine.begin() as db:
            job = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            newer = db.execute(select(jobs.c.id).where(jobs.c.series_uid == job.series_uid,
                                                       jobs.c.id > job_id)).first()
            if state == RESULTS_READY and newer is not None:
                state, reason = SUPERSEDED, f"job {newer.id} took over (more instances arrived)"
            db.execute(update(jobs).where(jobs.c.id == job_id).values(state=state, reason=reason, finished=now,
                                                                      output=output or job.output))
            if state == RESULTS_READY:
                for destination in filter(None, job.destinations.split(",")):
                    exists = db.execute(select(outbox.c.id).where(outbox.c.job_id == job_id,
                                                                  outbox.c.destination == destination)).first()
                    if exists is None:
                        db.execute(insert(outbox).values(job_id=job_id, destination=destination, state=PENDING,
                                                         attempts=0, next_attempt=now, last_error=""))
            if state in (QUARANTINED, FAILED) and newer is None:  # and the series was not reopened meanwhile
                db.execute(update(series).where(series.c.series_uid == job.series_uid, series.c.state == QUEUED)
                           .values(state=QUARANTINED, reason=reason))

    def reclaim_running(self, max_attempts: int) -> int:
        """At start: jobs left running by a crash are queued again (their attempt counted), unless
        they used up their attempts: a study that kills the process must not stop the node for good."""
        reason = f"the node stopped during each of {max_attempts} attempt(s) at this job"
        with self.engine.begin() as db:
            spent = [r.id for r in db.execute(select(jobs.c.id).where(jobs.c.state == RUNNING,
                                                                      jobs.c.attempts >= max_attempts))]
            requeued = db.execute(update(jobs).where(jobs.c.state == RUNNING, jobs.c.attempts < max_attempts)
                                  .values(state=QUEUED)).rowcount
        for job_id in spent:
            self.finish(job_id, QUARANTINED, reason)
        return requeued

    def retry(self, job_id: int) -> None:
        """An operator's retry of a failed or quarantined job: its series is routed again and gets a
        new job with fresh attempts (the old job stays in the journal as it ended)."""
        with self.engine.begin() as db:
            job = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if job is None:
                raise ValueError(f"no job {job_id}")
            if job.state not in (FAILED, QUARANTINED):
                raise ValueError(f"job {job_id} is {job.state}: only failed or quarantined jobs are retried")
            # Routed again from scratch, so that a corrected routing rule or destination applies.
            if not db.execute(update(series).where(series.c.series_uid == job.series_uid,
                                                   series.c.state == QUARANTINED)
                              .values(state=COMPLETE, reason="")).rowcount:
                raise ValueError(f"job {job_id}'s series is no longer quarantined (a newer job or new instances)")
            db.execute(update(jobs).where(jobs.c.id == job_id).values(state=RETRIED))

    # --- dispatcher -----------------------------------------------------------------------------
    def due_dispatches(self, now: float | None = None) -> list[dict]:
        now = now or time.time()
        with self.engine.connect() as db:
            rows = db.execute(select(outbox, jobs.c.output).join(jobs, jobs.c.id == outbox.c.job_id)
                              .where(outbox.c.state == PENDING, outbox.c.next_attempt <= now).order_by(outbox.c.id))
            return [dict(r._mapping) for r in rows]

    def dispatched(self, outbox_id: int) -> None:
        with self.engine.begin() as db:
            db.execute(update(outbox).where(outbox.c.id == outbox_id).values(state=SENT, sent=time.time(),
                                                                           last_error=""))
            job_id = db.execute(select(outbox.c.job_id).where(outbox.c.id == outbox_id)).scalar_one()
            left = db.execute(select(func.count()).select_from(outbox)
                              .where(outbox.c.job_id == job_id, outbox.c.state != SENT)).scalar_one()
            if left == 0:
                db.execute(update(jobs).where(jobs.c.id == job_id).values(state=DISPATCHED))

    def dispatch_failed(self, outbox_id: int, error: str, next_attempt: float) -> None:
        with self.engine.begin() as db:
            db.execute(update(outbox).where(outbox.c.id == outbox_id).values(
                attempts=outbox.c.attempts + 1, last_error=error, next_attempt=next_attempt))

    # --- operators ------------------------------------------------------------------------------
    def recent_jobs(self, limit: int = 20) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(jobs).order_by(jobs.c.id.desc()).limit(limit))]

    def quarantined(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(
                select(series.c.series_uid, series.c.reason, series.c.instances, series.c.calling_aet, jobs.c.id)
                .join(jobs, jobs.c.series_uid == series.c.series_uid)
                .where(series.c.state == QUARANTINED, jobs.c.state.in_((QUARANTINED, FAILED))))]

    def counts(self) -> dict[str, dict[str, int]]:
        with self.engine.connect() as db:
            return {name: {state: n for state, n in db.execute(select(table.c.state, func.count())
                                                              .group_by(table.c.state))}
                    for name, table in (("series", series), ("jobs", jobs), ("outbox", outbox))}

    def outbox_for(self, job_id: int) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(outbox).where(outbox.c.job_id == job_id))]
