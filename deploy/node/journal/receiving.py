"""Series and their instances as they arrive (the listener) and complete (deploy/node/completion.py):
receiving -> complete; a late instance makes a series receiving again."""
from __future__ import annotations

import time

from sqlalchemy import func, select, update

from deploy.node.journal.audit_trail import AuditTrail
from deploy.node.journal.rows import SeriesRow
from deploy.node.journal.schema import instances, series
from deploy.node.journal.states import SeriesState


class IdentifierConflict(ValueError):
    """An instance whose UIDs contradict what was received before: the node refuses it, so that every
    instance it acknowledged reaches the one job of its one series."""


class Receiving(AuditTrail):
    # --- listener -------------------------------------------------------------------------------
    def record_instance(self, sop_uid: str, series_uid: str, study_uid: str, path: str, calling_aet: str,
                        facts: dict[str, str], now: float | None = None) -> bool:
        """A stored instance; True when it is the first of its series. A series that had finished
        receiving starts receiving again: late instances are processed with the rest, never dropped
        (the rerun writes the same UIDs). An SOP instance UID already received in another series, or
        a series UID already received in another study, raises IdentifierConflict and records nothing."""
        now = now or time.time()
        with self.engine.begin() as db:
            in_series = db.execute(select(instances.c.series_uid).where(instances.c.sop_uid == sop_uid)).scalar()
            if in_series is not None and in_series != series_uid:
                raise IdentifierConflict(f"SOP instance {sop_uid} was already received in series {in_series}")
            in_study = db.execute(select(series.c.study_uid).where(series.c.series_uid == series_uid)).scalar()
            if in_study is not None and in_study != study_uid:
                raise IdentifierConflict(f"series {series_uid} was already received in study {in_study}")
            # Two associations may bring the first instances of one series at once: insert-or-ignore.
            new_series = self._insert_if_new(
                db, series, series_uid=series_uid, study_uid=study_uid, calling_aet=calling_aet,
                state=SeriesState.RECEIVING, first_received=now, last_received=now, instances=0, open_associations=0,
                reason="", **facts)
            added = int(self._insert_if_new(db, instances, sop_uid=sop_uid, series_uid=series_uid, path=path,
                                            received=now))
            # A series reopened by a late instance starts a new receiving period (and maximum wait).
            db.execute(update(series).where(series.c.series_uid == series_uid,
                                            series.c.state != SeriesState.RECEIVING)
                       .values(first_received=now))
            # An increment under the row's lock: a recount could miss an instance another association
            # has not committed yet (PostgreSQL reads committed rows only).
            db.execute(update(series).where(series.c.series_uid == series_uid).values(
                state=SeriesState.RECEIVING, reason="", last_received=now, instances=series.c.instances + added))
        return new_series

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
    def _series_in(self, state: SeriesState) -> list[SeriesRow]:
        with self.engine.connect() as db:
            return [SeriesRow.from_db(r) for r in db.execute(select(series).where(series.c.state == state))]

    def receiving_series(self) -> list[SeriesRow]:
        return self._series_in(SeriesState.RECEIVING)

    def complete_series(self) -> list[SeriesRow]:
        return self._series_in(SeriesState.COMPLETE)

    def series_row(self, series_uid: str) -> SeriesRow | None:
        with self.engine.connect() as db:
            row = db.execute(select(series).where(series.c.series_uid == series_uid)).first()
            return SeriesRow.from_db(row) if row else None

    def mark_complete(self, series_uid: str, last_received: float) -> bool:
        """Complete, unless an instance arrived since the caller looked (then it is still receiving)."""
        with self.engine.begin() as db:
            done = db.execute(update(series).where(series.c.series_uid == series_uid,
                                                   series.c.state == SeriesState.RECEIVING,
                                                   series.c.last_received == last_received)
                              .values(state=SeriesState.COMPLETE)).rowcount == 1
            if done:
                count = db.execute(select(series.c.instances).where(series.c.series_uid == series_uid)).scalar()
                self._audit(db, "series.complete", series_uid, detail=f"{count} instance(s)")
            return done
