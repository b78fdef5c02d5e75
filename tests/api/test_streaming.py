"""Streaming over HTTP: /inference with ``streaming_mode`` 1-3 and every ``media_type``, on demo weights.

Upstream parity of the chunk sequence is the streaming conformance test's job; here: the formats decode
with a standard decoder to the expected duration, headers come first, the bytes arrive while the audio
is being made, /stop and a client that leaves end a stream within a step and free its GPT slot.
"""

from __future__ import annotations

import io
import time

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server
from tests.api.test_inference import REF, V2_GPT, sovits_name

TEXT = "今天天气很好。我们一起去公园散步吧。然后回家吃饭。"
MEDIA = {"wav": "audio/wav", "raw": "audio/raw", "ogg": "audio/ogg", "aac": "audio/aac", "mp3": "audio/mpeg", "flac": "audio/flac"}  # fmt: skip


@pytest.fixture(scope="module")
def client(demo_root):
    with TestClient(create_app(Settings(weights_root=demo_root)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def v2(names):
    return {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2ProPlus")}


def fields(v2, **extra) -> dict[str, str]:
    base = {"text": TEXT, "text_lang": "中文", "prompt_text": "这是参考音频。", "prompt_lang": "中文",
            "seed": 3, "keep_random": False, **v2, **extra}  # fmt: skip
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in base.items()}


def infer(client, v2, **extra) -> httpx.Response:
    return client.post("/inference", data=fields(v2, **extra), files={"ref_audio_path": ("ref.wav", REF, "audio/wav")})


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    """Mono samples and rate of an encoded answer, by PyAV (FFmpeg's decoders)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return np.concatenate(frames), stream.rate


@pytest.fixture(scope="module")
def pcm(client, v2):
    """mode → the raw PCM answer (the reference for the other formats' durations)."""
    answers = {}
    for mode in (0, 1, 2, 3):
        r = infer(client, v2, streaming_mode=mode, media_type="raw")
        assert r.status_code == 200, r.text
        answers[mode] = np.frombuffer(r.content, dtype="<i2")
    return answers


@pytest.mark.parametrize("mode", [1, 2, 3])
@pytest.mark.parametrize("media_type", list(MEDIA))
def test_every_format_streams_and_decodes_to_the_expected_duration(client, v2, pcm, mode, media_type):
    r = infer(client, v2, streaming_mode=mode, media_type=media_type)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[media_type]
    assert r.headers["x-seed"] == "3" and r.headers["x-sample-rate"] == "32000"
    assert "content-length" not in r.headers  # chunked: the length is not known when it starts
    expected = pcm[mode]
    if media_type == "raw":
        assert np.array_equal(np.frombuffer(r.content, dtype="<i2"), expected)
        return
    samples, rate = decoded(r.content)
    assert rate == (48000 if media_type == "ogg" else 32000)
    seconds = samples.shape[0] / rate
    want = expected.shape[0] / 32000
    if media_type in ("wav", "flac"):  # lossless: the very samples
        assert samples.shape[0] == expected.shape[0]
        assert np.array_equal(np.round(samples * 32768).astype(np.int64) if samples.dtype.kind == "f" else samples, expected)  # fmt: skip
    else:  # lossy codecs pad to whole frames (and AAC adds its priming)
        assert want <= seconds <= want + 0.1, (seconds, want)
    if media_type == "wav":
        assert r.content[4:8] == b"\xff\xff\xff\xff" and r.content[40:44] == b"\xff\xff\xff\xff"


@pytest.mark.parametrize("media_type", list(MEDIA))
def test_whole_answers_take_every_media_type_too(client, v2, pcm, media_type):
    r = infer(client, v2, media_type=media_type)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[media_type]
    if media_type == "raw":
        assert np.array_equal(np.frombuffer(r.content, dtype="<i2"), pcm[0])
    elif media_type in ("wav", "flac"):
        samples, rate = sf.read(io.BytesIO(r.content), dtype="int16")
        assert rate == 32000 and np.array_equal(samples, pcm[0])
    else:
        samples, rate = decoded(r.content)
        assert pcm[0].shape[0] / 32000 <= samples.shape[0] / rate <= pcm[0].shape[0] / 32000 + 0.1


def test_mode_1_is_the_whole_answer_in_chunks(pcm):
    """Mode 1 runs the batch path (no bucketing when streaming): same audio as mode 0 without it."""
    assert pcm[1].shape[0] > 0
    assert pcm[1].shape == pcm[0].shape  # one batch here, so bucketing changes nothing


def test_streams_of_a_seeded_request_repeat(client, v2, pcm):
    again = infer(client, v2, streaming_mode=2, media_type="raw")
    assert np.array_equal(np.frombuffer(again.content, dtype="<i2"), pcm[2])


@pytest.mark.parametrize(
    "extra, code",
    [
        ({"streaming_mode": 4}, 422),
        ({"streaming_mode": -1}, 422),
        ({"media_type": "wma"}, 422),
        ({"streaming_mode": 2, "overlap_length": 0}, 422),
        ({"streaming_mode": 3, "min_chunk_length": 0}, 422),
    ],
)
def test_bad_streaming_parameters_are_422(client, v2, extra, code):
    r = infer(client, v2, **extra)
    assert r.status_code == code, r.text
    assert r.json()["error"]["code"]


# ---------------------------------------------------------------- a real connection


@pytest.fixture(scope="module")
def served(demo_root):
    app = create_app(Settings(weights_root=demo_root))
    with live_server(app) as url:
        yield url, app


def _stream(url: str, v2, **extra):
    return httpx.stream(
        "POST", f"{url}/inference", data=fields(v2, **extra),
        files={"ref_audio_path": ("ref.wav", REF, "audio/wav")}, timeout=120,
    )  # fmt: skip


def test_the_first_bytes_arrive_while_the_rest_is_made(served, v2):
    url, _ = served
    arrivals = []
    with _stream(url, v2, text=TEXT * 3, streaming_mode=3, min_chunk_length=8, media_type="raw") as r:
        assert r.status_code == 200
        for data in r.iter_raw():
            arrivals.append((time.monotonic(), len(data)))
    assert len(arrivals) >= 3
    first, last = arrivals[0][0], arrivals[-1][0]
    assert last - first > 0.2, "everything came at once: the answer was not streamed"


def _engine(app):
    return app.state.engine


def _wait_idle(engine, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while engine.gpt_stage.live_rows() or any(engine.scheduler.pending()):
        assert time.monotonic() < deadline, "the stream's work did not stop"
        time.sleep(0.05)


def test_stop_ends_a_stream_cleanly(served, v2):
    url, app = served
    received, stopped = bytearray(), False
    with _stream(url, v2, text=TEXT * 6, streaming_mode=3, min_chunk_length=4, media_type="wav") as r:
        assert r.status_code == 200
        for data in r.iter_raw():
            received += data
            if len(received) > 44 and not stopped:
                stopped = True
                assert httpx.post(f"{url}/stop", json={}).json()["cancelled"] == 1
    samples, rate = decoded(bytes(received))  # a complete (shorter) file
    assert rate == 32000 and 0 < samples.shape[0]
    _wait_idle(_engine(app))


def test_a_client_that_leaves_frees_its_slot(served, v2):
    url, app = served
    engine = _engine(app)
    with _stream(url, v2, text=TEXT * 6, streaming_mode=3, min_chunk_length=4, media_type="raw") as r:
        assert r.status_code == 200
        next(r.iter_raw())
    # the connection is closed here, mid-stream
    _wait_idle(engine)


def test_v4_streams_modes_2_and_3_as_mode_1(client, names):
    """Upstream's vocoder models cannot decode token chunks: modes 2/3 fall back to one chunk per batch."""
    v4 = {"gpt_weights": V2_GPT, "sovits_weights": next(n for n in names["sovits"] if "v4" in n)}
    answers = {}
    for mode in (1, 2, 3):
        r = infer(client, v4, streaming_mode=mode, media_type="raw", batch_size=1, sample_steps=4)
        assert r.status_code == 200, r.text
        assert r.headers["x-sample-rate"] == "48000"
        answers[mode] = r.content
    assert answers[2] == answers[1] == answers[3] and len(answers[1]) > 0
