"""Alembic's environment for the journal: migrations run on the connection that
deploy/node/journal/schema_version.py hands over, inside its transaction."""
from alembic import context

from deploy.node.journal.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  render_as_batch=True)  # SQLite alters a table by copying it; batch mode does that
with context.begin_transaction():
    context.run_migrations()
