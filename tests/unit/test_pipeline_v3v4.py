"""The v3/v4 parts of the pipeline without full-size models: the prompt-text rule, what reaches a
vocoder decoder (prompt, sample_steps, mode, main reference only), bucketing, and the chunk cross-fade."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from app.engine.decoders import ReferenceConditioning, VocoderDecoder, cross_fade_chunks
from app.engine.errors import Conflict, InvalidRequest
from app.engine.jobs import ReferenceAudio, SynthesisJob
from app.engine.pipeline import synthesize
from app.engine.text.preprocess import phones_for_piece

TEXT = "今天天气很好。我们一起去公园散步吧。路边的花都开了。我很开心。"
PROMPT_TEXT = "这是参考。"
PROMPT_CODES = torch.arange(7)
REFERENCE = ReferenceAudio(np.zeros(16000 * 4, dtype=np.float32), 16000)
AUX = ReferenceAudio(np.ones(16000 * 4, dtype=np.float32) * 0.1, 16000)


class FakeBert:
    def segment_features(self, segment):
        return torch.ones(1024, len(segment.phones))


class FakeT2S:
    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len

    def decode(self, request):
        # One token per target phone: a fragment's length names its piece.
        return [torch.zeros(p.shape[0] - self.prompt_len, dtype=torch.long) for p in request.phones]


class RecordingVocoderDecoder:
    """Stands in for a VocoderDecoder (its traits) and records what it is given."""

    traits = VocoderDecoder.traits

    def __init__(self):  # no models
        self.sample_rate = 24000
        self.calls: list[dict] = []

    def fragments(self, tokens, phones, references, settings):
        self.calls.append({"tokens": tokens, "references": references, "prompt": settings, "speed": settings.speed})
        return [torch.full((t.shape[0],), 0.5) for t in tokens]


class FakeV3Voice:
    def __init__(self):
        self.device = torch.device("cpu")
        self.text_version = "v2"
        self.model_version = "v3"
        self.model_sample_rate = 1000
        self.t2s = FakeT2S(len(phones_for_piece(PROMPT_TEXT, "all_zh", "v2").phone_ids))
        self.decoder = RecordingVocoderDecoder()
        self.shared = SimpleNamespace(bert=FakeBert())
        self.conditioned: list[ReferenceAudio] = []

    @property
    def sample_rate(self):
        return self.decoder.sample_rate

    def conditioning(self, reference):
        self.conditioned.append(reference)
        return ReferenceConditioning(torch.zeros(1, 3, 2), None, torch.zeros(1, 100, 5))

    def prompt_codes(self, reference):
        return PROMPT_CODES


def _job(**overrides) -> SynthesisJob:
    values = dict(text=TEXT, text_lang="all_zh", ref_audio=REFERENCE, text_split_method="cut5", seed=1)
    values.update(keep_random=False, batch_size=2, prompt_text=PROMPT_TEXT, sample_steps=16)
    values.update(overrides)
    return SynthesisJob(**values)


@pytest.mark.parametrize("overrides", [{"prompt_text": ""}, {"ref_text_free": True}])
def test_v3v4_refuses_prompt_free_synthesis(overrides):
    voice = FakeV3Voice()
    with pytest.raises(InvalidRequest, match="prompt_text") as caught:
        synthesize(_job(**overrides), voice)
    assert caught.value.code == "prompt_text_required"
    assert voice.decoder.calls == []


def test_decoder_gets_prompt_steps_mode_and_only_the_main_reference():
    voice = FakeV3Voice()
    result = synthesize(_job(aux_ref_audios=[AUX], parallel_infer=False), voice)
    assert result.sample_rate == 24000
    assert voice.conditioned == [REFERENCE]  # aux references are not even analysed
    prompt_phones = phones_for_piece(PROMPT_TEXT, "all_zh", "v2").phone_ids
    for call in voice.decoder.calls:
        assert len(call["references"]) == 1
        settings = call["prompt"]
        assert torch.equal(settings.prompt_codes, PROMPT_CODES)
        assert list(settings.prompt_phone_ids) == prompt_phones
        assert settings.sample_steps == 16
        assert settings.batched is False
        assert settings.generator.initial_seed() == 1  # the sampler's start noise comes from the job's seed


def test_parallel_mode_keeps_text_order_in_batches():
    """Upstream turns bucketing off for v3/v4 in parallel mode: batches are consecutive pieces."""
    voice = FakeV3Voice()
    synthesize(_job(parallel_infer=True, split_bucket=True, batch_size=2), voice)
    lengths = [len(call["tokens"]) for call in voice.decoder.calls]
    assert lengths == [2, 2]
    assert all(call["prompt"].batched for call in voice.decoder.calls)
    # the pieces' token counts (one per phone) grow with the text order here only if unsorted
    firsts = [call["tokens"][0].shape[0] for call in voice.decoder.calls]
    seconds = [call["tokens"][1].shape[0] for call in voice.decoder.calls]
    pieces = [n for pair in zip(firsts, seconds, strict=True) for n in pair]
    expected = [len(phones_for_piece(p + "。", "all_zh", "v2").phone_ids) for p in TEXT.split("。")[:-1]]
    assert pieces == expected


# --------------------------------------------------------------------------- super-sampling (v3)


@pytest.fixture(scope="module")
def extender(tmp_path_factory):
    from app.engine.models.bandwidth_extension import BandwidthExtender
    from tests.conftest import write_bandwidth_extension

    return BandwidthExtender.from_folder(write_bandwidth_extension(tmp_path_factory.mktemp("bwe"), channels=16, layers=1))


def test_super_sampling_extends_v3_audio_to_48k(extender):
    plain = synthesize(_job(), FakeV3Voice())
    result = synthesize(_job(super_sampling=True), FakeV3Voice(), bandwidth_extender=extender)
    assert plain.sample_rate == 24000 and result.sample_rate == 48000
    hop = extender.cfg.hop_size
    assert len(result.audio) == 2 * len(plain.audio) // hop * hop
    assert np.abs(result.audio.astype(np.int32)).max() <= 32767


def test_super_sampled_audio_is_peak_limited(extender):
    class Loud:
        cfg = extender.cfg

        def extend(self, audio, rate):
            return torch.cat([audio, audio]) * 7.0

    result = synthesize(_job(super_sampling=True), FakeV3Voice(), bandwidth_extender=Loud())
    assert result.audio.max() == 32767  # the loudest sample lands at full scale, no wrap-around


def test_super_sampling_needs_the_model_for_v3_and_is_ignored_for_v4():
    with pytest.raises(Conflict, match="AP-BWE"):
        synthesize(_job(super_sampling=True), FakeV3Voice())
    result = synthesize(_job(super_sampling=True), _v4())
    assert result.sample_rate == 48000
    np.testing.assert_array_equal(result.audio, synthesize(_job(), _v4()).audio)


def _v4() -> FakeV3Voice:
    voice = FakeV3Voice()
    voice.model_version = "v4"
    voice.decoder.sample_rate = 48000
    return voice


# --------------------------------------------------------------------------- cross-fade


def test_cross_fade_of_a_continuous_signal_is_seamless():
    """Chunks cut from one signal with an overlap join back into that signal (the best shift is 0 and
    the two Hann halves sum to one)."""
    overlap, size = 64, 1000
    signal = torch.sin(torch.arange(3 * size, dtype=torch.float32) * 0.05) * torch.linspace(0.2, 1, 3 * size)
    step = size - overlap
    chunks = [signal[start : start + size] for start in range(0, 2 * step + 1, step)]
    joined = cross_fade_chunks(chunks, overlap, search=32)
    expected = signal[: 2 * step + size]
    assert joined.shape == expected.shape
    torch.testing.assert_close(joined, expected, atol=1e-5, rtol=0)


def test_cross_fade_skips_ahead_to_the_best_match():
    """A later chunk that starts ``delay`` samples early is shifted by that much before blending."""
    overlap, delay = 50, 17
    signal = torch.randn(2000, generator=torch.Generator().manual_seed(0))
    first = signal[:1000]
    second = signal[1000 - overlap - delay : 1800]
    joined = cross_fade_chunks([first, second], overlap, search=40)
    assert joined.shape[0] == first.shape[0] + second.shape[0] - overlap - delay
    torch.testing.assert_close(joined, signal[:1800], atol=1e-5, rtol=0)


def test_cross_fade_keeps_dtype_and_single_chunk():
    chunk = torch.randn(300).half()  # computed in float32 like upstream, returned in the input dtype
    out = cross_fade_chunks([chunk], 10)
    assert out.dtype == torch.float16 and torch.equal(out, chunk)
