"""Streamed synthesis equals upstream's api_v2 streaming chunk by chunk (``streaming/`` corpus).

Each case's api_v2 request (``streaming_mode`` 1, 2 or 3, overlap and chunk lengths, speed, batching,
pause) runs through the engine's streaming call (``Engine.stream``: what ``/inference`` with
``streaming_mode`` serves) on an upstream-layout weights root with the corpus weights and decoder noise
0. The chunk sequence must match: the same number of chunks, each the same length, every sample
within ±2 (the corpus README's tolerance). The tokens of every streamed GPT call (modes 2/3) are
checked too (what the cut rule handed the decoder), to name the stage of a miss.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from app.engine.engine import Engine
from app.engine.streaming import PieceStitcher
from tests.conftest import conformance_dir, corpus_job
from tests.corpus_engine import case_model_names, corpus_engine, corpus_weights_root

pytestmark = pytest.mark.conformance

STREAMING_DIR = conformance_dir() / "streaming"
SAMPLE_TOLERANCE = 2


def _cases() -> list[dict]:
    folder = STREAMING_DIR / "cases"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


CASES = _cases()


def _arrays(case: dict) -> dict[str, np.ndarray]:
    with np.load(STREAMING_DIR / "cases" / f"{case['id']}.npz") as npz:
        return {key: npz[key] for key in npz.files}


def streaming_job(case: dict):
    """The case's api_v2 request as a job: api_v2's ``streaming_mode`` (an int, or a bool: true is 1)
    and its chunking parameters on top of the ``TTS.run`` request."""
    params, request = case["api_v2"]["params"], case["request"]
    return corpus_job(
        case,
        streaming_mode=int(params["streaming_mode"]),
        overlap_length=request["overlap_length"],
        min_chunk_length=request["min_chunk_length"],
    )


async def _collect(engine: Engine, case: dict):
    gpt, sovits = case_model_names(case)
    stream = await engine.stream(streaming_job(case), gpt, sovits)
    return stream, [chunk async for chunk in stream.chunks]


@pytest.fixture(scope="module")
def engine(corpus_weights):
    engine = corpus_engine(corpus_weights_root(CASES, corpus_weights))
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def run_case(engine):
    """case → (stream, chunks, token chunks per piece); each case runs once. The token chunks are
    what each piece's :class:`PieceStitcher` was handed: ``(tokens or None, final)``."""
    runs: dict[str, tuple] = {}

    def get(case: dict):
        if case["id"] not in runs:
            stitchers: list[PieceStitcher] = []  # kept alive, so that no two share an id
            yields: dict[int, list] = {}
            chunk = PieceStitcher.chunk

            def recording(stitcher, tokens, final):
                if id(stitcher) not in yields:
                    stitchers.append(stitcher)
                yields.setdefault(id(stitcher), []).append((tokens, final))
                return chunk(stitcher, tokens, final)

            PieceStitcher.chunk = recording
            try:
                stream, chunks = asyncio.run(_collect(engine, case))
            finally:
                PieceStitcher.chunk = chunk
            runs[case["id"]] = (stream, chunks, list(yields.values()))
        return runs[case["id"]]

    return get


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_chunk_sequence(case, run_case):
    stream, chunks, _ = run_case(case)
    arrays = _arrays(case)
    assert stream.sample_rate == case["sample_rate"]
    assert stream.seed == case["request"]["seed"]
    lengths = [c.shape[0] for c in chunks]
    assert lengths == [c["samples"] for c in case["chunks"]], "chunk count or lengths differ"
    for k, chunk in enumerate(chunks):
        golden = arrays[f"chunk_{k:03d}"]
        assert chunk.dtype == np.int16
        worst = int(np.abs(chunk.astype(np.int32) - golden.astype(np.int32)).max(initial=0))
        assert worst <= SAMPLE_TOLERANCE, f"chunk {k}: a sample differs by {worst}"


@pytest.mark.parametrize("case", [c for c in CASES if c["stream_t2s_calls"]], ids=lambda c: c["id"])
def test_token_chunks(case, run_case):
    """Modes 2/3: each piece's token chunks (where the cut rule cut, what it yielded twice, which
    chunk was final) are upstream's yields."""
    _, _, pieces = run_case(case)
    arrays = _arrays(case)
    assert len(pieces) == len(case["stream_t2s_calls"])
    for i, (ours, call) in enumerate(zip(pieces, case["stream_t2s_calls"], strict=True)):
        golden = [
            (arrays[f"st2s_{i}_yield_{j:02d}"].tolist() if y["tokens"] is not None else None, y["is_final"])
            for j, y in enumerate(call["yields"])
        ]
        assert ours == golden, f"piece {i}"


def test_corpus_is_covered():
    assert CASES, f"no streaming cases under {STREAMING_DIR}"
    modes = {int(c["api_v2"]["params"]["streaming_mode"]) for c in CASES}
    assert modes == {1, 2, 3}


def test_one_request_at_a_time_streams_the_same_chunks(corpus_weights, run_case):
    """With continuous batching off (GSV_CONTINUOUS_BATCHING=false) the GPT decodes alone on the
    stream's helper thread: the same chunks."""
    case = next(c for c in CASES if c["stream_t2s_calls"] and c["api_v2"]["params"]["streaming_mode"] == 2)
    _, batched, _ = run_case(case)
    engine = corpus_engine(corpus_weights_root(CASES, corpus_weights), continuous_batching=False)
    try:
        _, alone = asyncio.run(_collect(engine, case))
    finally:
        engine.stop()
    assert len(alone) == len(batched)
    assert all(np.array_equal(a, b) for a, b in zip(alone, batched, strict=True))
