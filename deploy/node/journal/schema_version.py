"""The journal's schema version, kept by alembic (migrations/versions/, one file per change).

A new, empty database is brought to the newest revision when the journal opens it, so the embedded
default needs no step of its own. A database at an older revision is never changed behind an
operator's back: the journal refuses it until `renalnode db upgrade` has run (a backup first is the
operator's call). A journal made before migrations began holds the baseline's tables and is marked
as revision 0001. Processes that open one database at once take turns (PostgreSQL: an advisory lock;
SQLite: BEGIN IMMEDIATE, the database's write lock); threads of one process take turns too, since
alembic keeps its migration context in a module global.
"""
from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
_LOCK_ID = 0x72656E616C  # "renal": the advisory lock key of schema changes
_in_process = threading.Lock()


class JournalSchemaError(ValueError):
    """The database's schema is not the one this renalnode writes."""


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    newest = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert newest is not None, f"no migrations in {MIGRATIONS}"
    return newest


def _current(connection: Connection) -> str | None:
    """The database's revision; the baseline for a journal made before migrations; None when empty."""
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and inspect(connection).has_table("series"):
        command.stamp(alembic_config(connection), BASELINE)
        return BASELINE
    return revision


def _lock(connection: Connection) -> None:
    """Hold the database's schema lock until the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_ID})
    else:  # the driver has not begun the transaction yet (it does before the first write)
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_schema(engine: Engine) -> None:
    """Create the tables of an empty database; refuse one at another revision than this code's."""
    with _in_process, engine.begin() as connection:
        _lock(connection)
        current = _current(connection)
        if current is None:
            command.upgrade(alembic_config(connection), "head")
        elif current != head():
            known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
            if current in known:
                raise JournalSchemaError(f"the journal's schema is at revision {current}, this renalnode needs "
                                         f"{head()}: run `renalnode db upgrade --config FILE` (after a backup)")
            raise JournalSchemaError(f"the journal's schema is at revision {current}, unknown to this renalnode "
                                     f"(newest {head()}): it was written by a newer version")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; (revision before, revision after)."""
    with _in_process, engine.begin() as connection:
        _lock(connection)
        before = _current(connection)
        command.upgrade(alembic_config(connection), "head")
    return before, head()
