"""Stored voices in synthesis: /inference ``voice=NAME`` and api_v2's ``ref_audio_path=NAME`` speak
exactly as the same clip and prompt uploaded with the request, with the voice's defaults and models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.test_inference import REF, sovits_name

V2_GPT = "GPT_weights_v2/demo_v2-e15.ckpt"
PROMPT = {"prompt_text": "这是参考音频。", "prompt_lang": "all_zh"}
TEXT = {"text": "今天天气很好。", "text_lang": "all_zh", "seed": "3", "keep_random": "false", "media_type": "raw"}


@pytest.fixture(scope="module")
def client(demo_root, names, tmp_path_factory):
    settings = Settings(weights_root=demo_root, data_dir=tmp_path_factory.mktemp("data"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        models = {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2ProPlus")}
        r = c.post("/voices", data={"name": "demo", **PROMPT, **models}, files={"ref_audio": ("ref.wav", REF, "audio/wav")})
        assert r.status_code == 201, r.text
        r = c.post(
            "/voices",
            data={"name": "fast", **PROMPT, **models, "defaults": json.dumps({"speed_factor": 1.5})},
            files={"ref_audio": ("ref.wav", REF, "audio/wav")},
        )
        assert r.status_code == 201, r.text
        c.models = models
        yield c


def uploaded(client, **extra) -> np.ndarray:
    form = {**TEXT, **PROMPT, **client.models, **extra}
    r = client.post("/inference", data=form, files={"ref_audio_path": ("ref.wav", REF, "audio/wav")})
    assert r.status_code == 200, r.text
    return np.frombuffer(r.content, "<i2")


def test_inference_with_a_voice_equals_the_upload(client):
    r = client.post("/inference", data={**TEXT, "voice": "demo"})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.frombuffer(r.content, "<i2"), uploaded(client))


def test_a_voices_defaults_apply_unless_the_form_sets_them(client):
    with_defaults = client.post("/inference", data={**TEXT, "voice": "fast"})
    assert np.array_equal(np.frombuffer(with_defaults.content, "<i2"), uploaded(client, speed_factor="1.5"))
    overridden = client.post("/inference", data={**TEXT, "voice": "fast", "speed_factor": "1.0"})
    assert np.array_equal(np.frombuffer(overridden.content, "<i2"), uploaded(client))


def test_an_unknown_voice_or_no_reference_is_refused(client):
    r = client.post("/inference", data={**TEXT, "voice": "nobody"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "voice_not_found"
    r = client.post("/inference", data=TEXT)
    assert r.status_code == 422 and r.json()["error"]["code"] == "ref_audio_required"


def test_api_v2_speaks_a_stored_voice_by_name(client):
    body = {"text": TEXT["text"], "text_lang": "all_zh", "ref_audio_path": "demo", "seed": 3, "media_type": "raw"}
    r = client.post("/tts", json=body)  # no prompt_lang: the voice's
    assert r.status_code == 200, r.text
    assert np.array_equal(np.frombuffer(r.content, "<i2"), uploaded(client, top_k="15", batch_size="1",
                                                                    text_split_method="cut5"))  # fmt: skip
    r = client.post("/tts", json={**body, "ref_audio_path": "nobody"})
    assert r.status_code == 400  # neither a voice nor a file under the (unset) reference root
