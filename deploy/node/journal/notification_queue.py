"""Webhook notifications waiting to be delivered (deploy/node/notify.py delivers them). A message is
made in the transaction of its event, keyed so that an occurrence makes one message however often
it is seen."""
from __future__ import annotations

import json
import time

from sqlalchemy import select, update

from deploy.node.journal.database import CLAIM_SECONDS, JournalDatabase
from deploy.node.journal.rows import NotificationRow
from deploy.node.journal.schema import notifications
from deploy.node.journal.states import NotificationState

DESTINATION_FAILING = "destination.failing"


class NotificationQueue(JournalDatabase):
    def _add_notification(self, db, key: str, event_name: str, payload: dict, now: float) -> bool:
        body = json.dumps({"event": event_name, "time": now, **payload})
        return self._insert_if_new(db, notifications, key=key, event=event_name, payload=body,
                                   state=NotificationState.PENDING, attempts=0, next_attempt=now, last_error="",
                                   created=now)

    def notify_destination_failing(self, name: str, failing_since: float, error: str) -> bool:
        """One notification per failing period of a destination (keyed by when it began)."""
        with self.engine.begin() as db:
            return self._add_notification(db, f"{DESTINATION_FAILING}:{name}:{failing_since:.6f}", DESTINATION_FAILING,
                                          {"destination": name, "failing_since": failing_since, "last_error": error},
                                          time.time())

    def due_notifications(self, now: float | None = None) -> list[NotificationRow]:
        now = now or time.time()
        with self.engine.connect() as db:
            return [NotificationRow.from_db(r) for r in db.execute(select(notifications).where(
                notifications.c.state == NotificationState.PENDING, notifications.c.next_attempt <= now)
                .order_by(notifications.c.id))]

    def claim_notification(self, notification_id: int, node: str, now: float | None = None) -> bool:
        """`node` delivers this due notification; no other node takes it for CLAIM_SECONDS."""
        now = now or time.time()
        with self.engine.begin() as db:
            return db.execute(update(notifications).where(
                notifications.c.id == notification_id, notifications.c.state == NotificationState.PENDING,
                notifications.c.next_attempt <= now).values(next_attempt=now + CLAIM_SECONDS, claimed_by=node)
            ).rowcount == 1

    def notification_done(self, notification_id: int, state: NotificationState, error: str = "",
                          next_attempt: float | None = None) -> None:
        """Delivered (sent), given up (failed), or left pending until `next_attempt`."""
        with self.engine.begin() as db:
            db.execute(update(notifications).where(notifications.c.id == notification_id).values(
                state=state, attempts=notifications.c.attempts + 1, last_error=error, claimed_by="",
                **({"next_attempt": next_attempt} if next_attempt is not None else {})))

    def notification_rows(self, limit: int = 1000) -> list[NotificationRow]:
        """The newest notifications first."""
        with self.engine.connect() as db:
            return [NotificationRow.from_db(r) for r in db.execute(select(notifications)
                                                                   .order_by(notifications.c.id.desc()).limit(limit))]
