"""Request planning: the rules every surface's jobs go through (references, model rules, plans)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from app.engine.errors import Conflict, InvalidRequest, TooLarge
from app.engine.jobs import ReferenceAudio, SynthesisJob
from app.engine.planning import (
    RequestLimits,
    check_against_model,
    check_parameters,
    check_reference,
    check_request,
    plan_synthesis,
)
from app.engine.reference_clips import processing_bytes, read_header


def clip(seconds: float, rate: int = 16000, value: float = 0.1) -> ReferenceAudio:
    return ReferenceAudio(np.full(int(round(seconds * rate)), value, dtype=np.float32), rate)


def wav_file(seconds: float, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.full(int(seconds * rate), 0.1, dtype=np.float32), rate, format="WAV")
    return buffer.getvalue()


def job(**overrides) -> SynthesisJob:
    return SynthesisJob(**({"text": "你好。", "ref_audio": clip(4.0), "prompt_text": "参考。"} | overrides))


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises((InvalidRequest, Conflict)) as caught:
        call(*args, **kwargs)
    return caught.value.code


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("seconds", [2.9, 10.1])
def test_a_main_reference_outside_3_to_10_seconds_is_refused_at_any_rate(seconds, rate):
    assert code_of(check_reference, clip(seconds, rate)) == "ref_audio_length"


@pytest.mark.parametrize("seconds", [3.0, 10.0])
def test_the_limits_themselves_are_accepted(seconds):
    check_reference(clip(seconds, 22050))


def test_auxiliary_clips_follow_the_same_rules():
    assert code_of(check_reference, clip(0.5), "aux_ref_audio_paths") == "ref_audio_length"
    assert code_of(check_reference, clip(5, 7999), "aux_ref_audio_paths") == "ref_audio_sample_rate"
    check_reference(clip(4.0), "aux_ref_audio_paths")


@pytest.mark.parametrize("rate", [7999, 192_001, 2_147_483_647])
def test_rates_outside_the_documented_range_are_refused(rate):
    samples = np.zeros(8000 * 4, dtype=np.float32)
    assert code_of(check_reference, ReferenceAudio(samples, rate)) == "ref_audio_sample_rate"


def test_a_clip_declared_at_a_tiny_rate_is_refused_for_its_rate():
    """Five samples declared at 1 Hz last five 'seconds' but hold no speech."""
    assert code_of(check_reference, ReferenceAudio(np.zeros(5, dtype=np.float32), 1)) == "ref_audio_sample_rate"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(bad):
    samples = np.zeros(16000 * 4, dtype=np.float32)
    samples[100] = bad
    assert code_of(check_reference, ReferenceAudio(samples, 16000)) == "ref_audio_not_finite"


def test_check_request_checks_every_reference():
    assert code_of(check_request, job(ref_audio=clip(1.0))) == "ref_audio_length"
    assert code_of(check_request, job(aux_ref_audios=[clip(4.0, 4000)])) == "ref_audio_sample_rate"
    assert code_of(check_request, job(aux_ref_audios=[clip(1.0)])) == "ref_audio_length"
    check_request(job(aux_ref_audios=[clip(4.0)]))


def test_check_request_bounds_the_number_of_aux_clips():
    limits = RequestLimits(max_aux_refs=2)
    check_request(job(aux_ref_audios=[clip(4.0)] * 2), limits)
    assert code_of(check_request, job(aux_ref_audios=[clip(4.0)] * 3), limits) == "too_many_aux_refs"


def test_check_request_decodes_file_bytes_once_within_the_budget():
    """A job built from file bytes (a stored voice's clips) comes back decoded; later stages trust it.
    The budget is charged from the headers before decoding: one clip too many is a 413-kind error."""
    data = wav_file(4.0, 32000)
    checked = check_request(job(ref_audio=data, aux_ref_audios=[data]))
    assert isinstance(checked.ref_audio, ReferenceAudio) and checked.ref_audio.seconds == 4.0
    assert all(isinstance(a, ReferenceAudio) for a in checked.aux_ref_audios)
    one_clip = processing_bytes(read_header(data))
    tight = RequestLimits(reference_budget_bytes=one_clip + one_clip // 2)
    check_request(job(ref_audio=data), tight)
    with pytest.raises(TooLarge) as caught:
        check_request(job(ref_audio=data, aux_ref_audios=[data]), tight)
    assert caught.value.code == "reference_budget_exceeded"


@pytest.mark.parametrize("lang", ["all_yue", "all_ko", "yue", "ko", "auto_yue"])
def test_v1_models_speak_only_upstreams_v1_languages(lang):
    assert code_of(check_against_model, job(text_lang=lang), "v1") == "language_not_supported"
    assert code_of(check_against_model, job(prompt_lang=lang), "v1") == "language_not_supported"
    check_against_model(job(text_lang=lang, prompt_lang=lang), "v2")


@pytest.mark.parametrize("version", ["v3", "v4"])
@pytest.mark.parametrize("overrides", [{"prompt_text": ""}, {"ref_text_free": True}])
def test_vocoder_models_need_the_prompt_text(version, overrides):
    assert code_of(check_against_model, job(**overrides), version) == "prompt_text_required"
    check_against_model(job(**overrides), "v2ProPlus")


def test_super_sampling_needs_its_model_for_v3_only():
    missing = ["g_24kto48k.zip"]
    assert code_of(check_against_model, job(super_sampling=True), "v3", super_sampling_missing=missing) == (
        "super_sampling_model_missing"
    )
    check_against_model(job(super_sampling=True), "v4", super_sampling_missing=missing)  # ignored, as upstream
    check_against_model(job(super_sampling=True), "v3")


def test_the_plan_uses_aux_references_and_buckets_as_upstream_does():
    aux = [clip(3.0), clip(4.0)]
    sovits_plan = plan_synthesis(job(aux_ref_audios=aux, keep_random=False, seed=9), "v2Pro")
    assert len(sovits_plan.references) == 3 and sovits_plan.bucket and sovits_plan.seed == 9
    vocoder_plan = plan_synthesis(job(aux_ref_audios=aux), "v4")
    assert len(vocoder_plan.references) == 1  # v3/v4 read the main reference only
    assert not vocoder_plan.bucket  # and keep text order in parallel mode
    assert plan_synthesis(job(parallel_infer=False), "v4").bucket
    assert not plan_synthesis(job(speed_factor=1.1), "v2").bucket  # a speed change turns bucketing off
    assert plan_synthesis(job(super_sampling=True), "v3").super_sample
    assert not plan_synthesis(job(super_sampling=True), "v4").super_sample


@pytest.mark.parametrize("text", ["   ", "\u3000\u3000", " \t "])
def test_a_whitespace_only_prompt_text_is_refused(text):
    assert code_of(check_parameters, job(prompt_text=text)) == "prompt_text_blank"


@pytest.mark.parametrize("overrides", [{"prompt_text": ""}, {"prompt_text": "\n"}, {"prompt_text": " ", "ref_text_free": True}])
def test_prompt_free_spellings_stay_allowed(overrides):
    check_parameters(job(**overrides))
