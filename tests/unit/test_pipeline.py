"""The pipeline's glue with stand-in models: batching, order, prompt handling, cancellation, seeds, pauses.

The models are replaced by small fakes that record what they receive and return fragments whose length
identifies the piece, so every test checks the plumbing, not the numbers (the conformance test does that).
"""

from __future__ import annotations

import io
from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import given
from hypothesis import strategies as st

from app.engine.decoders import DecodeSettings, ReferenceConditioning, SoVITSDecoder
from app.engine.errors import Cancelled, InvalidRequest
from app.engine.jobs import MAX_SEED, ReferenceAudio, SynthesisJob
from app.engine.models.t2s import DecodeCancelled
from app.engine.pipeline import synthesize
from app.engine.planning import check_parameters, closed_prompt_text, plan_batches, resolve_seed
from app.engine.text.preprocess import phones_for_piece, preprocess

TEXT = "今天天气很好。我们一起去公园散步吧，好不好？路边的花都开了，红的黄的白的，真漂亮。走吧。"
REFERENCE = ReferenceAudio(np.zeros(16000 * 4, dtype=np.float32), 16000)
PROMPT_CODES = torch.arange(7)


# --------------------------------------------------------------------------- plan_batches


def test_without_bucketing_batches_are_consecutive():
    assert plan_batches([5, 1, 9, 3, 2], batch_size=2, bucket=False) == [[0, 1], [2, 3], [4]]


def test_bucketing_groups_by_length_stably():
    assert plan_batches([5, 1, 5, 1], batch_size=2) == [[1, 3], [0, 2]]


def test_bucketing_shrinks_a_batch_until_its_middle_is_near_the_mean():
    # sorted [1, 1, 10]: middle 1 vs mean 4 fails; [1, 1] passes; 10 alone.
    assert plan_batches([10, 1, 1], batch_size=3) == [[1, 2], [0]]


def test_bucketing_threshold_is_strict_at_equality_because_of_the_epsilon():
    # sorted [3, 3, 6]: middle / mean is exactly 0.75, but upstream divides by mean + 1e-8 (in float64
    # under NumPy 1.x), so the batch does not pass and shrinks.
    assert plan_batches([3, 3, 6], batch_size=3, threshold=0.75) == [[0, 1], [2]]
    assert plan_batches([3, 3, 6], batch_size=3, threshold=0.7499) == [[0, 1, 2]]


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=300), max_size=40),
    batch_size=st.integers(min_value=1, max_value=25),
    bucket=st.booleans(),
)
def test_every_piece_lands_in_exactly_one_batch(lengths, batch_size, bucket):
    batches = plan_batches(lengths, batch_size, bucket=bucket)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= batch_size for batch in batches)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError):
        plan_batches([1, 2], batch_size=0)


# --------------------------------------------------------------------------- seeds, prompt text, job


def test_seed_minus_one_draws_a_seed_in_upstreams_range():
    seeds = {resolve_seed(-1) for _ in range(20)}
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert len(seeds) > 1


def test_explicit_seeds_are_kept_and_checked():
    assert resolve_seed(0) == 0
    assert resolve_seed(MAX_SEED) == MAX_SEED
    with pytest.raises(InvalidRequest):
        resolve_seed(MAX_SEED + 1)
    with pytest.raises(InvalidRequest):
        resolve_seed(-2)


def test_prompt_text_is_closed_with_a_full_stop_for_its_language():
    assert closed_prompt_text("这是参考", "all_zh") == "这是参考。"
    assert closed_prompt_text("this is it", "en") == "this is it."
    assert closed_prompt_text("已经结束了！\n", "zh") == "已经结束了！"
    assert closed_prompt_text("ends with a comma,", "en") == "ends with a comma,"


