"""Real voices on the corpus's tiny random weights, built by the model manager from an upstream-layout
weights root: compatibility checks, shared models, reference caching, seeds with sampling noise on, and
cancellation inside the GPT decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.errors import Cancelled, InvalidRequest
from app.engine.jobs import ReferenceAudio, SynthesisJob
from app.engine.model_manager import ModelManager
from app.engine.models.t2s import DecodeCancelled
from app.engine.pipeline import synthesize
from app.engine.voice import Voice
from tests.conftest import corpus_reference
from tests.corpus_engine import case_model_names, corpus_cases, corpus_weights_root

# One corpus case per version gives the weights (layouts and seeds from the corpus index).
CASES = {version: corpus_cases(version)[0] for version in ("v1", "v2", "v2Pro")}


@pytest.fixture(scope="module")
def manager(corpus_weights) -> ModelManager:
    manager = ModelManager(corpus_weights_root(list(CASES.values()), corpus_weights), "cpu", torch.float32, 4)
    yield manager
    manager.close()


def names(version: str) -> tuple[str, str]:
    return case_model_names(CASES[version])


@pytest.fixture(scope="module")
def v2_voice(manager) -> Voice:
    return manager.voice(*names("v2"))


@pytest.fixture(scope="module")
def reference() -> ReferenceAudio:
    return corpus_reference(CASES["v2"]["request"]["ref_audio_path"])


def test_a_v2_voice_needs_no_speaker_encoder(v2_voice, manager):
    assert v2_voice.model_version == "v2"
    assert v2_voice.text_version == "v2"
    assert not v2_voice.uses_speaker_embedding
    assert v2_voice.sample_rate == v2_voice.model_sample_rate == 32000
    assert manager.voice(*names("v2")) is v2_voice  # built once, then cached


def test_a_pro_voice_loads_the_speaker_encoder_and_reuses_shared_models(manager, v2_voice):
    voice = manager.voice(*names("v2Pro"))
    assert voice.model_version == "v2Pro"
    assert voice.shared.speaker is not None
    assert voice.shared.hubert is v2_voice.shared.hubert
    assert voice.shared.bert is v2_voice.shared.bert


def test_a_v1_gpt_cannot_drive_a_v2_sovits(manager):
    with pytest.raises(InvalidRequest, match="not from the same model version") as caught:
        manager.voice(names("v1")[0], names("v2")[1])
    assert caught.value.code == "incompatible_weights"


def test_reference_features_are_cached_per_clip(v2_voice, reference):
    assert v2_voice.conditioning(reference) is v2_voice.conditioning(reference)
    codes = v2_voice.prompt_codes(reference)
    assert codes is v2_voice.prompt_codes(ReferenceAudio(reference.samples.copy(), reference.sample_rate))
    assert codes.dtype == torch.long and codes.ndim == 1


def test_a_reference_outside_3_to_10_seconds_is_refused(v2_voice, reference):
    short = ReferenceAudio(reference.samples[: 2 * reference.sample_rate], reference.sample_rate)
    job = SynthesisJob("你好，今天天气很好。", short, "all_zh", prompt_text="参考文本。")
    with pytest.raises(InvalidRequest) as caught:
        synthesize(job, v2_voice)
    assert caught.value.code == "ref_audio_length"


def _job(reference: ReferenceAudio, **overrides) -> SynthesisJob:
    values = dict(text="今天天气很好，我们去散步。", text_lang="all_zh", ref_audio=reference)
    values.update(prompt_text="这是参考。", top_k=15, keep_random=False, seed=5, fragment_interval=0.1)
    values.update(overrides)
    return SynthesisJob(**values)


@pytest.mark.slow
def test_seeds_make_sampling_and_noise_reproducible(v2_voice, reference):
    first = synthesize(_job(reference), v2_voice)
    second = synthesize(_job(reference), v2_voice)
    drawn = synthesize(_job(reference, keep_random=True), v2_voice)  # keep_random ignores seed 5
    assert first.seed == second.seed == 5
    np.testing.assert_array_equal(first.audio, second.audio)
    assert 0 <= drawn.seed <= 2**32 - 1 and drawn.seed != 5
    assert drawn.audio.shape != first.audio.shape or not np.array_equal(drawn.audio, first.audio)


def test_the_decoder_noise_scale_changes_the_audio_and_zero_is_deterministic(v2_voice, reference):
    quiet = [synthesize(_job(reference, seed=s), v2_voice, noise_scale=0.0).audio for s in (5, 5)]
    noisy = synthesize(_job(reference), v2_voice, noise_scale=0.5).audio
    np.testing.assert_array_equal(*quiet)
    assert quiet[0].shape != noisy.shape or not np.array_equal(quiet[0], noisy)


def test_cancellation_inside_the_gpt_decode(v2_voice, reference):
    polls = 0

    def stop_after_a_few_steps() -> bool:
        nonlocal polls
        polls += 1
        return polls > 10

    with pytest.raises(Cancelled) as raised:
        synthesize(_job(reference), v2_voice, should_stop=stop_after_a_few_steps)
    assert polls == 11  # stopped at the first poll that said so
    assert isinstance(raised.value.__cause__, DecodeCancelled)  # ... which came from a decode step
