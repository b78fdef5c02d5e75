"""/inference and /stop end to end over HTTP, on demo weights (random models in upstream's layout)."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server

V2_GPT = "GPT_weights_v2/demo_v2-e15.ckpt"


def sovits_name(names, version):
    folder = "SoVITS_weights" if version == "v1" else f"SoVITS_weights_{version}"
    return next(n for n in names["sovits"] if n.startswith(folder + "/"))


def gpt_name(names, version):
    folder = "GPT_weights" if version == "v1" else "GPT_weights_v2"
    return next(n for n in names["gpt"] if n.startswith(folder + "/"))


@pytest.fixture
def server(demo_root):
    def make(**overrides):
        return TestClient(create_app(Settings(weights_root=demo_root, **overrides)), raise_server_exceptions=False)

    return make


def wav_bytes(seconds: float, rate: int = 32000, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buf = io.BytesIO()
    sf.write(buf, tone.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


REF = wav_bytes(4.0)


def form(**fields):
    base = {"text": "今天天气很好。", "text_lang": "中文", "prompt_text": "这是参考音频。", "prompt_lang": "中文"}
    base.update({k: str(v) for k, v in fields.items()})
    return base


def post(client, files=None, **fields):
    return client.post("/inference", data=form(**fields), files=files or {"ref_audio_path": ("ref.wav", REF, "audio/wav")})


@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
def test_every_version_speaks_wav(server, names, version):
    with server() as client:
        r = post(client, gpt_weights=gpt_name(names, version), sovits_weights=sovits_name(names, version), seed=3, keep_random="false")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["x-seed"] == "3"
    audio, rate = sf.read(io.BytesIO(r.content), dtype="int16")
    assert rate == int(r.headers["x-sample-rate"]) == 32000
    assert sf.info(io.BytesIO(r.content)).subtype == "PCM_16"
    assert len(audio) > 0 and np.isfinite(audio).all()


def test_same_seed_same_audio_and_keep_random_draws_new_seeds(server, names):
    pick = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}
    with server() as client:
        a = post(client, seed=11, keep_random="false", top_k=15, **pick)
        b = post(client, seed=11, keep_random="false", top_k=15, **pick)
        seeds = {post(client, seed=11, keep_random="true", **pick).headers["x-seed"] for _ in range(2)}
    assert a.content == b.content
    assert "11" not in seeds or len(seeds) == 2


def test_current_models_come_from_the_weight_endpoints(server, names):
    with server() as client:
        assert client.post("/init_t2s_weights", json={"weights_path": V2_GPT}).status_code == 200
        body = {"sovits_path": sovits_name(names, "v2ProPlus")}
        assert client.post("/change_sovits_weights", json=body).status_code == 200
        assert post(client).status_code == 200


def test_prompt_free_and_aux_references(server, names):
    pick = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}
    files = [
        ("ref_audio_path", ("ref.wav", REF, "audio/wav")),
        ("aux_ref_audio_paths", ("aux1.flac", wav_bytes(3.5, 16000, "FLAC"), "audio/flac")),
        ("aux_ref_audio_paths", ("aux2.ogg", wav_bytes(5.0, 48000, "OGG", "VORBIS"), "audio/ogg")),
    ]
    with server() as client:
        assert post(client, files=files, **pick).status_code == 200
        assert post(client, prompt_text="", **pick).status_code == 200
        assert post(client, ref_text_free="true", **pick).status_code == 200


@pytest.mark.parametrize("seconds", [1.5, 12.0])
def test_reference_outside_3_to_10_seconds_is_422_with_its_duration(server, seconds):
    with server() as client:
        r = post(client, files={"ref_audio_path": ("r.wav", wav_bytes(seconds), "audio/wav")})
    assert r.status_code == 422
    assert f"{seconds:.2f} s" in r.json()["error"]["message"]


@pytest.mark.parametrize("payload", [b"not audio at all", b""])
def test_undecodable_or_empty_upload(server, payload):
    with server() as client:
        r = post(client, files={"ref_audio_path": ("r.wav", payload, "audio/wav")})
    assert r.status_code in (415, 422)
    assert r.json()["error"]["code"] in ("unsupported_audio", "empty_audio")


@pytest.mark.parametrize(
    "fields",
    [
        {"text_lang": "Klingon"},
        {"top_k": 0},
        {"temperature": 0},
        {"batch_size": 0},
        {"sample_steps": 5},
        {"text_split_method": "cut9"},
        {"text": ""},
        {"speed_factor": 0},
    ],
)
def test_bad_parameters_are_422(server, fields):
    with server() as client:
        assert post(client, **fields).status_code == 422


def test_unknown_weights_are_404_and_language_v1_cannot_speak_is_422(server, names):
    with server() as client:
        assert post(client, sovits_weights="SoVITS_weights_v2/nope.pth").status_code == 404
        r = post(client, text="안녕하세요", text_lang="韩文", sovits_weights=sovits_name(names, "v1"), gpt_weights=gpt_name(names, "v1"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "language_not_supported"


def test_reference_by_name_is_confined_to_its_root(server, tmp_path):
    (tmp_path / "voice.wav").write_bytes(REF)
    with server(ref_audio_root=tmp_path) as client:
        ok = client.post("/inference", data={**form(), "ref_audio_path": "voice.wav"})
        escape = client.post("/inference", data={**form(), "ref_audio_path": "../voice.wav"})
    assert ok.status_code == 200
    assert escape.status_code == 422
    with server() as client:  # names are refused when no root is configured
        assert client.post("/inference", data={**form(), "ref_audio_path": "voice.wav"}).status_code == 422


# Long enough (40 pieces, decoded one by one) that a request is still running when the test acts.
# The queue test needs two requests alive at once, so it sends ten times as many pieces.
LONG_TEXT = "。".join(["今天天气很好我们一起去公园散步吧"] * 40) + "。"
QUEUE_TEXT = "。".join(["今天天气很好我们一起去公园散步吧"] * 400) + "。"


def _in_background(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", fn()))
    thread.start()
    return thread, out


def test_stop_cancels_one_request_by_id_and_the_service_keeps_serving(server, names):
    pick = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}
    with server() as client:
        thread, out = _in_background(
            lambda: client.post(
                "/inference",
                data=form(text=LONG_TEXT, text_split_method="cut3", batch_size=1, **pick),
                files={"ref_audio_path": ("ref.wav", REF, "audio/wav")},
                headers={"X-Request-ID": "long-job"},
            )
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if client.post("/stop", json={"request_id": "long-job"}).json()["cancelled"] == 1:
                break
            time.sleep(0.05)
        thread.join(30)
        r = out["r"]
        assert r.status_code == 409 and r.json()["error"]["code"] == "synthesis_cancelled"
        assert client.post("/stop", json={"request_id": "nobody"}).json() == {"cancelled": 0}
        assert post(client, **pick).status_code == 200


def test_full_queue_answers_429_with_retry_after(server, names):
    pick = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}
    with server(max_queue=1, gpt_slots=1) as client:  # one request runs at a time, one may wait
        scheduler = client.app.state.engine.scheduler

        def start_slow_request_until(state: tuple[int, int]):
            started = _in_background(
                lambda: client.post(
                    "/inference",
                    data=form(text=QUEUE_TEXT, text_split_method="cut3", batch_size=1, **pick),
                    files={"ref_audio_path": ("ref.wav", REF, "audio/wav")},
                )
            )
            deadline = time.monotonic() + 180
            while scheduler.pending() != state and time.monotonic() < deadline:
                time.sleep(0.05)
            return started

        # One at a time: sent together, the second could reach the one-place queue before the worker
        # has taken the first, and be refused itself.
        slow = [start_slow_request_until((0, 1)), start_slow_request_until((1, 1))]  # one runs, one waits
        r = post(client, **pick)
        client.post("/stop", json={})  # cancel everything
        for thread, _ in slow:
            thread.join(30)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "queue_full"


def test_readyz_warns_about_demo_weights(server):
    with server() as client:
        body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert any("DEMO WEIGHTS" in w for w in body["warnings"])


def test_switching_weights_mid_request_neither_crashes_nor_mixes_models(server, names):
    medium = "。".join(["今天天气很好我们一起去公园散步吧"] * 6) + "。"
    request = form(text=medium, text_split_method="cut3", batch_size=1, seed=5, keep_random="false")
    files = {"ref_audio_path": ("ref.wav", REF, "audio/wav")}
    with server() as client:
        client.post("/init_t2s_weights", json={"weights_path": V2_GPT})
        client.post("/change_sovits_weights", json={"sovits_path": sovits_name(names, "v2")})
        undisturbed = client.post("/inference", data=request, files=files)
        thread, out = _in_background(lambda: client.post("/inference", data=request, files=files))
        scheduler = client.app.state.engine.scheduler
        deadline = time.monotonic() + 20
        while scheduler.pending()[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # until it runs
        switched = client.post("/change_sovits_weights", json={"sovits_path": sovits_name(names, "v2ProPlus")})
        thread.join(60)
        after = client.post("/inference", data=request, files=files)
    assert undisturbed.status_code == switched.status_code == out["r"].status_code == after.status_code == 200
    assert out["r"].content == undisturbed.content  # the whole request used the models it started with
    assert after.content != undisturbed.content  # later requests use the new current model


def test_readyz_follows_the_worker_and_the_current_models(server, demo_root, tmp_path):
    with server() as client:
        assert client.get("/readyz").status_code == 200
        client.app.state.engine.scheduler.close()  # the worker thread ends
        r = client.get("/readyz")
    assert r.status_code == 503 and "worker is not running" in " ".join(r.json()["problems"])

    # A copy of the demo weights whose shared models (HuBERT) are gone: the first synthesis fails
    # to load the voice, and readiness says so until it loads.
    broken = tmp_path / "weights"
    shutil.copytree(demo_root, broken, copy_function=os.link)
    hubert = next(broken.rglob("chinese-hubert-base"))
    shutil.rmtree(hubert)
    with TestClient(create_app(Settings(weights_root=broken)), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200  # nothing tried yet: the files look fine
        assert post(client).status_code == 503
        r = client.get("/readyz")
    assert r.status_code == 503 and "failed to load" in " ".join(r.json()["problems"])


def test_an_abandoned_request_stops_its_synthesis(demo_root, names, caplog):
    """A client that gives up after 1 s must not keep the worker busy (it cost 9 s before)."""
    app = create_app(Settings(weights_root=demo_root))
    with live_server(app) as base:
        pick = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}
        ref = {"ref_audio_path": ("ref.wav", REF, "audio/wav")}
        warm = httpx.post(f"{base}/inference", data=form(**pick), files=ref, timeout=120)
        assert warm.status_code == 200  # the voice is loaded: the long request goes straight to the worker
        data = form(text=QUEUE_TEXT, text_split_method="cut3", batch_size=1, **pick)
        with caplog.at_level("INFO"), pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/inference", data=data, files=ref, timeout=1.0)
        gave_up = time.monotonic()
        scheduler = app.state.engine.scheduler
        while scheduler.pending() != (0, 0) and time.monotonic() - gave_up < 30:
            time.sleep(0.05)
        idle_after = time.monotonic() - gave_up
    # QUEUE_TEXT takes minutes to synthesise; the worker is free within a poll and a decode step.
    assert idle_after < 5, idle_after
    assert any("client went away" in r.getMessage() for r in caplog.records)


def test_healthz_answers_within_a_second_while_the_service_is_busy(server, names):
    """Heavy synthesis and long /phonemize calls run off the event loop: the probe stays fast."""
    pick = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}
    mixed = "我今年25岁，住在3.5号楼。Hello World, it's 9:30 on 2024-05-01! " * 300  # ~18,000 characters
    with server() as client:
        assert post(client, **pick).status_code == 200  # voice loaded: the load is not what is measured
        busy = [
            _in_background(lambda: client.post("/inference", data=form(text=QUEUE_TEXT, text_split_method="cut3", **pick),
                                               files={"ref_audio_path": ("ref.wav", REF, "audio/wav")})),
            _in_background(lambda: client.post("/phonemize", json={"text": mixed, "text_lang": "auto"})),
            # A digit run: once a regular expression backtracked on it for minutes, holding the GIL.
            _in_background(lambda: client.post("/phonemize", json={"text": "9" * 5000, "text_lang": "en"})),
        ]
        time.sleep(0.5)
        worst = 0.0
        for _ in range(20):
            began = time.monotonic()
            assert client.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - began)
            time.sleep(0.1)
        running = client.app.state.engine.scheduler.pending()
        client.post("/stop", json={})
        for thread, _ in busy:
            thread.join(120)
    assert running[1] == 1  # the synthesis was running throughout
    assert worst < 1.0, worst
