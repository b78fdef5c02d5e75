"""The OpenAI speech API (/v1/audio/speech, /v1/models) through OpenAI's own Python client against a live
server on demo weights: every response format decodes to the same audio length, streaming (audio and
SSE), voices as objects, and refusals the client raises as its usual exceptions."""

from __future__ import annotations

import base64
import io
import json

import av
import httpx
import openai
import pytest
from openai import OpenAI

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server
from tests.api.test_inference import REF, sovits_name

TEXT = "今天天气很好。"
SEEDED = json.dumps({"seed": 7, "keep_random": False, "top_k": 1})


@pytest.fixture(scope="module")
def server(demo_root, tmp_path_factory):
    app = create_app(Settings(weights_root=demo_root, data_dir=tmp_path_factory.mktemp("openai-data")))
    with live_server(app) as url:
        form = {"name": "demo", "prompt_text": "这是参考音频。", "prompt_lang": "中文", "defaults": SEEDED}
        r = httpx.post(
            f"{url}/voices", data=form, files={"ref_audio": ("ref.wav", REF, "audio/wav")}, timeout=60
        )
        assert r.status_code == 201, r.text
        yield url


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def v2(names):
    return sovits_name(names, "v2ProPlus")


def decoded(data: bytes) -> tuple[float, int]:
    """Seconds and sample rate of an encoded answer, as PyAV decodes it."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate, stream.codec_context.sample_rate


@pytest.fixture(scope="module")
def wav_seconds(client, v2):
    data = client.audio.speech.create(model=v2, voice="demo", input=TEXT, response_format="wav").read()
    assert data[:4] == b"RIFF"
    seconds, rate = decoded(data)
    assert rate == 32000 and seconds > 0.2
    return seconds


@pytest.mark.parametrize(
    ("fmt", "rate", "lossy"),
    [
        ("mp3", 32000, True),
        ("opus", 48000, True),
        ("aac", 32000, True),
        ("flac", 32000, False),
        ("wav", 32000, False),
    ],
)
def test_every_response_format_decodes_to_the_same_audio(client, v2, wav_seconds, fmt, rate, lossy):
    response = client.audio.speech.create(model=v2, voice="demo", input=TEXT, response_format=fmt)
    content_type = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac"}
    assert response.response.headers["content-type"] == content_type.get(fmt, "audio/wav")
    seconds, got_rate = decoded(response.read())
    assert got_rate == rate
    assert wav_seconds - 0.001 <= seconds <= wav_seconds + (0.1 if lossy else 0.001)


def test_pcm_is_raw_16_bit_at_24_khz(client, v2, wav_seconds):
    response = client.audio.speech.create(model=v2, voice="demo", input=TEXT, response_format="pcm")
    assert response.response.headers["content-type"] == "audio/pcm"
    assert response.response.headers["x-sample-rate"] == "24000"
    data = response.read()
    assert data[:4] != b"RIFF" and len(data) % 2 == 0
    assert len(data) / 2 / 24000 == pytest.approx(wav_seconds, abs=0.002)


def test_mp3_is_the_default_and_tts_1_speaks_with_the_current_models(client):
    response = client.audio.speech.create(
        model="tts-1", voice="demo", input="你好。", speed=1.5, instructions="x"
    )
    assert response.response.headers["content-type"] == "audio/mpeg"
    seconds, rate = decoded(response.read())
    assert seconds > 0.1 and rate in (24000, 32000, 48000)


def test_streaming_response_is_one_file_of_the_format(client, v2, wav_seconds):
    with client.audio.speech.with_streaming_response.create(
        model=v2, voice={"id": "demo"}, input=TEXT, response_format="opus"
    ) as response:
        assert response.headers["content-type"] == "audio/ogg"
        pieces = list(response.iter_bytes())
    assert pieces
    seconds, rate = decoded(b"".join(pieces))
    assert rate == 48000 and wav_seconds <= seconds + 0.001 <= wav_seconds + 0.1


def sse_events(response) -> list[dict]:
    return [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize(("fmt", "rate"), [("flac", 32000), ("pcm", 24000)])
def test_sse_deltas_join_into_one_file(client, v2, wav_seconds, fmt, rate):
    with client.audio.speech.with_streaming_response.create(
        model=v2, voice="demo", input=TEXT, response_format=fmt, stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    *deltas, done = events
    assert deltas and {e["type"] for e in deltas} == {"speech.audio.delta"}
    assert done == {"type": "speech.audio.done", "usage": {"input_tokens": len(TEXT), "output_tokens": 0,
                                                            "total_tokens": len(TEXT)}}  # fmt: skip
    data = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    if fmt == "pcm":
        seconds, got_rate = len(data) / 2 / 24000, 24000
    else:
        seconds, got_rate = decoded(data)
    assert got_rate == rate and seconds == pytest.approx(wav_seconds, abs=0.002)


@pytest.mark.parametrize(
    ("change", "error", "status", "param", "says"),
    [
        ({"voice": "nobody"}, openai.NotFoundError, 404, "voice", "no voice named 'nobody'"),
        ({"voice": {"id": "nobody"}}, openai.NotFoundError, 404, "voice", "no voice named 'nobody'"),
        ({"model": "gpt-9"}, openai.NotFoundError, 404, "model", "no model named 'gpt-9'"),
        ({"response_format": "ogg"}, openai.BadRequestError, 400, "response_format", "response_format"),
        ({"speed": 5.0}, openai.BadRequestError, 400, "speed", "less than or equal to 4"),
        ({"speed": 0.1}, openai.BadRequestError, 400, "speed", "greater than or equal to 0.25"),
        ({"input": ""}, openai.BadRequestError, 400, "input", "at least 1 character"),
        ({"input": "x" * 4097}, openai.BadRequestError, 400, "input", "at most 4096 characters"),
    ],
)
def test_refusals_are_openai_errors(client, v2, change, error, status, param, says):
    request = {"model": v2, "voice": "demo", "input": TEXT, **change}
    with pytest.raises(error) as caught:
        client.audio.speech.create(**request)
    assert caught.value.status_code == status
    body = caught.value.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error" and body["param"] == param and says in body["message"]


def test_a_missing_field_and_a_non_json_body_are_openai_400s(server):
    r = httpx.post(f"{server}/v1/audio/speech", json={"model": "tts-1", "voice": "demo"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = httpx.post(
        f"{server}/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    # Other paths keep the service's own error shape.
    r = httpx.post(f"{server}/to_cut", json={})
    assert r.status_code == 422 and "request_id" in r.json()["error"]


def test_a_full_queue_is_a_429_rate_limit_error(server, v2, monkeypatch):
    from app.engine import errors as engine_errors
    from app.engine.engine import Engine

    async def busy(self, job, gpt=None, sovits=None):
        raise engine_errors.Busy("the synthesis queue is full", retry_after_s=3)

    monkeypatch.setattr(Engine, "stream", busy)
    r = httpx.post(f"{server}/v1/audio/speech", json={"model": v2, "voice": "demo", "input": TEXT})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"


def test_models_lists_the_aliases_and_every_weight(client, names, v2):
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["tts-1", "tts-1-hd"]
    assert set(names["gpt"]) | set(names["sovits"]) <= set(ids)
    assert client.models.retrieve(v2).owned_by == "gsv-server"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_an_alias_can_name_a_pair_and_must_name_existing_weights(demo_root, names, tmp_path):
    aliases = {"fast": {"gpt": "GPT_weights_v2/demo_v2-e15.ckpt", "sovits": sovits_name(names, "v2")},
               "broken": {"sovits": "SoVITS_weights_v2/missing.pth"}}  # fmt: skip
    app = create_app(Settings(weights_root=demo_root, data_dir=tmp_path, openai_models=aliases))
    with live_server(app) as url:
        r = httpx.post(f"{url}/voices", data={"name": "v", "prompt_text": "这是参考音频。", "prompt_lang": "中文"},
                       files={"ref_audio": ("ref.wav", REF, "audio/wav")})  # fmt: skip
        assert r.status_code == 201
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        assert [m.id for m in client.models.list()][:2] == ["fast", "broken"]
        response = client.audio.speech.create(model="fast", voice="v", input="你好。", response_format="wav")
        assert response.read()[:4] == b"RIFF"
        with pytest.raises(openai.NotFoundError, match="missing.pth"):
            client.audio.speech.create(model="broken", voice="v", input="你好。")
        # The configured aliases replace the default ones.
        with pytest.raises(openai.NotFoundError, match="no model named 'tts-1'"):
            client.audio.speech.create(model="tts-1", voice="v", input="你好。")


def test_an_unmatched_v1_path_answers_openais_error_body(server):
    r = httpx.get(f"{server}/v1/models/a%0Ab")
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server}/v1/no-such-thing").json()["error"]["type"] == "invalid_request_error"
