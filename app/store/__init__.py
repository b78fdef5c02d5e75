"""Persistent state of the service (stored voices), in any SQLAlchemy database.

The store knows nothing of HTTP or of the settings: it is given a database URL (see
``app.settings.store_url``) and raises the engine's error kinds (``app.engine.errors``), which every
surface already maps to its own answers.
"""
