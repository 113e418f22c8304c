"""The journal's tables as they were when migrations began (renalnode 0.1.0).

Revision ID: 0001
Revises: none
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("series_uid", sa.String(64), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("series_description", sa.String(128), nullable=False),
        sa.Column("study_description", sa.String(128), nullable=False),
        sa.Column("calling_aet", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("open_associations", sa.Integer, nullable=False),
        sa.Column("first_received", sa.Float, nullable=False),
        sa.Column("last_received", sa.Float, nullable=False),
    )
    op.create_table(
        "instances",
        sa.Column("sop_uid", sa.String(64), primary_key=True),
        sa.Column("series_uid", sa.String(64), sa.ForeignKey("series.series_uid"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("received", sa.Float, nullable=False),
    )
    op.create_index("ix_instances_series_uid", "instances", ["series_uid"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series_uid", sa.String(64), sa.ForeignKey("series.series_uid"), nullable=False),
        sa.Column("destinations", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("started", sa.Float),
        sa.Column("finished", sa.Float),
        sa.Column("output", sa.Text, nullable=False),
    )
    op.create_index("ix_jobs_series_uid", "jobs", ["series_uid"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("sent", sa.Float),
        sa.UniqueConstraint("job_id", "destination"),
    )
    op.create_index("ix_outbox_job_id", "outbox", ["job_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_event", "audit", ["event"])
    op.create_index("ix_audit_series_uid", "audit", ["series_uid"])
    op.create_index("ix_audit_job_id", "audit", ["job_id"])
    op.create_index("audit_by_destination", "audit", ["destination", "event", "id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_notifications_state", "notifications", ["state"])
    op.create_table(
        "heartbeat",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("heartbeat", "notifications", "audit", "outbox", "jobs", "instances", "series"):
        op.drop_table(table)
