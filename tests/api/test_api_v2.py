"""Upstream api_v2 as a drop-in, on demo weights: requests exactly as api_v2's own docstring shows them,
its setters, its error shape, and /control off by default."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import urllib.parse

import av
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.test_inference import REF, sovits_name

V2_GPT = "GPT_weights_v2/demo_v2-e15.ckpt"
REF_NAME = "archive_jingyuan_1.wav"
# api_v2.py's docstring, verbatim but for the host and port.
DOC_GET = (
    "/tts?text=先帝创业未半而中道崩殂，今天下三分，益州疲弊，此诚危急存亡之秋也。&text_lang=zh"
    "&ref_audio_path=archive_jingyuan_1.wav&prompt_lang=zh&prompt_text=我是「罗浮」云骑将军景元。不必拘谨，"
    "「将军」只是一时的身份，你称呼我景元便可&text_split_method=cut5&batch_size=1&media_type=wav&streaming_mode=true"
)
DOC_POST = {
    "text": "先帝创业未半而中道崩殂。",
    "text_lang": "zh",
    "ref_audio_path": REF_NAME,
    "aux_ref_audio_paths": [],
    "prompt_text": "我是「罗浮」云骑将军景元。",
    "prompt_lang": "zh",
    "top_k": 15,
    "top_p": 1,
    "temperature": 1,
    "text_split_method": "cut5",
    "batch_size": 1,
    "batch_threshold": 0.75,
    "split_bucket": True,
    "speed_factor": 1.0,
    "fragment_interval": 0.3,
    "seed": -1,
    "parallel_infer": True,
    "repetition_penalty": 1.35,
    "sample_steps": 32,
    "super_sampling": False,
    "streaming_mode": False,
    "overlap_length": 2,
    "min_chunk_length": 16,
}


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    (root / REF_NAME).write_bytes(REF)
    (root / "other.wav").write_bytes(REF)
    return root


@pytest.fixture(scope="module")
def client(demo_root, ref_root, names):
    settings = Settings(weights_root=demo_root, ref_audio_root=ref_root)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.get("/set_gpt_weights", params={"weights_path": V2_GPT}).json() == {"message": "success"}
        r = c.get("/set_sovits_weights", params={"weights_path": sovits_name(names, "v2ProPlus")})
        assert r.json() == {"message": "success"}
        yield c


def test_the_docstring_get_request_streams_wav(client):
    r = client.get(DOC_GET)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    with av.open(io.BytesIO(r.content)) as container:
        frames = sum(f.samples for f in container.decode(audio=0))
    assert frames > 32000  # several sentences of audio at 32 kHz


def test_the_docstring_post_request_answers_wav(client):
    r = client.post("/tts", json=DOC_POST)
    assert r.status_code == 200, r.text
    assert r.content[:4] == b"RIFF" and r.headers["content-type"] == "audio/wav"


@pytest.mark.parametrize("media_type", ["wav", "raw", "ogg", "aac"])
@pytest.mark.parametrize("streaming_mode", [0, 1, 2, 3, "true", "false"])
def test_every_api_v2_media_type_and_streaming_mode(client, media_type, streaming_mode):
    query = {**DOC_POST, "seed": 7, "media_type": media_type, "streaming_mode": streaming_mode}
    query.pop("aux_ref_audio_paths")
    r = client.get("/tts", params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"audio/{media_type}"
    if media_type == "raw":
        assert len(r.content) > 0 and len(r.content) % 2 == 0
    else:
        with av.open(io.BytesIO(r.content)) as container:
            assert sum(f.samples for f in container.decode(audio=0)) > 0


def test_a_seeded_request_is_the_same_as_on_inference(client):
    """The same engine call: /tts with api_v2's defaults equals /inference given the same values."""
    body = {**DOC_POST, "seed": 11, "media_type": "raw"}
    via_api_v2 = client.post("/tts", json=body).content
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.items()
            if k not in ("aux_ref_audio_paths", "ref_audio_path")}  # fmt: skip
    form.update(keep_random="false", text_lang="zh", prompt_lang="zh", streaming_mode="0")
    r = client.post("/inference", data=form, files={"ref_audio_path": ("ref.wav", REF, "audio/wav")})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.frombuffer(r.content, "<i2"), np.frombuffer(via_api_v2, "<i2"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ref_audio_path": None}, "ref_audio_path is required"),
        ({"text": ""}, "text is required"),
        ({"text_lang": None}, "text_lang is required"),
        ({"text_lang": "klingon"}, "text_lang: klingon is not supported"),
        ({"prompt_lang": "xx"}, "prompt_lang: xx is not supported"),
        ({"media_type": "wma"}, "media_type: wma is not supported"),
        ({"text_split_method": "cut9"}, "text_split_method:cut9 is not supported"),
        ({"streaming_mode": 7}, "the value of streaming_mode must be"),
        ({"ref_audio_path": "missing.wav"}, "no file"),
        ({"ref_audio_path": "../../etc/passwd"}, "ref_audio_path"),
        ({"top_k": 0}, "top_k"),
        ({"speed_factor": 9}, "speed_factor"),
    ],
)
def test_refusals_are_api_v2_shaped_400s(client, change, message):
    r = client.post("/tts", json={**DOC_POST, **change})
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


