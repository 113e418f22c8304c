"""The journal's schema under alembic, on SQLite and on a real PostgreSQL server: the migrations
make exactly the tables schema.py describes, an empty database is made at start, an older journal
(or one from before migrations) waits for `renalnode db upgrade` and keeps its rows, one from an
unknown revision is refused with the way out, and
processes that open an empty database at once do not collide."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import run_renalnode
from sqlalchemy import create_engine, select, text

from deploy.node.journal import Journal
from deploy.node.journal.schema import metadata, series
from deploy.node.journal.schema_version import BASELINE, JournalSchemaError, alembic_config, head


def revision_of(url: str) -> str | None:
    with create_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_the_migrations_make_the_tables_the_code_writes(journal_url):
    journal = Journal(journal_url())
    with journal.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert revision_of(journal.engine.url.render_as_string(hide_password=False)) == head()


def test_an_older_journal_waits_for_renalnode_db_upgrade_and_keeps_its_rows(journal_url, tmp_path):
    """A journal made before migrations began (the baseline's tables, no version) is adopted as the
    baseline; being older than this code, it is refused until `renalnode db upgrade` has run."""
    url = journal_url()
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(series.insert().values(
            series_uid="1.2", study_uid="1", calling_aet="CT1", state="complete", modality="CT", body_part="",
            series_description="", study_description="", reason="", instances=3, open_associations=0,
            first_received=1.0, last_received=2.0))
    assert revision_of(url) is None and BASELINE != head()
    with pytest.raises(JournalSchemaError, match=f"at revision {BASELINE}, this renalnode needs {head()}: run "
                                                 "`renalnode db upgrade"):
        Journal(url)
    config = tmp_path / "node.yaml"
    config.write_text(f"listener: {{allowed_calling_aets: [CT1]}}\nnode: {{journal: '{url}'}}\n")
    upgraded = run_renalnode("db", "upgrade", "--config", str(config)).stdout
    assert upgraded.strip() == f"journal schema: revision {head()} (was {BASELINE})"
    assert Journal(url).series_row("1.2").instances == 3


def test_a_journal_of_an_unknown_revision_is_refused_with_the_way_out(journal_url, tmp_path):
    url = journal_url()
    Journal(url).engine.dispose()
    with create_engine(url).begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(JournalSchemaError, match="revision 9999, unknown to this renalnode"):
        Journal(url)
    config = tmp_path / "node.yaml"
    config.write_text(f"listener: {{allowed_calling_aets: [CT1]}}\nnode: {{journal: '{url}'}}\n")
    refused = run_renalnode("status", "--config", str(config), check=False)
    assert refused.returncode == 2 and "written by a newer version" in refused.stderr


def test_renalnode_db_upgrade_makes_an_empty_journal_and_is_idempotent(journal_url, tmp_path):
    url = journal_url()
    config = tmp_path / "node.yaml"
    config.write_text(f"listener: {{allowed_calling_aets: [CT1]}}\nnode: {{journal: '{url}'}}\n")
    first = run_renalnode("db", "upgrade", "--config", str(config)).stdout
    assert first.strip() == f"journal schema: revision {head()} (was an empty database)"
    again = run_renalnode("db", "upgrade", "--config", str(config)).stdout
    assert again.strip() == f"journal schema: revision {head()}"
    with create_engine(url).connect() as db:
        assert db.execute(select(series)).all() == []


def test_processes_and_threads_opening_an_empty_journal_at_once_take_turns(journal_url):
    """Four processes, each with three threads, open one new database at the same moment."""
    url, start = journal_url(), time.time() + 8
    program = ("import sys, threading, time\n"
               "from deploy.node.journal import Journal\n"
               "time.sleep(max(0, float(sys.argv[1]) - time.time()))\n"
               "threads = [threading.Thread(target=Journal, args=(sys.argv[2],)) for _ in range(3)]\n"
               "[t.start() for t in threads]; [t.join() for t in threads]\n")
    processes = [subprocess.Popen([sys.executable, "-c", program, str(start), url], stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [e for e in errors if "Error" in e] == [] and revision_of(url) == head()


def test_a_new_sqlite_journal_waits_for_a_writer_that_holds_the_file_before_it_turns_to_wal(tmp_path):
    """SQLite refuses at once, without its busy wait, to turn a database to WAL while another
    connection holds the write lock; the journal asks again until the writer is done."""
    path = tmp_path / "journal.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE other_tool (x)")
    opened: list[object] = []
    thread = threading.Thread(target=lambda: opened.append(_open_or_error(f"sqlite:///{path}")))
    thread.start()
    time.sleep(1.0)
    assert opened == []  # still waiting for the writer
    writer.execute("COMMIT")
    writer.close()
    thread.join(timeout=60)
    assert len(opened) == 1 and isinstance(opened[0], Journal), opened
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert revision_of(f"sqlite:///{path}") == head()


def _open_or_error(url: str) -> object:
    try:
        return Journal(url)
    except Exception as error:
        return error
