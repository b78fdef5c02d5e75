"""The SQLAlchemy engine and session factory for a database URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_FILE = "gsv.db"  # the default database, inside the data folder


def sqlite_url(data_dir: Path) -> str:
    """The URL of the default SQLite file under ``data_dir``."""
    return f"sqlite:///{Path(data_dir).resolve() / SQLITE_FILE}"


# PostgreSQL URLs that name no driver: SQLAlchemy would pick psycopg2 (not installed; ``postgres``
# it does not know at all). psycopg 3 is the driver the service ships with.
_POSTGRES_WITHOUT_DRIVER = ("postgresql", "postgres")
POSTGRES_DRIVER = "postgresql+psycopg"


def with_driver(url: str | URL) -> URL:
    """``url`` parsed, a driverless ``postgresql://`` or ``postgres://`` URL made ``postgresql+psycopg://``;
    any other URL as it is."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_WITHOUT_DRIVER:
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    return parsed


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (PostgreSQL without a driver named: psycopg 3). A SQLite file's folder is
    created, and SQLite is told to enforce foreign keys (off by default there), so deleting a voice
    deletes its clips in the database too."""
    parsed = with_driver(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    if is_sqlite:
        event.listen(engine, "connect", _enforce_foreign_keys)
    return engine


def _enforce_foreign_keys(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit off: what a method read stays readable after its transaction ends.
    return sessionmaker(engine, expire_on_commit=False)
