"""Several nodes on one journal: the node that is sending an outbox row or a notification claims it,
so no other node sends it too; a restarted node releases its own claims at once.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("outbox", "notifications"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=False, server_default=""))


def downgrade() -> None:
    for table in ("outbox", "notifications"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("claimed_by")
