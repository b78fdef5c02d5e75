"""Alembic migration environment of the store (run programmatically by ``app.store.migrate``)."""
