"""The engine with continuous batching (demo weights): concurrent requests give exactly the audio they
give one at a time, they really share GPT steps, and a cancelled request leaves the others alone."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from app.demo.writer import write_demo_weights
from app.engine.engine import Engine, EngineConfig
from app.engine.errors import Cancelled
from app.engine.jobs import ReferenceAudio, SynthesisJob
from app.logging_setup import request_id_var


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-weights")
    write_demo_weights(root, seed=0)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # 570 MB; the session's other folders stay until it ends


def reference(seed: int) -> ReferenceAudio:
    rate = 32000
    t = np.arange(4 * rate) / rate
    tone = np.sin(2 * np.pi * (180 + 30 * seed) * t) * (1 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return ReferenceAudio((0.3 * tone).astype(np.float32), rate)


TEXTS = [
    "今天天气很好。我们一起去公园散步吧。",
    "Hello world. How are you today?",
    "春眠不觉晓，处处闻啼鸟。",
    "天气。",
]


def jobs() -> list[SynthesisJob]:
    """Eight seeded jobs whose settings all differ somewhere (sampling, cut, parallel or not)."""
    made = []
    for i in range(8):
        text = TEXTS[i % len(TEXTS)]
        made.append(
            SynthesisJob(
                text=text,
                text_lang="en" if text.startswith("Hello") else "all_zh",
                ref_audio=reference(i % 2),
                prompt_text="这是参考音频。" if i % 3 else "",
                ref_text_free=not i % 3,
                prompt_lang="all_zh",
                seed=100 + i,
                keep_random=False,
                top_k=[5, 1, 15, 30][i % 4],
                top_p=[1.0, 0.8][i % 2],
                temperature=[1.0, 0.7, 1.3][i % 3],
                repetition_penalty=[1.35, 1.0][i // 4],
                parallel_infer=i != 5,
                text_split_method="cut5" if i % 2 else "cut1",
            )
        )
    return made


def started_engine(root, **config) -> Engine:
    engine = Engine(EngineConfig(weights_root=root, device="cpu", **config))
    engine.start()
    return engine


# Two voices on two GPT models: each model gets its own slots.
VOICES = [
    ("GPT_weights_v2/demo_v2-e15.ckpt", "SoVITS_weights_v2/demo_v2_e8_s200.pth"),
    ("GPT_weights_v2ProPlus/demo_v2ProPlus-e15.ckpt", "SoVITS_weights_v2ProPlus/demo_v2ProPlus_e8_s200.pth"),
]


async def synthesize_as(engine: Engine, request_id: str, job: SynthesisJob, voice: tuple[str, str]):
    request_id_var.set(request_id)  # this task's own context: /stop can name it
    return await engine.synthesize(job, *voice)


def test_concurrent_requests_give_their_one_at_a_time_audio(demo_root):
    alone_engine = started_engine(demo_root, continuous_batching=False)
    try:
        alone = [asyncio.run(alone_engine.synthesize(job, *VOICES[i % 2])) for i, job in enumerate(jobs())]
    finally:
        alone_engine.stop()

    engine = started_engine(demo_root, gpt_slots=16)

    async def together():
        return await asyncio.gather(*(engine.synthesize(job, *VOICES[i % 2]) for i, job in enumerate(jobs())))

    try:
        asyncio.run(engine.synthesize(jobs()[0], *VOICES[0]))  # load the voices before the race
        asyncio.run(engine.synthesize(jobs()[1], *VOICES[1]))
        before = engine.gpt_stage.stats()
        results = asyncio.run(together())
        after = engine.gpt_stage.stats()
    finally:
        engine.stop()
    for i, (a, b) in enumerate(zip(alone, results, strict=True)):
        assert a.seed == b.seed and a.sample_rate == b.sample_rate, i
        np.testing.assert_array_equal(a.audio, b.audio, err_msg=f"job {i}")
    rows = after.rows_stepped - before.rows_stepped
    steps = after.steps - before.steps
    assert rows / steps > 1.5  # requests really shared decode steps


def test_a_cancelled_request_frees_its_slots_and_spares_the_others(demo_root):
    engine = started_engine(demo_root, gpt_slots=8)
    long_job = SynthesisJob(
        text="。".join(["今天天气很好我们一起去公园散步吧"] * 60) + "。",
        text_lang="all_zh",
        ref_audio=reference(0),
        ref_text_free=True,
        text_split_method="cut1",
        batch_size=2,
        seed=7,
        keep_random=False,
    )
    short_job = jobs()[2]

    async def scenario():
        doomed = asyncio.ensure_future(synthesize_as(engine, "doomed", long_job, VOICES[0]))
        while engine.gpt_stage.live_rows() == 0:  # the long request is decoding
            await asyncio.sleep(0.02)
        survivor = asyncio.ensure_future(synthesize_as(engine, "survivor", short_job, VOICES[0]))
        await asyncio.sleep(0.3)
        assert engine.cancel("doomed") == 1
        with pytest.raises(Cancelled):
            await doomed
        return await survivor

    try:
        survived = asyncio.run(scenario())
        alone = asyncio.run(engine.synthesize(short_job, *VOICES[0]))
        assert engine.gpt_stage.live_rows() == 0  # nothing of the cancelled request is left
    finally:
        engine.stop()
    np.testing.assert_array_equal(survived.audio, alone.audio)
