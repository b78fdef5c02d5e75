"""Alembic's environment: migrate the connection ``app.store.migrate`` hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from app.store.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters tables by copying them; batch mode lets later migrations do that.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
