"""The outbox: one row per (job, destination), pending -> sent, with attempts, the last error and the
next attempt time; made when a job's results are ready, worked through by deploy/node/dispatcher.py.
A job is dispatched when its last row is sent."""
from __future__ import annotations

import time

from sqlalchemy import func, select, update

from deploy.node.journal.audit_trail import AuditTrail
from deploy.node.journal.database import CLAIM_SECONDS
from deploy.node.journal.rows import DestinationStatus, DueDispatch, OutboxRow
from deploy.node.journal.schema import audit, jobs, notifications, outbox
from deploy.node.journal.states import DispatchState, JobState, NotificationState


class DispatchOutbox(AuditTrail):
    def due_dispatches(self, now: float | None = None) -> list[DueDispatch]:
        now = now or time.time()
        with self.engine.connect() as db:
            rows = db.execute(select(outbox, jobs.c.output).join(jobs, jobs.c.id == outbox.c.job_id)
                              .where(outbox.c.state == DispatchState.PENDING, outbox.c.next_attempt <= now)
                              .order_by(outbox.c.id))
            return [DueDispatch.from_db(r) for r in rows]

    def claim_dispatch(self, outbox_id: int, node: str, now: float | None = None) -> bool:
        """`node` sends this due row: no other node takes it for CLAIM_SECONDS. False when another
        node was first."""
        now = now or time.time()
        with self.engine.begin() as db:
            return db.execute(update(outbox).where(
                outbox.c.id == outbox_id, outbox.c.state == DispatchState.PENDING, outbox.c.next_attempt <= now)
                .values(next_attempt=now + CLAIM_SECONDS, claimed_by=node)).rowcount == 1

    def release_claims(self, node: str) -> None:
        """At start: what this node was sending or delivering when it stopped is due again at once."""
        now = time.time()
        with self.engine.begin() as db:
            for table, pending in ((outbox, DispatchState.PENDING), (notifications, NotificationState.PENDING)):
                db.execute(update(table).where(table.c.claimed_by == node, table.c.state == pending)
                           .values(next_attempt=now, claimed_by=""))

    def outbox_for(self, job_id: int) -> list[OutboxRow]:
        with self.engine.connect() as db:
            return [OutboxRow.from_db(r) for r in db.execute(select(outbox).where(outbox.c.job_id == job_id))]

    def _outbox_row(self, db, outbox_id: int):
        return db.execute(select(outbox.c.job_id, outbox.c.destination, jobs.c.series_uid)
                          .join(jobs, jobs.c.id == outbox.c.job_id).where(outbox.c.id == outbox_id)).one()

    def dispatched(self, outbox_id: int, detail: str = "") -> None:
        with self.engine.begin() as db:
            db.execute(update(outbox).where(outbox.c.id == outbox_id).values(state=DispatchState.SENT,
                                                                           sent=time.time(), last_error="",
                                                                           claimed_by=""))
            row = self._outbox_row(db, outbox_id)
            self._audit(db, "dispatch.sent", row.series_uid, row.job_id, row.destination, detail)
            left = db.execute(select(func.count()).select_from(outbox)
                              .where(outbox.c.job_id == row.job_id, outbox.c.state != DispatchState.SENT)).scalar_one()
            if left == 0:
                db.execute(update(jobs).where(jobs.c.id == row.job_id).values(state=JobState.DISPATCHED))
                self._audit(db, f"job.{JobState.DISPATCHED}", row.series_uid, row.job_id)

    def dispatch_failed(self, outbox_id: int, error: str, next_attempt: float) -> None:
        with self.engine.begin() as db:
            db.execute(update(outbox).where(outbox.c.id == outbox_id).values(
                attempts=outbox.c.attempts + 1, last_error=error, next_attempt=next_attempt, claimed_by=""))
            row = self._outbox_row(db, outbox_id)
            self._audit(db, "dispatch.failed", row.series_uid, row.job_id, row.destination, error)

    def destination_status(self, names) -> dict[str, DestinationStatus]:
        """Per destination: the last dispatch that succeeded, the last that failed (with its error),
        and since when it has been failing (its first failure after its last success), or None."""
        status = {}
        with self.engine.connect() as db:
            def last(name: str, event_name: str):
                return db.execute(select(audit.c.id, audit.c.time, audit.c.detail).where(
                    audit.c.destination == name, audit.c.event == event_name).order_by(audit.c.id.desc())
                    .limit(1)).first()
            for name in names:
                success, failure = last(name, "dispatch.sent"), last(name, "dispatch.failed")
                # Failing while something for it still waits after a failed attempt; superseded or
                # sent rows end the failing period even without a success.
                waiting = db.execute(select(outbox.c.id).where(outbox.c.destination == name,
                                                               outbox.c.state == DispatchState.PENDING,
                                                               outbox.c.attempts > 0).limit(1)).first()
                since = None if waiting is None else db.execute(select(func.min(audit.c.time)).where(
                    audit.c.destination == name, audit.c.event == "dispatch.failed",
                    audit.c.id > (success.id if success else 0))).scalar()
                status[name] = DestinationStatus(last_success=success.time if success else None,
                                                 last_failure=failure.time if failure else None,
                                                 last_error=failure.detail if failure else "", failing_since=since)
        return status
