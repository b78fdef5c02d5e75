"""The model manager on the corpus's tiny weights: loading happens on the loader thread, so a request
whose voice must load never holds up requests whose voices are loaded; a loaded voice is reused; a
stopped engine lets its models go."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import numpy as np

from tests.conftest import corpus_job
from tests.corpus_engine import (
    case_model_names,
    case_placements,
    corpus_cases,
    corpus_engine,
    link_weights,
    synthesize,
)

SECOND_GPT = "GPT_weights_v2/second-copy.ckpt"


def test_loading_a_new_voice_does_not_hold_up_requests_for_loaded_voices(corpus_weights, tmp_path):
    case = corpus_cases("v2")[0]
    places = case_placements(case) | {SECOND_GPT: case["weights"]["t2s"]}
    engine = corpus_engine(link_weights(tmp_path / "weights", places, corpus_weights))
    gpt, sovits = case_model_names(case)
    loaded = engine.models.voice(gpt, sovits)
    loading, release = threading.Event(), threading.Event()
    gpt_cache = engine.models._gpt
    load_gpt = gpt_cache._loader

    def slow_load(name):
        if name == SECOND_GPT:
            loading.set()
            assert release.wait(120), "never released"
        return load_gpt(name)

    gpt_cache._loader = slow_load
    job = corpus_job(case)

    async def scenario():
        waiting = asyncio.create_task(engine.synthesize(job, SECOND_GPT, sovits))
        assert await asyncio.to_thread(loading.wait, 60)
        served = await asyncio.wait_for(engine.synthesize(job, gpt, sovits), 300)
        finished_early = waiting.done()
        release.set()
        return served, await waiting, finished_early

    try:
        served, late, finished_early = asyncio.run(scenario())
        reused = engine.models.voice(gpt, sovits) is loaded  # asked before stop(), which lets models go
    finally:
        release.set()
        engine.stop()
    assert not finished_early  # the new voice was still loading while the loaded one served
    assert reused  # reused, not rebuilt
    # Same weights under two names, same seed, no decoder noise: the same audio.
    np.testing.assert_array_equal(served.audio, late.audio)


def test_a_stopped_engine_lets_its_models_go(corpus_weights, tmp_path):
    """Whatever still refers to a stopped engine (an app object after its lifespan) holds no model."""
    case = corpus_cases("v2")[0]
    engine = corpus_engine(link_weights(tmp_path / "weights", case_placements(case), corpus_weights))
    gpt, sovits = case_model_names(case)
    synthesize(engine, corpus_job(case), gpt, sovits)
    models = [weakref.ref(engine.models.gpt_model(gpt)), weakref.ref(engine.models.sovits(sovits).model)]
    engine.stop()
    gc.collect()
    assert [model() for model in models] == [None, None]
