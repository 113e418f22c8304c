"""Node commands: `renalnode serve | worker | status | retry | quarantine list | echo | db upgrade`, each
with --config."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from deploy.node.config import load_config


def when(seconds: float | None) -> str:
    """A journal time as operators read it (local time), '-' for none."""
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _serve(args) -> int:
    from deploy.node.service import serve

    _log_to_stderr()
    return serve(load_config(args.config))


def _worker(args) -> int:
    from deploy.node.worker_pool import run_worker

    _log_to_stderr()
    return run_worker(load_config(args.config), args.slot, args.device)


def _journal(args):
    from deploy.node.journal import Journal

    return Journal(load_config(args.config).journal_url)


def _status(args) -> int:
    journal = _journal(args)
    if args.audit or args.series or args.job or args.event:
        return _audit(journal, args)
    for name, counts in journal.counts().items():
        print(f"{name}: " + (", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"))
    for worker in journal.workers():
        print(f"worker {worker.name} on {worker.device}: {f'job {worker.job_id}' if worker.job_id else 'idle'}, "
              f"{worker.jobs_done} job(s) done, last seen {when(worker.last_seen)}")
    print(f"\n{'job':>5}  {'state':<14} {'attempts':>8}  {'created':<19}  {'finished':<19}  series / reason")
    for job in journal.recent_jobs(args.limit):
        print(f"{job.id:>5}  {job.state:<14} {job.attempts:>8}  {when(job.created):<19}  "
              f"{when(job.finished):<19}  {job.series_uid}")
        if job.reason:
            print(f"{'':>7}{job.reason}")
    return 0


def _audit(journal, args) -> int:
    """The audit log, newest first (--audit N rows; --series, --job, --event narrow it)."""
    events = journal.audit_events(args.audit or 50, args.series or "", args.job, args.event or "")
    for row in events:
        where = " ".join(filter(None, [f"job {row.job_id}" if row.job_id else "",
                                       f"series {row.series_uid}" if row.series_uid else "",
                                       f"to {row.destination}" if row.destination else ""]))
        print(f"{when(row.time)}  {row.event:<20} {where}{'  ' if where else ''}{row.detail}")
    if not events:
        print("no audit events match")
    return 0


def _retry(args) -> int:
    _journal(args).retry(args.job)
    print(f"job {args.job}: its series will be routed and processed again")
    return 0


def _quarantine(args) -> int:
    rows = _journal(args).quarantined()
    for row in rows:
        print(f"job {row.job_id}  series {row.series_uid}  {row.instances} instance(s) from "
              f"{row.calling_aet}\n    {row.reason}")
    if not rows:
        print("nothing quarantined")
    return 0


def _echo(args) -> int:
    from deploy.node.dispatcher import DispatchError, echo

    config = load_config(args.config)
    if args.destination not in config.destinations:
        raise ValueError(f"no destination {args.destination!r}; configured: {sorted(config.destinations)}")
    try:
        print(echo(config.destinations[args.destination], config.listener.ae_title))
    except DispatchError as exc:
        print(f"{args.destination}: {exc}", file=sys.stderr)
        return 1
    return 0


def _db(args) -> int:
    from sqlalchemy import create_engine

    from deploy.node.journal.schema_version import upgrade

    engine = create_engine(load_config(args.config).journal_url)
    before, after = upgrade(engine)
    engine.dispose()
    print(f"journal schema: revision {after}" + ("" if before == after else
                                                  f" (was {before or 'an empty database'})"))
    return 0


def add_parser(sub) -> None:
    def command(name: str, function, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--config", type=Path, required=True, help="the node's TOML or YAML file")
        parser.set_defaults(func=function)
        return parser

    command("serve", _serve, "run the DICOM node: receive, process, send back")
    status = command("status", _status, "queue counts and recent jobs, or the audit log")
    status.add_argument("--limit", type=int, default=20, help="recent jobs to list")
    status.add_argument("--audit", type=int, metavar="N", help="the newest N audit events instead")
    status.add_argument("--series", help="audit events of one series (UID)")
    status.add_argument("--job", type=int, help="audit events of one job")
    status.add_argument("--event", help="audit events of one kind, e.g. job, dispatch.failed, association.refused")
    command("retry", _retry, "route and process a failed or quarantined job's series again").add_argument(
        "job", type=int)
    quarantine = command("quarantine", _quarantine, "quarantined series with their reasons")
    quarantine.add_argument("action", choices=["list"])
    command("echo", _echo, "check a destination (C-ECHO or a DICOMweb query)").add_argument("destination")
    worker = command("worker", _worker, "one worker process (renalnode serve starts them for [workers] count > 1)")
    worker.add_argument("--slot", type=int, default=0, help="its number: the journal knows it as HOST/SLOT")
    worker.add_argument("--device", default="cpu", help="shown in the journal (CUDA_VISIBLE_DEVICES picks the GPU)")
    command("db", _db, "bring the journal's schema to this version (alembic migrations)").add_argument(
        "action", choices=["upgrade"])