def test_text_lang_is_case_insensitive_as_in_api_v2(client):
    r = client.post("/tts", json={**DOC_POST, "text_lang": "ZH", "prompt_lang": "Zh", "seed": 1})
    assert r.status_code == 200, r.text


def test_weight_setters_answer_success_or_400(client, names):
    r = client.get("/set_gpt_weights", params={"weights_path": "GPT_weights_v2/nope.ckpt"})
    assert r.status_code == 400 and r.json()["message"] == "change gpt weight failed"
    assert client.get("/set_sovits_weights").json() == {"message": "sovits weight path is required"}
    r = client.get("/set_sovits_weights", params={"weights_path": "/etc/passwd"})
    assert r.status_code == 400
    r = client.get("/set_sovits_weights", params={"weights_path": sovits_name(names, "v2ProPlus")})
    assert r.json() == {"message": "success"}


def test_set_refer_audio_sets_the_reference_tts_uses_when_it_names_none(client):
    r = client.get("/set_refer_audio", params={"refer_audio_path": "missing.wav"})
    assert r.status_code == 400 and r.json()["message"] == "set refer audio failed"
    assert client.get("/set_refer_audio", params={"refer_audio_path": "other.wav"}).json() == {"message": "success"}
    body = {k: v for k, v in DOC_POST.items() if k != "ref_audio_path"}
    r = client.post("/tts", json={**body, "seed": 5})
    assert r.status_code == 200, r.text


def test_control_is_refused_unless_enabled(client):
    assert client.get("/control").status_code == 400
    r = client.get("/control", params={"command": "exit"})
    assert r.status_code == 403 and "GSV_ALLOW_CONTROL" in r.json()["message"]
    assert client.get("/control", params={"command": "format-disk"}).status_code == 400
    assert client.get("/healthz").status_code == 200  # still serving


def test_control_exit_stops_the_service_when_enabled(tmp_path):
    """A real server process with GSV_ALLOW_CONTROL: /control?command=exit answers, then the process
    ends after a graceful shutdown (the engine stopped)."""
    port = 20000 + int(time.time() * 1000) % 20000
    env = {**os.environ, "GSV_ALLOW_CONTROL": "true", "GSV_WEIGHTS_ROOT": str(tmp_path)}
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        r = httpx.get(f"{base}/control?" + urllib.parse.urlencode({"command": "exit"}), timeout=10)
        assert r.status_code == 200 and r.json() == {"message": "exit accepted"}
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit status -15)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "engine stopped" in (tmp_path / "server.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
