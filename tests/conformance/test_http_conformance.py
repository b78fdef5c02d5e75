"""Golden audio over HTTP: one model-corpus case per model family sent to ``/inference`` exactly as a
client would (multipart upload of the reference files, the request's fields, the weights named), with
``GSV_DECODER_NOISE_SCALE=0`` as the corpus ran, and the returned WAV compared with upstream's audio.

v3/v4 cases are in ``test_v3v4_end_to_end.py`` (full-size models)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import conformance_dir, corpus_case_arrays
from tests.corpus_engine import case_model_names, corpus_cases, corpus_weights_root

pytestmark = pytest.mark.conformance

FAMILIES = ("v1", "v2", "v2Pro", "v2ProPlus")
# The request fields /inference takes as they are (the corpus's TTS.run request uses upstream's names).
FORM_FIELDS = (
    "text", "text_lang", "prompt_text", "prompt_lang", "top_k", "top_p", "temperature", "text_split_method",
    "batch_size", "speed_factor", "split_bucket", "fragment_interval", "seed", "parallel_infer",
    "repetition_penalty",
)  # fmt: skip


def _one_case_per_family() -> list[dict]:
    """Per family, the case with the most aux references and pieces (the most of the path exercised)."""
    chosen = []
    for family in FAMILIES:
        cases = corpus_cases(family)
        if cases:
            chosen.append(max(cases, key=lambda c: (len(c["request"].get("aux_ref_audio_paths") or []), c["id"])))
    return chosen


CASES = _one_case_per_family()


def multipart_request(case: dict) -> tuple[dict, list]:
    """The case's request as /inference form fields and reference uploads."""
    models = conformance_dir() / "models"
    refs = json.loads((models / "index.json").read_text(encoding="utf-8"))["refs"]
    request = case["request"]
    gpt, sovits = case_model_names(case)
    data = {name: str(request[name]) for name in FORM_FIELDS if request.get(name) is not None}
    data |= {"keep_random": "false", "gpt_weights": gpt, "sovits_weights": sovits}

    def upload(field: str, name: str) -> tuple:
        path = models / refs[name]["file"]
        return (field, (path.name, path.read_bytes(), "audio/wav"))

    files = [upload("ref_audio_path", request["ref_audio_path"])]
    files += [upload("aux_ref_audio_paths", name) for name in request.get("aux_ref_audio_paths") or []]
    return data, files


@pytest.fixture(scope="module")
def client(corpus_weights):
    root = corpus_weights_root(CASES, corpus_weights)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GSV_DECODER_NOISE_SCALE", "0")  # the setting as a deployment would set it
        settings = Settings(weights_root=root)
    assert settings.decoder_noise_scale == 0
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_family_is_covered():
    assert [c["version"] for c in CASES] == [f for f in FAMILIES if corpus_cases(f)]
    assert CASES, "no v1-v2ProPlus case in the corpus"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_inference_over_http_returns_upstreams_audio(case, client):
    data, files = multipart_request(case)
    response = client.post("/inference", data=data, files=files)
    assert response.status_code == 200, response.text
    audio, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    golden = corpus_case_arrays(case["id"])["audio"]
    assert rate == case["sample_rate"] == int(response.headers["X-Sample-Rate"])
    assert int(response.headers["X-Seed"]) == case["request"]["seed"]
    assert audio.shape == golden.shape, f"length {audio.shape[0]} != golden {golden.shape[0]}"
    worst = int(np.abs(audio.astype(np.int32) - golden.astype(np.int32)).max())
    assert worst <= 2, f"max sample difference {worst}"
