"""The journal: the one source of truth for what the node received and did (DESIGN.md).

SQLAlchemy Core over SQLite (WAL) by default; a PostgreSQL URL is a configuration change. Every
state change is one transaction, so after a crash the journal says exactly where each series,
job and dispatch stood.

Series:  receiving -> complete -> queued (its job is made) | quarantined (with reason)
Jobs:    queued -> running -> results_ready -> dispatched
                            -> queued again (failed attempt, under max_attempts) | failed | quarantined
Outbox:  one row per (job, destination): pending -> sent, with attempts, last error and the next
         attempt time (exponential back-off).
Audit:   every association, stored instance count, job state change, dispatch and operator action,
         written in the same transaction as the change it records; UIDs, never patient data.
Notifications: webhook messages (quarantined series, failed job, failing destination) waiting to be
         delivered, made in the transaction of their event so that none is lost (deploy/node/notify.py).
The hand-off to the worker is three calls (enqueue, claim, finish) so that another queue can
take its place when the node scales out.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
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

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("event", String(32), nullable=False, index=True),
    Column("series_uid", String(64), nullable=False, default="", index=True),
    Column("job_id", Integer, index=True),
    Column("destination", String(64), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Index("audit_by_destination", "destination", "event", "id"),  # destination status, asked twice a second
)
notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # one message per occurrence, however often seen
    Column("event", String(32), nullable=False),
    Column("payload", Text, nullable=False),                 # the JSON body
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("created", Float, nullable=False),
)
heartbeat = Table(
    "heartbeat", metadata,
    Column("name", String(32), primary_key=True),
    Column("time", Float, nullable=False),
)

RECEIVING, COMPLETE, QUEUED, QUARANTINED = "receiving", "complete", "queued", "quarantined"
RUNNING, RESULTS_READY, DISPATCHED, FAILED = "running", "results_ready", "dispatched", "failed"
SUPERSEDED, RETRIED = "superseded", "retried"  # a newer job took over; an operator retried it
PENDING, SENT = "pending", "sent"
# Job events that make a webhook notification when the journal has notifications on.
NOTIFIED_JOB_EVENTS = ("job.quarantined", "job.failed")
DESTINATION_FAILING = "destination.failing"


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
    def __init__(self, url: str, notify: bool = False):
        """`notify`: quarantined and failed jobs also make webhook notifications (the node's journal
        when a webhook is configured; operator commands never notify)."""
        self.engine: Engine = create_engine(url, future=True)
        self.notify = notify
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    def _audit(self, db, event_name: str, series_uid: str = "", job_id: int | None = None, destination: str = "",
               detail: str = "") -> None:
        """One audit row, inside the caller's transaction; a quarantined or failed job's row also
        queues its notification there, so the message exists exactly when the state change does."""
        now = time.time()
        db.execute(insert(audit).values(time=now, event=event_name, series_uid=series_uid, job_id=job_id,
                                        destination=destination, detail=detail))
        if self.notify and event_name in NOTIFIED_JOB_EVENTS:
            study_uid = db.execute(select(series.c.study_uid).where(series.c.series_uid == series_uid)).scalar()
            self._add_notification(db, f"{event_name}:{job_id}", event_name, {
                "job": job_id, "series_uid": series_uid, "study_uid": study_uid or "", "reason": detail}, now)

    def _add_notification(self, db, key: str, event_name: str, payload: dict, now: float) -> bool:
        body = json.dumps({"event": event_name, "time": now, **payload})
        return db.execute(self._insert_ignore(notifications).values(
            key=key, event=event_name, payload=body, state=PENDING, attempts=0, next_attempt=now, last_error="",
            created=now)).rowcount == 1

    def audit(self, event_name: str, series_uid: str = "", job_id: int | None = None, destination: str = "",
              detail: str = "") -> None:
        """An audit row for something outside the journal's own state changes (associations, echoes, logins)."""
        with self.engine.begin() as db:
            self._audit(db, event_name, series_uid, job_id, destination, detail)

    # --- listener -------------------------------------------------------------------------------
    def record_instance(self, sop_uid: str, series_uid: str, study_uid: str, path: str, calling_aet: str,
                        facts: dict[str, str], now: float | None = None) -> bool:
        """A stored instance; True when it is the first of its series. A series that had finished
        receiving starts receiving again: late instances are processed with the rest, never dropped
        (the rerun writes the same UIDs)."""
        now = now or time.time()
        with self.engine.begin() as db:
            # Two associations may bring the first instances of one series at once: insert-or-ignore.
            new_series = db.execute(self._insert_ignore(series).values(
                series_uid=series_uid, study_uid=study_uid, calling_aet=calling_aet, state=RECEIVING,
                first_received=now, last_received=now, instances=0, open_associations=0, reason="", **facts)
            ).rowcount == 1
            db.execute(self._insert_ignore(instances).values(sop_uid=sop_uid, series_uid=series_uid, path=path,
                                                              received=now))
            # A series reopened by a late instance starts a new receiving period (and maximum wait).
            db.execute(update(series).where(series.c.series_uid == series_uid, series.c.state != RECEIVING)
                       .values(first_received=now))
            db.execute(update(series).where(series.c.series_uid == series_uid).values(
                state=RECEIVING, reason="", last_received=now,
                instances=select(func.count()).select_from(instances)
                .where(instances.c.series_uid == series_uid).scalar_subquery()))
        return new_series

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
            done = db.execute(update(series).where(series.c.series_uid == series_uid, series.c.state == RECEIVING,
                                                   series.c.last_received == last_received)
                              .values(state=COMPLETE)).rowcount == 1
            if done:
                count = db.execute(select(series.c.instances).where(series.c.series_uid == series_uid)).scalar()
                self._audit(db, "series.complete", series_uid, detail=f"{count} instance(s)")
            return done

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
            for row in db.execute(select(jobs.c.id).where(jobs.c.series_uid == series_uid, jobs.c.state == QUEUED)):
                self._audit(db, f"job.{SUPERSEDED}", series_uid, row.id, detail="a newer job took over")
            db.execute(update(jobs).where(jobs.c.series_uid == series_uid, jobs.c.state == QUEUED)
                       .values(state=SUPERSEDED))
            db.execute(update(outbox).where(outbox.c.job_id.in_(older), outbox.c.state == PENDING)
                       .values(state=SUPERSEDED))
            job_id = db.execute(insert(jobs).values(series_uid=series_uid, destinations=",".join(destinations),
                                                    state=state, attempts=0, reason=reason, output="",
                                                    created=now or time.time())).inserted_primary_key[0]
            self._audit(db, f"job.{state}", series_uid, job_id, detail=reason)
            return job_id

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
            self._audit(db, f"job.{RUNNING}", row.series_uid, row.id, detail=f"attempt {row.attempts + 1}")
            return Job(row.id, row.series_uid, tuple(d for d in row.destinations.split(",") if d), row.attempts + 1,
                       row.output)

    def finish(self, job_id: int, state: str, reason: str = "", output: str = "") -> str:
        """A job's result: results ready (outbox rows made), or failed, quarantined, or queued again;
        returns the state recorded. A job overtaken by a newer one of its series (late instances)
        never sends, never runs again and never quarantines the series (nor notifies): the newer
        job speaks for it."""
        now = time.time()
        with self.engine.begin() as db:
            job = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            newer = db.execute(select(jobs.c.id).where(jobs.c.series_uid == job.series_uid,
                                                       jobs.c.id > job_id)).first()
            if newer is not None:
                state, reason = SUPERSEDED, f"job {newer.id} took over (more instances arrived)"
            db.execute(update(jobs).where(jobs.c.id == job_id).values(state=state, reason=reason, finished=now,
                                                                      output=output or job.output))
            self._audit(db, f"job.{state}", job.series_uid, job_id, detail=reason)
            if state == RESULTS_READY:
                for destination in filter(None, job.destinations.split(",")):
                    exists = db.execute(select(outbox.c.id).where(outbox.c.job_id == job_id,
                                                                  outbox.c.destination == destination)).first()
                    if exists is None:
                        db.execute(insert(outbox).values(job_id=job_id, destination=destination, state=PENDING,
                                                         attempts=0, next_attempt=now, last_error=""))
            if state in (QUARANTINED, FAILED):  # unless the series was reopened meanwhile
                db.execute(update(series).where(series.c.series_uid == job.series_uid, series.c.state == QUEUED)
                           .values(state=QUARANTINED, reason=reason))
        return state

    def reclaim_running(self, max_attempts: int) -> int:
        """At start: jobs left running by a crash are queued again (their attempt counted), unless
        they used up their attempts: a study that kills the process must not stop the node for good."""
        reason = f"the node stopped during each of {max_attempts} attempt(s) at this job"
        with self.engine.begin() as db:
            spent = [r.id for r in db.execute(select(jobs.c.id).where(jobs.c.state == RUNNING,
                                                                      jobs.c.attempts >= max_attempts))]
            again = db.execute(select(jobs.c.id, jobs.c.series_uid).where(jobs.c.state == RUNNING,
                                                                           jobs.c.attempts < max_attempts)).all()
            for row in again:
                self._audit(db, f"job.{QUEUED}", row.series_uid, row.id, detail="the node stopped during this attempt")
            db.execute(update(jobs).where(jobs.c.id.in_([row.id for row in again])).values(state=QUEUED))
        for job_id in spent:
            self.finish(job_id, FAILED, reason)
        return len(again)

    def retry(self, job_id: int, operator: str = "renalnode retry") -> None:
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
            self._audit(db, f"job.{RETRIED}", job.series_uid, job_id, detail=f"by {operator}")

    # --- dispatcher -----------------------------------------------------------------------------
    def due_dispatches(self, now: float | None = None) -> list[dict]:
        now = now or time.time()
        with self.engine.connect() as db:
            rows = db.execute(select(outbox, jobs.c.output).join(jobs, jobs.c.id == outbox.c.job_id)
                              .where(outbox.c.state == PENDING, outbox.c.next_attempt <= now).order_by(outbox.c.id))
            return [dict(r._mapping) for r in rows]

    def _outbox_row(self, db, outbox_id: int):
        return db.execute(select(outbox.c.job_id, outbox.c.destination, jobs.c.series_uid)
                          .join(jobs, jobs.c.id == outbox.c.job_id).where(outbox.c.id == outbox_id)).one()

    def dispatched(self, outbox_id: int, detail: str = "") -> None:
        with self.engine.begin() as db:
            db.execute(update(outbox).where(outbox.c.id == outbox_id).values(state=SENT, sent=time.time(),
                                                                           last_error=""))
            row = self._outbox_row(db, outbox_id)
            self._audit(db, "dispatch.sent", row.series_uid, row.job_id, row.destination, detail)
            left = db.execute(select(func.count()).select_from(outbox)
                              .where(outbox.c.job_id == row.job_id, outbox.c.state != SENT)).scalar_one()
            if left == 0:
                db.execute(update(jobs).where(jobs.c.id == row.job_id).values(state=DISPATCHED))
                self._audit(db, f"job.{DISPATCHED}", row.series_uid, row.job_id)

    def dispatch_failed(self, outbox_id: int, error: str, next_attempt: float) -> None:
        with self.engine.begin() as db:
            db.execute(update(outbox).where(outbox.c.id == outbox_id).values(
                attempts=outbox.c.attempts + 1, last_error=error, next_attempt=next_attempt))
            row = self._outbox_row(db, outbox_id)
            self._audit(db, "dispatch.failed", row.series_uid, row.job_id, row.destination, error)

    def destination_status(self, names) -> dict[str, dict]:
        """Per destination: the last dispatch that succeeded, the last that failed (with its error),
        and since when it has been failing (its first failure after its last success), or None."""
        status = {}
        with self.engine.connect() as db:
            for name in names:
                def last(event_name: str):
                    return db.execute(select(audit.c.id, audit.c.time, audit.c.detail).where(
                        audit.c.destination == name, audit.c.event == event_name).order_by(audit.c.id.desc())
                        .limit(1)).first()
                success, failure = last("dispatch.sent"), last("dispatch.failed")
                # Failing while something for it still waits after a failed attempt; superseded or
                # sent rows end the failing period even without a success.
                waiting = db.execute(select(outbox.c.id).where(outbox.c.destination == name, outbox.c.state == PENDING,
                                                               outbox.c.attempts > 0).limit(1)).first()
                since = None if waiting is None else db.execute(select(func.min(audit.c.time)).where(
                    audit.c.destination == name, audit.c.event == "dispatch.failed",
                    audit.c.id > (success.id if success else 0))).scalar()
                status[name] = {"last_success": success.time if success else None,
                                "last_failure": failure.time if failure else None,
                                "last_error": failure.detail if failure else "", "failing_since": since}
        return status

    # --- notifications --------------------------------------------------------------------------
    def notify_destination_failing(self, name: str, failing_since: float, error: str) -> bool:
        """One notification per failing period of a destination (keyed by when it began)."""
        with self.engine.begin() as db:
            return self._add_notification(db, f"{DESTINATION_FAILING}:{name}:{failing_since:.6f}", DESTINATION_FAILING,
                                          {"destination": name, "failing_since": failing_since, "last_error": error},
                                          time.time())

    def due_notifications(self, now: float | None = None) -> list[dict]:
        now = now or time.time()
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(notifications).where(
                notifications.c.state == PENDING, notifications.c.next_attempt <= now).order_by(notifications.c.id))]

    def notification_done(self, notification_id: int, state: str, error: str = "",
                          next_attempt: float | None = None) -> None:
        """Delivered (sent), given up (failed), or left pending until `next_attempt`."""
        with self.engine.begin() as db:
            db.execute(update(notifications).where(notifications.c.id == notification_id).values(
                state=state, attempts=notifications.c.attempts + 1, last_error=error,
                **({"next_attempt": next_attempt} if next_attempt is not None else {})))

    def notification_rows(self, limit: int = 1000) -> list[dict]:
        """The newest notifications first."""
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(notifications).order_by(notifications.c.id.desc())
                                                         .limit(limit))]

    # --- health ---------------------------------------------------------------------------------
    def beat(self) -> None:
        """A committed write: raises when the journal cannot be written (disk full, read-only, locked)."""
        now = time.time()
        with self.engine.begin() as db:
            db.execute(self._insert_ignore(heartbeat).values(name="node", time=now))
            db.execute(update(heartbeat).where(heartbeat.c.name == "node").values(time=now))

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

    def job_row(self, job_id: int) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            return dict(row._mapping) if row else None

    def jobs_in(self, states: tuple[str, ...]) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(jobs).where(jobs.c.state.in_(states))
                                                         .order_by(jobs.c.id))]

    def audit_events(self, limit: int = 100, series_uid: str = "", job_id: int | None = None,
                     event_prefix: str = "") -> list[dict]:
        """The newest audit rows first, optionally of one series, one job or one kind ("job", "dispatch.failed")."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if series_uid:
            query = query.where(audit.c.series_uid == series_uid)
        if job_id is not None:
            query = query.where(audit.c.job_id == job_id)
        if event_prefix:
            query = query.where(audit.c.event.startswith(event_prefix))
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query)]

    def outbox_for(self, job_id: int) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(select(outbox).where(outbox.c.job_id == job_id))]
