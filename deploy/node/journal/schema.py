"""The journal's tables (SQLAlchemy Core). States are stored as the strings of deploy/node/journal/states.py."""
from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

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
    Column("worker", String(128), nullable=False, default="", server_default=""),  # who holds or held it
    Column("published", Float),   # handed to the broker (distributed mode); none: not yet, or again
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
    Column("claimed_by", String(128), nullable=False, default="", server_default=""),  # the node sending it
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
    Column("claimed_by", String(128), nullable=False, default="", server_default=""),  # the node delivering it
)
workers = Table(
    "workers", metadata,
    Column("name", String(128), primary_key=True),   # host/slot: a restarted worker keeps its row
    Column("host", String(128), nullable=False),
    Column("device", String(32), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("job_id", Integer),                        # the job it runs now, if any
    Column("jobs_done", Integer, nullable=False, default=0),
    Column("started", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)
heartbeat = Table(
    "heartbeat", metadata,
    Column("name", String(32), primary_key=True),
    Column("time", Float, nullable=False),
)
