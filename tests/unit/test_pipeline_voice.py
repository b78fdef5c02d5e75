"""A real Voice on the corpus's tiny random weights: loading from a weights root, compatibility checks,
reference caching, seeds with sampling noise on, and cancellation inside the GPT decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.audio_features import ReferenceAudioError
from app.engine.jobs import ReferenceAudio, SynthesisCancelled, SynthesisJob
from app.engine.models.t2s import DecodeCancelled
from app.engine.pipeline import synthesize
from app.engine.registry import BERT_DIR, HUBERT_DIR, SV_CHECKPOINT
from app.engine.voice import Voice, VoiceLoadError
from tests.conftest import conformance_dir


def _link(root: Path, relative: str, target: Path) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.fixture(scope="module")
def weights_root(corpus_weights, tmp_path_factory) -> Path:
    """A weights root with the shared models at upstream's paths."""
    root = tmp_path_factory.mktemp("weights")
    _link(root, HUBERT_DIR, corpus_weights("hubert_tiny"))
    _link(root, BERT_DIR, corpus_weights("bert_tiny"))
    _link(root, SV_CHECKPOINT, corpus_weights("sv_eres2netv2_full"))
    return root


@pytest.fixture(scope="module")
def v2_voice(weights_root, corpus_weights) -> Voice:
    return Voice.load(weights_root, corpus_weights("s1_v2_tiny"), corpus_weights("sovits_v2_tiny"))


@pytest.fixture(scope="module")
def reference() -> ReferenceAudio:
    index = json.loads((conformance_dir() / "models" / "index.json").read_text(encoding="utf-8"))
    return ReferenceAudio.decode(conformance_dir() / "models" / index["refs"]["ref_a"]["file"])


def test_a_v2_voice_needs_no_speaker_encoder(v2_voice):
    assert v2_voice.model_version == "v2"
    assert v2_voice.text_version == "v2"
    assert v2_voice.shared.speaker is None
    assert v2_voice.sample_rate == v2_voice.model_sample_rate == 32000


def test_a_pro_voice_loads_the_speaker_encoder_and_reuses_shared_models(
    weights_root, corpus_weights, v2_voice
):
    voice = Voice.load(
        weights_root,
        corpus_weights("s1_v2_tiny"),
        corpus_weights("sovits_v2Pro_tiny"),
        shared=v2_voice.shared,
    )
    assert voice.model_version == "v2Pro"
    assert voice.shared.speaker is not None
    assert voice.shared.hubert is v2_voice.shared.hubert
    assert voice.shared.bert is v2_voice.shared.bert


def test_a_v1_gpt_cannot_drive_a_v2_sovits(weights_root, corpus_weights, v2_voice):
    with pytest.raises(VoiceLoadError, match="not from the same model version"):
        Voice.load(
            weights_root,
            corpus_weights("s1_v1_tiny"),
            corpus_weights("sovits_v2_tiny"),
            shared=v2_voice.shared,
        )


def test_reference_features_are_cached_per_clip(v2_voice, reference):
    assert v2_voice.conditioning(reference) is v2_voice.conditioning(reference)
    codes = v2_voice.prompt_codes(reference)
    assert codes is v2_voice.prompt_codes(ReferenceAudio(reference.samples.copy(), reference.sample_rate))
    assert codes.dtype == torch.long and codes.ndim == 1


def test_a_reference_outside_3_to_10_seconds_is_refused(v2_voice, reference):
    short = ReferenceAudio(reference.samples[: 2 * reference.sample_rate], reference.sample_rate)
    job = SynthesisJob("你好，今天天气很好。", "all_zh", short, prompt_text="参考文本。")
    with pytest.raises(ReferenceAudioError):
        synthesize(job, v2_voice)


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


def test_cancellation_inside_the_gpt_decode(v2_voice, reference):
    polls = 0

    def stop_after_a_few_steps() -> bool:
        nonlocal polls
        polls += 1
        return polls > 10

    with pytest.raises(SynthesisCancelled) as raised:
        synthesize(_job(reference), v2_voice, should_stop=stop_after_a_few_steps)
    assert polls == 11  # stopped at the first poll that said so
    assert isinstance(raised.value.__cause__, DecodeCancelled)  # ... which came from a decode step
