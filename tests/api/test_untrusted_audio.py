"""Untrusted audio on every surface that takes a reference clip: each hostile clip answers a clear 4xx
in its surface's shape (or is served, when it is merely unusual) with bounded memory, and the service
keeps serving. The requests run in a child process under an address-space limit (tests/bounded.py),
each with its peak memory growth measured."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from app.check_voices import problems
from app.main import create_app
from app.settings import Settings, store_url
from app.store.voices import Clip, NewVoice, open_voice_store
from tests.api.test_inference import sovits_name
from tests.audio_files import clip, flac_claiming, silent_flac
from tests.bounded import run_bounded

MAX_GROWTH_MB = 300  # peak memory growth of the service for any refused request here
# A served request also runs synthesis (the models' activations, worker threads' first allocations):
# measured here 0-350 MB whatever the clip; the resampling kernel alone was 12.8 GB before.
MAX_SERVED_GROWTH_MB = 512
PROMPT = {"prompt_text": "这是参考音频。", "prompt_lang": "中文"}


def models(names) -> dict:
    """v2ProPlus (its decoder reads every auxiliary clip), for one request."""
    return {
        "sovits_weights": sovits_name(names, "v2ProPlus"),
        "gpt_weights": next(n for n in names["gpt"] if "v2ProPlus" in n),
    }


def poison(settings: Settings, name: str, *clips: bytes, **voice) -> None:
    """A voice stored as an older release stored it: no rule checked its clips."""
    store = open_voice_store(store_url(settings))
    try:
        stored = [Clip(f"old{i}.wav", data, 16000, 4.0) for i, data in enumerate(clips)]
        store.create(NewVoice(name=name, prompt_text=PROMPT["prompt_text"], prompt_lang="all_zh", clips=stored, **voice))
    finally:
        store.close()


@pytest.fixture(scope="module")
def results(demo_root, names, tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrusted-audio")
    settings = {"weights_root": str(demo_root), "data_dir": str(folder / "data"), "web_ui": False}
    pair = models(names)
    files = {
        "ok": clip(4.0, 32000),
        "ok-aux": clip(4.0, 32000, seed=4),
        "50021hz": clip(4.0, 50_021),
        "8004hz": clip(4.0, 8004, seed=1),
        "8012hz": clip(4.0, 8012, seed=2),
        "8036hz": clip(4.0, 8036, seed=3),
        "2147483647hz": clip(4.0, 16000)[:24] + (2_147_483_647).to_bytes(4, "little") + clip(4.0, 16000)[28:],
        "bomb": silent_flac(300),
        "aux-60s": clip(60.0, 16000, fmt="FLAC"),
        "aux-300s": clip(300.0, 16000, fmt="FLAC"),
        "600-samples": clip(600 / 32000, 32000),
        "claims-2^36": flac_claiming(2**36 - 1, clip(4.0, 16000, fmt="FLAC")),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    poison(Settings(**settings), "poisoned", files["2147483647hz"], **pair)
    poison(Settings(**settings), "short-aux", files["ok"], files["600-samples"], **pair)  # as older releases allowed

    def inference(case: str, ref: str = "ok", aux: tuple[str, ...] = (), **fields) -> dict:
        form = {"text": "你好。", "text_lang": "中文", "seed": "1", "keep_random": "false", **PROMPT, **pair, **fields}
        refs = [["ref_audio_path", f"{ref}.wav", str(folder / ref)]] if ref else []
        aux_files = [["aux_ref_audio_paths", f"{a}.wav", str(folder / a)] for a in aux]
        return {"id": case, "method": "POST", "path": "/inference", "data": form, "files": refs + aux_files}

    def voice(case: str, ref: str) -> dict:
        form = {"name": case.replace("^", ""), **PROMPT}
        return {"id": case, "method": "POST", "path": "/voices", "data": form,
                "files": [["ref_audio", f"{ref}.wav", str(folder / ref)]]}  # fmt: skip

    requests = [
        inference("main-ordinary", "ok-aux"),  # the baselines: ordinary clips, not seen before
        inference("aux-ordinary", aux=("ok-aux",)),
        inference("main-50021hz", "50021hz"),
        inference("aux-8004hz", aux=("8004hz",)),
        inference("aux-8012hz", aux=("8012hz",)),
        inference("aux-8036hz", aux=("8036hz",)),
        inference("aux-2147483647hz", aux=("2147483647hz",)),
        inference("main-bomb", "bomb"),
        inference("aux-bomb", aux=("bomb",)),
        inference("aux-60s", aux=("aux-60s",)),
        inference("aux-300s", aux=("aux-300s",)),
        inference("aux-600-samples", aux=("600-samples",)),
        inference("main-claims-2^36", "claims-2^36"),
        inference("nine-aux", aux=("ok",) * 9),
        voice("voice-claims-2^36", "claims-2^36"),
        voice("voice-50021hz", "50021hz"),
        voice("voice-600-samples", "600-samples"),
        inference("use-poisoned", None, voice="poisoned"),
        inference("use-short-aux", None, voice="short-aux"),
        {"id": "openai-poisoned", "method": "POST", "path": "/v1/audio/speech",
         "json": {"model": "tts-1", "voice": "poisoned", "input": "你好。"}},
        {"id": "openai-short-aux", "method": "POST", "path": "/v1/audio/speech",
         "json": {"model": "tts-1", "voice": "short-aux", "input": "你好。"}},
        {"id": "tts-poisoned", "method": "POST", "path": "/tts",
         "json": {"text": "你好。", "text_lang": "zh", "ref_audio_path": "poisoned", "prompt_lang": "zh"}},
        inference("still-serving"),
    ]  # fmt: skip
    spec = {"settings": settings, "warmup": [inference("warmup")], "requests": requests}
    return run_bounded("api", spec, folder)


def check(results, case: str, status: int, code: str | None = None, max_growth_mb: float = MAX_GROWTH_MB) -> dict:
    result = results[case]
    assert result["status"] == status, result
    assert result["growth_mb"] < max_growth_mb, result
    if code is not None:
        assert result["body"]["error"]["code"] == code, result
    return result


@pytest.mark.parametrize(
    "case, baseline",
    [
        ("main-50021hz", "main-ordinary"),
        ("aux-8004hz", "aux-ordinary"),
        ("aux-8012hz", "aux-ordinary"),
        ("aux-8036hz", "aux-ordinary"),
        ("voice-50021hz", None),
    ],
)
def test_unusual_rates_are_served_in_bounded_memory(results, case, baseline):
    """Before: 12.8 GB for the 50,021 Hz clip's resampling kernel, 250-314 MB kept per odd rate."""
    if baseline is None:
        check(results, case, 201, max_growth_mb=MAX_SERVED_GROWTH_MB)
        return
    check(results, baseline, 200, max_growth_mb=MAX_SERVED_GROWTH_MB)
    check(results, case, 200, max_growth_mb=MAX_SERVED_GROWTH_MB)


