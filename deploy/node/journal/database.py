"""The journal's database: its engine (SQLite in WAL mode, or PostgreSQL), its schema checked at start
(made when the database is empty: schema_version.py), and what every concern of the journal shares:
insert-or-ignore, state counts and the heartbeat."""
from __future__ import annotations

import sqlite3
import time

from sqlalchemy import Table, create_engine, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from deploy.node.journal.schema import heartbeat, jobs, outbox, series
from deploy.node.journal.schema_version import open_schema

# How long a node's claim on an outbox row or a notification keeps the other nodes on the same
# journal from it: longer than any send takes, since a node that died sending is presumed gone
# after it (a restarted node releases its own claims at once).
CLAIM_SECONDS = 600.0


# How long a connection keeps asking to turn a new database to WAL while others hold it.
WAL_SWITCH_SECONDS = 60.0


def _sqlite_pragmas(connection, _record):
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
    cursor.close()


def _switch_to_wal(cursor) -> None:
    """Turning a new database to WAL upgrades a read lock to the write lock, and SQLite answers
    "locked" at once, without its busy wait, when another connection reads the file meanwhile
    (processes opening one new journal together): ask again until the deadline. Once the file is in
    WAL mode the pragma only reads it."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class JournalDatabase:
    def __init__(self, url: str, notify: bool = False):
        """`notify`: quarantined and failed jobs also make webhook notifications (the node's journal
        when a webhook is configured; operator commands never notify)."""
        self.engine: Engine = create_engine(url, future=True)
        self.notify = notify
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        open_schema(self.engine)

    def _insert_if_new(self, db: Connection, table: Table, **values) -> bool:
        """Insert the row unless its key exists (concurrent writers may race to insert it); whether
        it was inserted, told by RETURNING (PostgreSQL's drivers give no row count for it)."""
        dialect = self.engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"journal database {dialect} is not supported (SQLite or PostgreSQL)")
        module = sqlite if dialect == "sqlite" else postgresql
        key = next(iter(table.primary_key.columns))
        return db.execute(module.insert(table).values(**values).on_conflict_do_nothing().returning(key)).first() \
            is not None

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows by state of the series, jobs and outbox tables (the overview and the metrics)."""
        with self.engine.connect() as db:
            return {name: {state: n for state, n in db.execute(select(table.c.state, func.count())
                                                              .group_by(table.c.state))}
                    for name, table in (("series", series), ("jobs", jobs), ("outbox", outbox))}

    def beat(self) -> None:
        """A committed write: raises when the journal cannot be written (disk full, read-only, locked)."""
        now = time.time()
        with self.engine.begin() as db:
            self._insert_if_new(db, heartbeat, name="node", time=now)
            db.execute(update(heartbeat).where(heartbeat.c.name == "node").values(time=now))