def test_planning_checks_codes_and_ranges():
    check_parameters(SynthesisJob("x", REFERENCE, "en"))
    for bad, code in (
        ({"text_split_method": "cut9"}, "unknown_cut_method"),
        ({"text_lang": "klingon"}, "unknown_language"),
        ({"batch_size": 0}, "out_of_range"),
        ({"speed_factor": 0}, "out_of_range"),
        ({"temperature": 0.0}, "out_of_range"),
        ({"top_p": float("nan")}, "out_of_range"),
        ({"sample_steps": 5}, "out_of_range"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            check_parameters(SynthesisJob("x", REFERENCE, **({"text_lang": "en"} | bad)))
        assert caught.value.code == code, bad


def test_job_prompt_and_seed_rules():
    assert SynthesisJob("x", REFERENCE, "en", prompt_text="hi").uses_prompt_text
    assert not SynthesisJob("x", REFERENCE, "en", prompt_text="hi", ref_text_free=True).uses_prompt_text
    assert not SynthesisJob("x", REFERENCE, "en", prompt_text="\n").uses_prompt_text
    assert SynthesisJob("x", REFERENCE, "en", seed=7).requested_seed == -1  # keep_random defaults to True
    assert SynthesisJob("x", REFERENCE, "en", seed=7, keep_random=False).requested_seed == 7


def test_reference_digest_follows_content_and_rate():
    samples = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    assert ReferenceAudio(samples, 16000).digest == ReferenceAudio(samples.copy(), 16000).digest
    assert ReferenceAudio(samples, 16000).digest != ReferenceAudio(samples, 32000).digest
    assert ReferenceAudio(samples, 16000).digest != ReferenceAudio(samples * 0.5, 16000).digest


def test_reference_decodes_wav_bytes_like_upstream_reads_them():
    pcm = (np.sin(np.arange(800) / 10) * 12000).astype(np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, 8000, format="WAV", subtype="PCM_16")
    reference = ReferenceAudio.decode(buffer.getvalue())
    assert reference.sample_rate == 8000
    np.testing.assert_array_equal(reference.samples, pcm.astype(np.float32) / 32768)


# --------------------------------------------------------------------------- the pipeline with fakes


@cache
def _prompt_phones() -> list[int]:
    return phones_for_piece("这是参考。", "all_zh", "v2").phone_ids


class FakeBert:
    def segment_features(self, segment):
        return torch.ones(1024, len(segment.phones))


class FakeT2S:
    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len
        self.calls: list[dict] = []

    def decode(self, request):
        self.calls.append(dict(vars(request)))
        skip = 0 if request.prompt is None else self.prompt_len
        # One token per target phone: the fragment's length then names the piece.
        return [torch.zeros(p.shape[0] - skip, dtype=torch.long) for p in request.phones]


class FakeDecoder:
    sample_rate = 2000

    def __init__(self):
        self.calls: list[dict] = []

    traits = SoVITSDecoder.traits

    def fragments(self, tokens, phones, references, settings):
        self.calls.append({"tokens": tokens, "phones": phones, "references": references, "speed": settings.speed})
        return [torch.full((t.shape[0],), 0.25) for t in tokens]


class FakeVoice:
    """What the pipeline uses of a Voice, with recording stand-ins."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.model_version = "v2"
        self.text_version = "v2"
        self.model_sample_rate = 1000  # differs from the decoder's rate on purpose
        self.t2s = FakeT2S(len(_prompt_phones()))
        self.decoder = FakeDecoder()
        self.shared = SimpleNamespace(bert=FakeBert())
        self.conditioned: list[ReferenceAudio] = []
        self.prompted: list[ReferenceAudio] = []

    @property
    def sample_rate(self):
        return self.decoder.sample_rate

    def conditioning(self, reference):
        self.conditioned.append(reference)
        return ReferenceConditioning(torch.zeros(1, 3, 2), None)

    def prompt_codes(self, reference):
        self.prompted.append(reference)
        return PROMPT_CODES


@pytest.fixture(scope="module")
def segments():
    return preprocess(TEXT, "all_zh", "cut5", "v2")


def _job(**overrides) -> SynthesisJob:
    values = dict(text=TEXT, text_lang="all_zh", ref_audio=REFERENCE, text_split_method="cut5", seed=42)
    values.update(keep_random=False, batch_size=2, fragment_interval=0.5, prompt_text="这是参考。")
    values.update(overrides)
    return SynthesisJob(**values)


def _voice() -> FakeVoice:
    return FakeVoice()


def test_fragments_come_back_in_text_order_with_pauses_at_the_model_rate(segments):
    assert len(segments) >= 4
    result = synthesize(_job(), _voice())
    pause = int(1000 * 0.5)  # model_sample_rate, not the output rate
    expected = np.concatenate(
        [np.concatenate([np.full(len(s.phone_ids), 0.25), np.zeros(pause)]) for s in segments]
    )
    np.testing.assert_array_equal(result.audio, (expected.astype(np.float32) * 32768).astype(np.int16))
    assert result.sample_rate == 2000
    assert result.seed == 42


def test_bucketing_decides_which_pieces_share_a_gpt_batch(segments):
    voice = _voice()
    synthesize(_job(), voice)
    batches = plan_batches([len(s.norm_text) for s in segments], 2)
    assert len(voice.t2s.calls) == len(batches) == len(voice.decoder.calls)
    for call, rows in zip(voice.decoder.calls, batches, strict=True):
        assert [p.tolist() for p in call["phones"]] == [segments[i].phone_ids for i in rows]


def test_a_speed_change_turns_bucketing_off(segments):
    voice = _voice()
    synthesize(_job(speed_factor=1.25), voice)
    firsts = [call["phones"][0].tolist() for call in voice.decoder.calls]
    assert firsts == [segments[i].phone_ids for i in range(0, len(segments), 2)]
    assert {call["speed"] for call in voice.decoder.calls} == {1.25}


def test_the_prompt_precedes_every_row_and_its_codes_are_passed(segments):
    voice = _voice()
    synthesize(_job(), voice)
    prompt_phones = _prompt_phones()
    call = voice.t2s.calls[0]
    assert call["prompt"] is PROMPT_CODES
    for phones, bert in zip(call["phones"], call["berts"], strict=True):
        assert phones[: len(prompt_phones)].tolist() == prompt_phones
        assert bert.shape == (1024, phones.shape[0])
    assert voice.prompted == [REFERENCE]


@pytest.mark.parametrize("overrides", [{"ref_text_free": True}, {"prompt_text": ""}])
def test_prompt_free_mode_sends_only_the_text(overrides, segments):
    voice = _voice()
    synthesize(_job(**overrides), voice)
    assert all(call["prompt"] is None for call in voice.t2s.calls)
    sent = sorted(p.tolist() for call in voice.t2s.calls for p in call["phones"])
    assert sent == sorted(s.phone_ids for s in segments)
    assert voice.prompted == []  # no HuBERT work when the codes are not used
    short = ReferenceAudio(np.zeros(16000 * 2, dtype=np.float32), 16000)
    with pytest.raises(InvalidRequest, match="3–10 s"):  # but the 3-10 s rule still applies, as upstream
        synthesize(_job(**overrides, ref_audio=short), _voice())


def test_gpt_parameters_are_passed_through():
    voice = _voice()
    synthesize(_job(top_k=3, top_p=0.8, temperature=0.7, repetition_penalty=1.1, parallel_infer=False), voice)
    call = voice.t2s.calls[0]
    assert (call["top_k"], call["top_p"], call["temperature"], call["repetition_penalty"]) == (
        3,
        0.8,
        0.7,
        1.1,
    )
    assert call["parallel"] is False
    assert call["generator"].initial_seed() == 42


def test_every_reference_conditions_the_decoder_main_first():
    aux = [ReferenceAudio(np.ones(16000 * 3, dtype=np.float32) * 0.1, 16000), ReferenceAudio(np.ones(8000 * 5), 8000)]
    voice = _voice()
    synthesize(_job(aux_ref_audios=aux), voice)
    assert voice.conditioned == [REFERENCE, *aux]
    assert all(len(call["references"]) == 3 for call in voice.decoder.calls)  # short aux clips are fine


def test_progress_is_reported_per_batch(segments):
    seen = []
    synthesize(_job(), _voice(), on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    n = len(segments)
    assert seen[0] == ("text", n, n)
    batch_updates = [s for s in seen if s[0] == "batch"]
    assert [done for _, done, _ in batch_updates] == sorted(done for _, done, _ in batch_updates)
    assert batch_updates[-1] == ("batch", n, n)


def test_should_stop_before_any_work_cancels():
    voice = _voice()
    with pytest.raises(Cancelled):
        synthesize(_job(), voice, should_stop=lambda: True)
    assert voice.t2s.calls == []


def test_should_stop_is_handed_to_the_decode_loop_and_its_cancellation_converted():
    voice = _voice()
    stop = lambda: False  # noqa: E731

    def cancelled(request):
        assert request.should_stop is stop
        raise DecodeCancelled("stopped")

    voice.t2s.decode = cancelled
    with pytest.raises(Cancelled):
        synthesize(_job(), voice, should_stop=stop)


def test_stopping_between_batches_ends_the_job():
    voice = _voice()
    with pytest.raises(Cancelled):
        synthesize(_job(), voice, should_stop=lambda: len(voice.decoder.calls) >= 1)
    assert len(voice.decoder.calls) == 1


def test_a_given_generator_is_used_and_the_seed_still_reported():
    voice = _voice()
    generator = torch.Generator().manual_seed(7)
    result = synthesize(_job(seed=99), voice, generator=generator)
    assert voice.t2s.calls[0]["generator"] is generator
    assert result.seed == 99


# --------------------------------------------------------------------------- SoVITSDecoder


class FakeSoVITS:
    def __init__(self):
        self.config = SimpleNamespace(sampling_rate=100, samples_per_code=3, uses_speaker_embedding=False)
        self.calls = []

    def decode(self, codes, phones, specs, *, speed, sv_embs, noise_scale, generator):
        self.calls.append((codes, phones, speed))
        n = round(codes.shape[-1] * self.config.samples_per_code / speed)
        return torch.arange(n, dtype=torch.float32).view(1, 1, -1)


def test_at_speed_one_a_batch_is_decoded_as_one_utterance_and_cut_by_token_count():
    model = FakeSoVITS()
    tokens = [torch.tensor([1, 2]), torch.tensor([3, 4, 5])]
    phones = [torch.tensor([10]), torch.tensor([11, 12])]
    references = [ReferenceConditioning(torch.zeros(1, 3, 2), None)]
    pieces = SoVITSDecoder(model).fragments(tokens, phones, references, DecodeSettings(1.0, 0.0, None))
    ((codes, ids, _),) = model.calls
    assert codes.tolist() == [[[1, 2, 3, 4, 5]]]
    assert ids.tolist() == [[10, 11, 12]]
    assert [p.tolist() for p in pieces] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 12, 13, 14]]


def test_at_another_speed_each_piece_is_decoded_alone():
    model = FakeSoVITS()
    tokens = [torch.tensor([1, 2]), torch.tensor([3, 4, 5])]
    phones = [torch.tensor([10]), torch.tensor([11, 12])]
    references = [ReferenceConditioning(torch.zeros(1, 3, 2), None)]
    pieces = SoVITSDecoder(model).fragments(tokens, phones, references, DecodeSettings(2.0, 0.0, None))
    assert [c[0].view(-1).tolist() for c in model.calls] == [[1, 2], [3, 4, 5]]
    assert [c[1].view(-1).tolist() for c in model.calls] == [[10], [11, 12]]
    assert [c[2] for c in model.calls] == [2.0, 2.0]
    assert [p.shape[0] for p in pieces] == [3, 4]