@pytest.mark.parametrize(
    "case, code",
    [
        ("aux-2147483647hz", "ref_audio_sample_rate"),
        ("main-bomb", "ref_audio_length"),
        ("aux-bomb", "ref_audio_length"),
        ("aux-60s", "ref_audio_length"),
        ("aux-300s", "ref_audio_length"),
        ("aux-600-samples", "ref_audio_length"),
        ("main-claims-2^36", "ref_audio_length"),
        ("voice-claims-2^36", "ref_audio_length"),
        ("voice-600-samples", "ref_audio_length"),
        ("nine-aux", "too_many_aux_refs"),
        ("use-poisoned", "stored_voice_invalid"),
        ("use-short-aux", "stored_voice_invalid"),
    ],
)
def test_hostile_clips_are_a_clear_422_in_bounded_memory(results, case, code):
    assert check(results, case, 422, code)["body"]["error"]["message"]


def test_a_poisoned_voice_answers_each_surface_in_its_own_shape(results):
    for case in ("openai-poisoned", "openai-short-aux"):
        body = check(results, case, 400)["body"]
        assert body["error"]["code"] == "stored_voice_invalid" and body["error"]["type"] == "invalid_request_error"
        assert "store it again" in body["error"]["message"].lower()
    body = check(results, "tts-poisoned", 400)["body"]
    assert body["code"] == "stored_voice_invalid" and "poisoned" in body["message"]


def test_the_service_keeps_serving(results):
    check(results, "still-serving", 200)


def test_gsv_check_voices_lists_the_voices_that_break_the_rules(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", weights_root=tmp_path)
    poison(settings, "fine", clip(4.0, 16000))
    poison(settings, "too-long", clip(12.0, 16000))
    poison(settings, "bomb", silent_flac(300))
    found = dict(problems(settings))
    assert set(found) == {"too-long", "bomb"} and "10 s" in found["bomb"]
    env = {**os.environ, "GSV_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run([sys.executable, "-m", "app.check_voices"], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "2 stored voice(s)" in done.stdout and "too-long:" in done.stdout


def test_the_reference_memory_budget_is_a_413(make_client):
    client = make_client(reference_memory_mb=16)
    files = [("ref_audio", ("r.wav", clip(10.0, 192_000), "audio/wav"))]
    r = client.post("/voices", data={"name": "big", **PROMPT}, files=files)
    assert r.status_code == 413 and r.json()["error"]["code"] == "reference_budget_exceeded", r.text
    r = make_client().post("/voices", data={"name": "big", **PROMPT}, files=files)
    assert r.status_code == 201, r.text


def test_set_refer_audio_refuses_paths_outside_its_root_as_api_v2_does(tmp_path):
    root, outside = tmp_path / "refs", tmp_path / "outside.wav"
    root.mkdir()
    outside.write_bytes(clip(4.0))
    (root / "link.wav").symlink_to(outside)
    (root / "ok.wav").write_bytes(clip(4.0))
    (root / "bomb.flac").write_bytes(silent_flac(300))
    settings = Settings(weights_root=tmp_path, data_dir=tmp_path / "data", ref_audio_root=root, web_ui=False)
    with TestClient(create_app(settings)) as client:
        for name in (str(outside), "../outside.wav", "link.wav", "bomb.flac", "missing.wav"):
            r = client.get("/set_refer_audio", params={"refer_audio_path": name})
            assert r.status_code == 400 and r.json()["message"] == "set refer audio failed", (name, r.text)
        assert client.get("/set_refer_audio", params={"refer_audio_path": "ok.wav"}).json() == {"message": "success"}


def test_openais_own_client_reads_a_poisoned_voices_refusal(demo_root, tmp_path):
    """The real ``openai`` client gets a BadRequestError it can read (code, message), not a 500."""
    import openai

    from tests.api.conftest import live_server

    settings = Settings(weights_root=demo_root, data_dir=tmp_path / "data", web_ui=False)
    poison(settings, "poisoned", silent_flac(300))
    with live_server(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.speech.create(model="tts-1", voice="poisoned", input="你好。")
    error = caught.value.body
    assert caught.value.status_code == 400 and error["code"] == "stored_voice_invalid", error
    assert "poisoned" in error["message"] and "10 s" in error["message"]
