"""The audit log: every association, stored instance count, job state change, dispatch and operator
action, written in the same transaction as the change it records; UIDs, never patient data."""
from __future__ import annotations

import time

from sqlalchemy import insert, select

from deploy.node.journal.notification_queue import NotificationQueue
from deploy.node.journal.rows import AuditEvent
from deploy.node.journal.schema import audit, series
from deploy.node.journal.states import JobState

# Job events that make a webhook notification when the journal has notifications on.
NOTIFIED_JOB_EVENTS = (f"job.{JobState.QUARANTINED}", f"job.{JobState.FAILED}")


class AuditTrail(NotificationQueue):
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

    def audit(self, event_name: str, series_uid: str = "", job_id: int | None = None, destination: str = "",
              detail: str = "") -> None:
        """An audit row for something outside the journal's own state changes (associations, echoes, logins)."""
        with self.engine.begin() as db:
            self._audit(db, event_name, series_uid, job_id, destination, detail)

    def audit_events(self, limit: int = 100, series_uid: str = "", job_id: int | None = None,
                     event_prefix: str = "") -> list[AuditEvent]:
        """The newest audit rows first, optionally of one series, one job or one kind ("job", "dispatch.failed")."""
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if series_uid:
            query = query.where(audit.c.series_uid == series_uid)
        if job_id is not None:
            query = query.where(audit.c.job_id == job_id)
        if event_prefix:
            query = query.where(audit.c.event.startswith(event_prefix))
        with self.engine.connect() as db:
            return [AuditEvent(**r._mapping) for r in db.execute(query)]
