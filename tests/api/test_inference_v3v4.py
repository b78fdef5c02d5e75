"""v3/v4 over HTTP on the corpus's full-size random weights: choosing a v3 base, a v3 LoRA and a v4 LoRA,
/inference at 24 kHz (v3), 48 kHz (v4) and 48 kHz (v3 with super_sampling) with the requested
sample_steps, and the refusals (LoRA without its base: 409; prompt-free: 422; super_sampling without
the AP-BWE model: 409). One model in memory at a time."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from app.engine.models.cfm import FlowMatchingSampler
from app.engine.registry import (
    BANDWIDTH_EXTENSION_DIR,
    BERT_DIR,
    BIGVGAN_V3_DIR,
    HUBERT_DIR,
    PRETRAINED_GPT,
    PRETRAINED_SOVITS,
    VOCODER_V4,
)
from app.main import create_app
from app.settings import Settings
from tests.conftest import conformance_dir, generate_weights, write_bandwidth_extension

pytestmark = pytest.mark.fullsize

V3_LORA = "SoVITS_weights_v3/voice_e2_s100_l32.pth"
V4_LORA = "SoVITS_weights_v4/voice_e2_s100_l32.pth"
GPT = PRETRAINED_GPT["v3"]
FILES = {
    GPT: "s1_v2_tiny",
    PRETRAINED_SOVITS["v3"]: "sovits_v3_base_full",
    PRETRAINED_SOVITS["v4"]: "sovits_v4_base_full",
    V3_LORA: "sovits_v3_lora_full",
    V4_LORA: "sovits_v4_lora_full",
    BIGVGAN_V3_DIR: "bigvgan_v3_full",
    VOCODER_V4: "vocoder_v4_full",
    HUBERT_DIR: "hubert_tiny",
    BERT_DIR: "bert_tiny",
}


def _place(source: Path, target: Path) -> None:
    """Hard links where possible: the full-size files are 1.5 GB each."""
    target.parent.mkdir(parents=True, exist_ok=True)

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link_or_copy)
    else:
        link_or_copy(source, target)


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory) -> Path:
    import json

    index = json.loads((conformance_dir() / "models" / "index.json").read_text(encoding="utf-8"))
    root = tmp_path_factory.mktemp("v3v4-weights")
    for rel, name in FILES.items():
        spec = index["weights"][name]
        _place(generate_weights(spec["layout"], spec["seed"]), root / rel)
    return root


@pytest.fixture(scope="module")
def client(weights_root):
    with TestClient(
        create_app(Settings(weights_root=weights_root, max_loaded_models=1)), raise_server_exceptions=False
    ) as c:
        yield c


def _wav(seconds: float = 4.0, rate: int = 32000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(
        buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16"
    )
    return buf.getvalue()


def _infer(client, sovits: str, **fields):
    data = {"text": "你好。", "text_lang": "中文", "prompt_text": "这是参考音频。", "prompt_lang": "中文"}
    data |= {"gpt_weights": GPT, "sovits_weights": sovits, "seed": "5", "keep_random": "false"}
    data |= {k: str(v) for k, v in fields.items()}
    return client.post("/inference", data=data, files={"ref_audio_path": ("ref.wav", _wav(), "audio/wav")})


@pytest.mark.parametrize("sovits", [PRETRAINED_SOVITS["v3"], V3_LORA, V4_LORA])
def test_choosing_a_v3_or_v4_model_reports_what_applies(client, sovits):
    r = client.post("/change_sovits_weights", json={"sovits_path": sovits})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sample_steps_applies"] is True
    assert body["aux_refs_apply"] is False
    assert body["ref_text_free_allowed"] is False
    assert body["super_sampling_available"] is False  # no AP-BWE model installed yet (only v3 could use it)


@pytest.mark.parametrize(
    ("sovits", "rate", "steps"),
    [(PRETRAINED_SOVITS["v3"], 24000, 4), (V3_LORA, 24000, 4), (V4_LORA, 48000, 8)],
)
def test_inference_answers_at_the_vocoder_rate_with_the_requested_steps(
    client, monkeypatch, sovits, rate, steps
):
    used_steps = []
    original = FlowMatchingSampler.inference

    def spy(self, mu, x_lens, prompt, n_timesteps, *args, **kwargs):
        used_steps.append(n_timesteps)
        return original(self, mu, x_lens, prompt, n_timesteps, *args, **kwargs)

    monkeypatch.setattr(FlowMatchingSampler, "inference", spy)
    r = _infer(client, sovits, sample_steps=steps)
    assert r.status_code == 200, r.text
    audio, file_rate = sf.read(io.BytesIO(r.content), dtype="int16")
    assert file_rate == int(r.headers["x-sample-rate"]) == rate
    assert len(audio) > 0
    assert used_steps and set(used_steps) == {steps}


@pytest.mark.parametrize("fields", [{"prompt_text": ""}, {"ref_text_free": "true"}])
def test_prompt_free_synthesis_is_422(client, fields):
    r = _infer(client, V4_LORA, **fields)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "prompt_text_required"
    assert "prompt_text" in error["message"]


def test_lora_without_its_base_is_409(tmp_path):
    spec_root = tmp_path / "weights"
    _place(generate_weights("sovits_v3_lora_full", 1), spec_root / V3_LORA)
    with TestClient(create_app(Settings(weights_root=spec_root)), raise_server_exceptions=False) as c:
        r = c.post("/change_sovits_weights", json={"sovits_path": V3_LORA})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "lora_base_missing"
    assert PRETRAINED_SOVITS["v3"] in r.json()["error"]["message"]


def test_super_sampling_on_v3_answers_48k_with_the_ap_bwe_model_and_409_without(client, weights_root):
    r = _infer(client, PRETRAINED_SOVITS["v3"], super_sampling="true", sample_steps=4)
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "super_sampling_model_missing"
    assert BANDWIDTH_EXTENSION_DIR in error["message"]

    write_bandwidth_extension(weights_root / BANDWIDTH_EXTENSION_DIR, seed=3)  # official size, random
    r = client.post("/change_sovits_weights", json={"sovits_path": PRETRAINED_SOVITS["v3"]})
    assert r.json()["super_sampling_available"] is True
    r = _infer(client, PRETRAINED_SOVITS["v3"], super_sampling="true", sample_steps=4)
    assert r.status_code == 200, r.text
    audio, rate = sf.read(io.BytesIO(r.content), dtype="int16")
    assert rate == int(r.headers["x-sample-rate"]) == 48000
    assert len(audio) > 0
