"""Stored voices (/voices) over HTTP, and their store: round trip, refusals, persistence across a
restart, the Alembic schema, transactions, and the database URL setting. No weights are needed."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.main import create_app
from app.settings import Settings, store_url
from app.store.db import SQLITE_FILE, make_engine
from app.store.migrate import current_revision, head_revision, upgrade
from app.store.models import Base
from app.store.voices import Clip, NewVoice, VoiceStore
from tests.api.test_inference import REF, wav_bytes

PROMPT = {"prompt_text": "这是参考音频。", "prompt_lang": "中文"}


@pytest.fixture
def start(tmp_path):
    """Start an app on ``tmp_path/data`` (or other settings); stopped at the end of the test."""
    weights = tmp_path / "weights"
    weights.mkdir()
    clients = []

    def make(**overrides) -> TestClient:
        overrides.setdefault("data_dir", tmp_path / "data")
        client = TestClient(create_app(Settings(weights_root=weights, **overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def create(client, name="narrator", ref=REF, aux=(), **fields):
    files = [("ref_audio", ("ref.wav", ref, "audio/wav"))]
    files += [("aux_ref_audio", (f"aux{i}.wav", clip, "audio/wav")) for i, clip in enumerate(aux)]
    data = {"name": name, **PROMPT, **fields}
    if isinstance(data.get("defaults"), dict):
        data["defaults"] = json.dumps(data["defaults"])
    return client.post("/voices", data=data, files=files)


def test_create_list_get_delete_round_trip(start):
    client = start()
    r = create(client, defaults={"top_k": 7, "speed_factor": 1.1, "text_split_method": "按标点符号切"})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/voices/narrator"
    made = r.json()
    assert made["name"] == "narrator" and made["prompt_text"] == PROMPT["prompt_text"]
    assert made["prompt_lang"] == "all_zh"  # the UI label is stored as its code
    assert made["defaults"] == {"top_k": 7, "speed_factor": 1.1, "text_split_method": "cut5"}
    assert made["ref_audio"] == {"filename": "ref.wav", "sample_rate": 32000, "seconds": 4.0}
    assert made["aux_ref_audio_count"] == 0 and made["created_at"].endswith("Z")

    assert client.get("/voices/narrator").json() == made
    assert client.get("/voices").json() == {"voices": [made]}
    assert "bytes" not in client.get("/voices").text

    r = client.delete("/voices/narrator")
    assert r.status_code == 204 and r.content == b""
    assert client.get("/voices").json() == {"voices": []}
    for method in (client.get, client.delete):
        r = method("/voices/narrator")
        assert r.status_code == 404 and r.json()["error"]["code"] == "voice_not_found"


def test_aux_clips_are_counted_and_follow_the_reference_rules(start):
    client = start(max_aux_refs=2)
    r = create(client, aux=[wav_bytes(3.5, 16000), wav_bytes(9.0)])
    assert r.status_code == 201, r.text
    body = client.get("/voices/narrator").json()
    assert body["aux_ref_audio_count"] == 2
    assert [(c["sample_rate"], c["seconds"]) for c in body["aux_ref_audios"]] == [(16000, 3.5), (32000, 9.0)]
    for bad in (wav_bytes(1.0, 16000), wav_bytes(12.0)):
        r = create(client, name="other", aux=[bad])
        assert r.status_code == 422 and r.json()["error"]["code"] == "ref_audio_length", r.text
    r = create(client, name="other", aux=[wav_bytes(4.0)] * 3)
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_aux_refs"
    assert [v["name"] for v in client.get("/voices").json()["voices"]] == ["narrator"]


def test_a_taken_name_is_409_and_keeps_the_first_voice(start):
    client = start()
    assert create(client, prompt_text="first").status_code == 201
    r = create(client, prompt_text="second")
    assert r.status_code == 409 and r.json()["error"]["code"] == "voice_exists"
    assert client.get("/voices/narrator").json()["prompt_text"] == "first"


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "has space", "a/b", "x" * 65, "ü"])
def test_bad_names_are_422(start, name):
    r = create(start(), name=name)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert "name" in r.json()["error"]["message"]


def test_a_64_character_name_with_dots_and_dashes_is_fine(start):
    name = "A1._-" + "x" * 59
    assert create(start(), name=name).status_code == 201


@pytest.mark.parametrize("field", ["ref_audio", "aux_ref_audio"])
def test_a_file_that_is_not_audio_is_415(start, field):
    client = start()
    r = create(client, ref=b"not audio at all" if field == "ref_audio" else REF,
               aux=[b"not audio at all"] if field == "aux_ref_audio" else ())  # fmt: skip
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_audio"
    assert field in r.json()["error"]["message"]
    assert client.get("/voices").json() == {"voices": []}


def test_a_2_second_main_clip_is_422_with_its_length(start):
    r = create(start(), ref=wav_bytes(2.0))
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "ref_audio_length" and "2.00 s" in error["message"]


@pytest.mark.parametrize(
    "defaults, words",
    [
        ({"top_k": 5, "no_such_parameter": 1}, "no_such_parameter"),
        ({"prompt_text": "x"}, "prompt_text"),  # the voice's own field, not a default
        ({"top_k": 1000}, "top_k"),
        ('{"top_p": 1' + "0" * 400 + "}", "out of range"),  # too large for a float: not a 500
        ({"temperature": 0}, "temperature"),
        ({"keep_random": "yes"}, "keep_random"),
        ({"top_k": True}, "top_k"),
        ({"text_lang": "klingon"}, "klingon"),
        ({"sample_steps": 5}, "sample_steps"),
        ("[1, 2]", "dict"),
        ("{not json", "JSON"),
    ],
)
def test_bad_defaults_are_422(start, defaults, words):
    r = create(start(), defaults=defaults)
    assert r.status_code == 422, r.text
    assert words in r.json()["error"]["message"]


def test_weights_a_voice_names_must_exist(start):
    r = create(start(), gpt_weights="GPT_weights_v2/missing.ckpt")
    assert r.status_code == 404 and r.json()["error"]["code"] == "gpt_weights_not_found"


def test_voices_survive_a_restart_with_identical_clip_bytes(start, tmp_path):
    aux = wav_bytes(3.5, 24000, fmt="FLAC")
    first = start()
    assert create(first, aux=[aux], defaults={"seed": 3}).status_code == 201
    before = first.get("/voices/narrator").json()
    first.__exit__(None, None, None)

    second = start()
    assert second.get("/voices/narrator").json() == before
    store: VoiceStore = second.app.state.voices
    assert [c.data for c in store.clips("narrator")] == [REF, aux]
    use = store.get_clips("narrator")
    assert (use.ref_audio, use.aux_ref_audios) == (REF, [aux])
    assert (use.prompt_text, use.prompt_lang, use.defaults) == (PROMPT["prompt_text"], "all_zh", {"seed": 3})
    assert (tmp_path / "data" / SQLITE_FILE).is_file()


def test_the_migration_makes_the_models_schema_on_an_empty_file_and_start_leaves_it_at_head(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert sa.inspect(engine).get_table_names() == []
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version", "voices", "voice_clips"}
    with engine.connect() as connection:
        # The migration and the ORM models describe the same tables (a model change needs a migration).
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()

    data = tmp_path / "data"
    with TestClient(create_app(Settings(weights_root=tmp_path, data_dir=data))):
        pass
    engine = make_engine(f"sqlite:///{data / SQLITE_FILE}")
    assert current_revision(engine) == head_revision() == "0001"
    engine.dispose()


def _store(tmp_path) -> VoiceStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    return VoiceStore(engine)


def _voice(name="v") -> NewVoice:
    return NewVoice(name=name, prompt_text="t", prompt_lang="en", clips=[Clip("ref.wav", REF, 32000, 4.0)])


def test_a_create_that_fails_midway_leaves_nothing(tmp_path):
    store = _store(tmp_path)
    assert_a_failed_create_leaves_nothing(store)
    store.close()


def assert_a_failed_create_leaves_nothing(store) -> None:
    """A create whose clip insert fails leaves no row, and the name stays free (any database)."""

    def fail_clip_inserts(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO VOICE_CLIPS"):
            raise RuntimeError("disk full (simulated)")

    event.listen(store.engine, "before_cursor_execute", fail_clip_inserts)
    with pytest.raises(RuntimeError, match="simulated"):
        store.create(_voice())
    event.remove(store.engine, "before_cursor_execute", fail_clip_inserts)

    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM voices")).scalar() == 0
        assert connection.execute(sa.text("SELECT count(*) FROM voice_clips")).scalar() == 0
    store.create(_voice())  # the name is free: nothing of the failed attempt holds it
    assert [v.name for v in store.list()] == ["v"]


def test_deleting_a_voice_deletes_its_clips_in_the_database(tmp_path):
    store = _store(tmp_path)
    store.create(_voice("a"))
    store.create(_voice("b"))
    store.delete("a")
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM voice_clips")).scalar() == 1
    store.close()


def test_database_url_is_used_when_given(start, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'voices.db'}"
    assert store_url(Settings(data_dir=tmp_path / "d")) == f"sqlite:///{(tmp_path / 'd').resolve() / SQLITE_FILE}"
    assert store_url(Settings(data_dir=tmp_path / "d", database_url=url)) == url
    pg = "postgresql+psycopg://gsv:secret@db.internal:5432/gsv"
    assert store_url(Settings(database_url=pg)) == pg

    client = start(database_url=url)
    assert create(client).status_code == 201
    assert (tmp_path / "elsewhere" / "voices.db").is_file()
    assert not (tmp_path / "data").exists()  # the data folder is not used when a URL is given


def test_the_data_folder_and_database_url_are_cli_flags(monkeypatch, tmp_path):
    from app.cli import build_settings

    monkeypatch.setenv("GSV_DATABASE_URL", "sqlite:///from-env.db")
    settings = build_settings(["--data-dir", str(tmp_path)])
    assert settings.data_dir == tmp_path and settings.database_url == "sqlite:///from-env.db"
    assert build_settings(["--database-url", "sqlite:///flag.db"]).database_url == "sqlite:///flag.db"


def test_a_wrong_method_is_405_naming_every_method_of_the_path(start):
    """Starlette would name only the first route's method; the path has one route per method."""
    client = start()
    for path, allowed in (("/voices", "GET, POST"), ("/voices/narrator", "DELETE, GET")):
        r = client.request("PUT", path)
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert r.headers["allow"] == allowed
