"""Stored voices on a real PostgreSQL server, as replicas sharing ``GSV_DATABASE_URL`` use them.

A throwaway server (tests/postgres.py) is made for the module and stopped at its end. Its binaries are
required, not optional: without them the tests fail (CI's ``.ci/run`` installs them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings, store_url
from app.store.db import POSTGRES_DRIVER, make_engine, with_driver
from app.store.migrate import current_revision, head_revision, upgrade
from app.store.models import Base
from app.store.voices import VoiceStore
from tests.api.test_inference import REF
from tests.api.test_voices import assert_a_failed_create_leaves_nothing, create
from tests.postgres import create_database, postgres_server

# --- the mapping of driverless PostgreSQL URLs (no server needed) ---------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgres_url_without_a_driver_uses_psycopg_3(scheme):
    url = with_driver(f"{scheme}://user:p%40ss@db.internal:5433/gsv?sslmode=require")
    assert url.drivername == POSTGRES_DRIVER == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "user",
        "p@ss",
        "db.internal",
        5433,
        "gsv",
    )
    assert dict(url.query) == {"sslmode": "require"}
    engine = make_engine(f"{scheme}://user:pw@db.internal/gsv")  # no connection is made yet
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "sqlite:///x/gsv.db",
        "mysql+pymysql://u@h/db",
    ],
)
def test_other_urls_keep_their_driver(url):
    assert with_driver(url).render_as_string(hide_password=False) == url


def test_store_url_passes_a_plain_postgres_url_on_and_the_engine_maps_it(tmp_path):
    url = "postgresql://gsv:secret@db.internal:5432/gsv"
    assert store_url(Settings(data_dir=tmp_path, database_url=url)) == url
    assert make_engine(store_url(Settings(database_url=url))).dialect.driver == "psycopg"


# --- a throwaway server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A running throwaway server; yields its base URL (plain ``postgresql://``, no database)."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """A fresh, empty database of its own for each test (plain ``postgresql://`` URL)."""
    name = "gsv_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return create_database(pg_server, name)


@pytest.fixture
def replica(tmp_path):
    """Start an app ("replica") on the given database URL, each with its own data folder and no weights."""
    weights = tmp_path / "weights"
    weights.mkdir()
    clients = []

    def make(url: str) -> TestClient:
        settings = Settings(weights_root=weights, database_url=url, data_dir=tmp_path / f"data{len(clients)}")
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# --- the store on PostgreSQL ------------------------------------------------------------------------


def test_two_replicas_share_their_voices(replica, pg_url, tmp_path):
    a = replica(pg_url)
    b = replica(pg_url.replace("postgresql://", "postgres://", 1))  # both driverless forms work
    assert a.app.state.voices.engine.dialect.driver == b.app.state.voices.engine.dialect.driver == "psycopg"

    r = create(a, defaults={"top_k": 7})
    assert r.status_code == 201, r.text
    made = r.json()
    assert b.get("/voices").json() == {"voices": [made]}
    assert b.get("/voices/narrator").json() == made
    store_b: VoiceStore = b.app.state.voices
    assert [c.data for c in store_b.clips("narrator")] == [REF]  # identical bytes, through B's store
    assert store_b.get_clips("narrator").defaults == {"top_k": 7}

    r = create(b, prompt_text="second")
    assert r.status_code == 409 and r.json()["error"]["code"] == "voice_exists"
    assert a.get("/voices/narrator").json()["prompt_text"] == made["prompt_text"]

    assert b.delete("/voices/narrator").status_code == 204
    assert a.get("/voices").json() == {"voices": []}
    r = a.get("/voices/narrator")
    assert r.status_code == 404 and r.json()["error"]["code"] == "voice_not_found"
    assert not any((tmp_path / f"data{i}").exists() for i in range(2))  # the URL, not the data folder


def test_start_migrates_a_fresh_database_to_head(replica, pg_url):
    engine = make_engine(pg_url)
    assert sa.inspect(engine).get_table_names() == []
    replica(pg_url)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version", "voices", "voice_clips"}
    with engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        # The migration and the ORM models describe the same tables on PostgreSQL too.
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    assert versions == [head_revision()] and current_revision(engine) == head_revision()
    engine.dispose()

    replica(pg_url)  # a second replica starting on a migrated database changes nothing
    engine = make_engine(pg_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_a_create_that_fails_midway_leaves_nothing(pg_url):
    engine = make_engine(pg_url)
    upgrade(engine)
    store = VoiceStore(engine)
    assert_a_failed_create_leaves_nothing(store)
    store.delete("v")
    with store.engine.connect() as connection:  # the clips go with their voice (ON DELETE CASCADE)
        assert connection.execute(sa.text("SELECT count(*) FROM voice_clips")).scalar() == 0
    store.close()
