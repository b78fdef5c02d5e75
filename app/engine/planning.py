"""Request planning: every rule about a synthesis request, in one place.

A surface (REST, web UI, other APIs) builds a :class:`~app.engine.jobs.SynthesisJob`; the engine checks
it here before it queues the job (a bad request is refused before it waits for the worker), and the
pipeline turns it into a :class:`SynthesisPlan` here before it runs. Both use the same functions:

- :func:`check_request`, what needs no model: :func:`check_parameters` (codes, and the ranges of
  :data:`~app.engine.jobs.PARAMETER_BOUNDS`), the number of clips and their memory
  (:class:`RequestLimits`), and :func:`check_reference` (a clip's rate and samples, and upstream's
  3-10 s rule, for every reference); it answers the job with its clips decoded, which later stages trust;
- :func:`check_against_model`: what the chosen model version allows (v1 languages, the prompt text
  v3/v4 need, super-sampling);
- :func:`plan_synthesis`: the decisions upstream makes per request (which references condition the
  decoder, bucketing, the seed, super-sampling), and :func:`plan_batches`, its batching.

Refusals are the engine's own error kinds (``app.engine.errors``) with stable codes.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.engine.decoders import DecoderTraits, SoVITSDecoder, VocoderDecoder
from app.engine.errors import Conflict, InvalidRequest
from app.engine.jobs import (
    CUT_METHODS,
    MAX_SEED,
    PARAMETER_BOUNDS,
    SAMPLE_STEPS,
    ReferenceAudio,
    SynthesisJob,
    as_reference,
)
from app.engine.languages import LANGUAGES, languages_for
from app.engine.reference_clips import REFERENCE_RULES, AudioSource, ClipRules, ReferenceBudget
from app.engine.text.cut import SPLITS
from app.engine.text.symbols import text_version


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what one request may make the engine hold, set by the operator."""

    max_aux_refs: int = 8  # auxiliary reference clips per request
    reference_budget_bytes: int = 256 * 1024 * 1024  # memory for decoding every clip of a request


@dataclass(frozen=True)
class SynthesisPlan:
    """What the pipeline does for one job, decided before any model runs."""

    seed: int  # the seed used (drawn when the job asked for a random one)
    references: list[ReferenceAudio]  # decoded, main first; only those the decoder reads
    uses_prompt: bool  # the prompt text and the reference's codes condition the GPT
    bucket: bool  # group pieces of similar length into GPT batches
    super_sample: bool  # extend the audio 24 -> 48 kHz (v3 + super_sampling)
    # 0: the whole answer at once; 1: one chunk per batch; 2/3: token chunks (see app.engine.streaming)
    streaming_mode: int = 0


def decoder_traits(model_version: str) -> DecoderTraits:
    """The decoder family's traits for a model version, known before the model loads."""
    return (VocoderDecoder if model_version in ("v3", "v4") else SoVITSDecoder).traits


def check_language(lang: str, field: str, model_version: str | None = None) -> None:
    """``lang`` is a language code, and one the model version (when given) can speak."""
    if lang not in LANGUAGES:
        raise InvalidRequest(
            f"{field} {lang!r} is not a language code; use one of {', '.join(LANGUAGES)}",
            code="unknown_language",
        )
    allowed = languages_for(text_version(model_version)) if model_version else LANGUAGES
    if lang not in allowed:
        raise InvalidRequest(
            f"{field} {lang!r} is not available for {model_version} models; use one of {', '.join(allowed)}",
            code="language_not_supported",
        )


def check_cut_method(method: str) -> None:
    if method not in CUT_METHODS:
        raise InvalidRequest(
            f"text_split_method {method!r} is unknown; use one of {', '.join(CUT_METHODS)}",
            code="unknown_cut_method",
        )


def check_parameters(job: SynthesisJob) -> None:
    """Codes and ranges every job must satisfy, whichever model runs it."""
    check_language(job.text_lang, "text_lang")
    check_language(job.prompt_lang, "prompt_lang")
    check_cut_method(job.text_split_method)
    for name, bounds in PARAMETER_BOUNDS.items():
        value = getattr(job, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and bounds.contains(value)):
            raise InvalidRequest(f"{name} must be in {bounds.describe()}, got {value!r}", code="out_of_range")
    if job.sample_steps not in SAMPLE_STEPS:
        raise InvalidRequest(
            f"sample_steps must be one of {', '.join(map(str, SAMPLE_STEPS))}, got {job.sample_steps!r}",
            code="out_of_range",
        )
    if job.uses_prompt_text and not job.prompt_text.strip():
        # Upstream would condition on a prompt of bare punctuation: never what the caller meant.
        raise InvalidRequest(
            "prompt_text holds only whitespace: send the reference clip's words, or leave it empty for "
            "prompt-free mode",
            code="prompt_text_blank",
        )


def check_against_model(
    job: SynthesisJob, model_version: str, *, super_sampling_missing: Sequence[str] = ()
) -> None:
    """What the chosen model allows. ``super_sampling_missing``: files of the AP-BWE model that are not
    installed (super-sampling a v3 model needs them)."""
    check_language(job.text_lang, "text_lang", model_version)
    check_language(job.prompt_lang, "prompt_lang", model_version)
    if decoder_traits(model_version).needs_prompt_text and not job.uses_prompt_text:
        raise InvalidRequest(
            f"SoVITS {model_version} models need the reference's text: set prompt_text "
            "(ref_text_free / prompt-free synthesis is not available for v3/v4, as upstream)",
            code="prompt_text_required",
        )
    if super_samples(job, model_version) and super_sampling_missing:
        # Upstream silently answers 24 kHz when the model is missing; a request that asked for
        # 48 kHz gets a clear refusal instead.
        raise Conflict(
            f"super_sampling needs upstream's AP-BWE model: {' and '.join(super_sampling_missing)} missing "
            "from tools/AP_BWE_main/24kto48k/ in the weights root (see weights/README.md); "
            "send super_sampling=false for 24 kHz audio",
            code="super_sampling_model_missing",
        )


def super_samples(job: SynthesisJob, model_version: str) -> bool:
    """super_sampling applies to v3 models only (upstream ignores it for every other version)."""
    return job.super_sampling and model_version == "v3"


def check_reference(
    reference: ReferenceAudio, field: str = "ref_audio_path", rules: ClipRules = REFERENCE_RULES
) -> None:
    """A clip's rate and samples must be usable, and it must last 3-10 s (upstream's rule for the
    main reference; auxiliary ones follow it too: their cost grows with their length)."""
    if not rules.min_rate <= reference.sample_rate <= rules.max_rate:
        raise InvalidRequest(
            f"{field} is sampled at {reference.sample_rate} Hz; reference clips must be sampled at "
            f"{rules.min_rate}–{rules.max_rate} Hz",
            code="ref_audio_sample_rate",
        )
    if not np.isfinite(reference.samples).all():
        raise InvalidRequest(
            f"{field} holds samples that are not finite numbers", code="ref_audio_not_finite"
        )
    seconds = reference.seconds
    if not rules.min_seconds <= seconds <= rules.max_seconds:
        raise InvalidRequest(
            f"{field} is {seconds:.2f} s long; the reference clip must be {rules.describe_length()}",
            code="ref_audio_length",
        )


def check_aux_count(count: int, limits: RequestLimits, field: str = "aux_ref_audio_paths") -> None:
    if count > limits.max_aux_refs:
        raise InvalidRequest(
            f"{field}: {count} auxiliary reference clips; at most {limits.max_aux_refs} are allowed",
            code="too_many_aux_refs",
        )


def check_request(job: SynthesisJob, limits: RequestLimits = RequestLimits()) -> SynthesisJob:
    """The rules that need no model: parameters, the number of clips, and every clip (decoded here,
    within the request's memory budget, when it came as file bytes). Answers the job with its clips
    decoded: later stages read them without checking again."""
    check_parameters(job)
    check_aux_count(len(job.aux_ref_audios), limits)
    budget = ReferenceBudget(limits.reference_budget_bytes)
    main, aux = checked_references(job.ref_audio, job.aux_ref_audios, budget)
    return dataclasses.replace(job, ref_audio=main, aux_ref_audios=aux)


def checked_references(
    main: ReferenceAudio | AudioSource,
    aux: Sequence[ReferenceAudio | AudioSource],
    budget: ReferenceBudget | None = None,
    fields: tuple[str, str] = ("ref_audio_path", "aux_ref_audio_paths"),
) -> tuple[ReferenceAudio, list[ReferenceAudio]]:
    """The main and auxiliary clips decoded (file bytes within ``budget``) and checked against the
    reference rules; refusals name ``fields`` (the main clip's, the auxiliary ones')."""
    decoded = []
    for clip, field in [(main, fields[0]), *((a, fields[1]) for a in aux)]:
        decoded.append(as_reference(clip, field, budget))
        check_reference(decoded[-1], field)
    return decoded[0], decoded[1:]


def plan_synthesis(job: SynthesisJob, model_version: str) -> SynthesisPlan:
    """Check ``job`` for ``model_version`` and decide what upstream's ``TTS.run`` decides for it."""
    check_parameters(job)
    check_against_model(job, model_version)
    traits = decoder_traits(model_version)
    main = as_reference(job.ref_audio)
    check_reference(main)
    references = [main]
    if traits.uses_aux_references:  # upstream's v3/v4 synthesis reads the main reference only
        for aux in job.aux_ref_audios:
            clip = as_reference(aux, "aux_ref_audio_paths")
            check_reference(clip, "aux_ref_audio_paths")
            references.append(clip)
    # Upstream's v3/v4 cannot decode token chunks: streaming modes 2 and 3 fall back to mode 1.
    streaming = job.streaming_mode
    if streaming in (2, 3) and not traits.streams_tokens:
        streaming = 1
    # Upstream turns bucketing off when the speed changes, for v3/v4 in parallel mode, and when it
    # streams (chunks come in text order).
    bucket = (
        job.split_bucket
        and job.speed_factor == 1.0
        and (traits.buckets_when_batched or not job.parallel_infer)
        and streaming == 0
    )
    return SynthesisPlan(
        seed=resolve_seed(job.requested_seed),
        references=references,
        uses_prompt=job.uses_prompt_text,
        bucket=bucket,
        super_sample=super_samples(job, model_version),
        streaming_mode=streaming,
    )


def resolve_seed(requested: int) -> int:
    """``-1`` → a random seed in [0, 2**32 - 1] (upstream's rule); anything else is used as given."""
    if requested == -1:
        return random.SystemRandom().randint(0, MAX_SEED)
    if not 0 <= requested <= MAX_SEED:
        raise InvalidRequest(f"seed must be -1 or in [0, {MAX_SEED}], got {requested}", code="out_of_range")
    return requested


def closed_prompt_text(text: str, lang: str) -> str:
    """Upstream closes the prompt text with a full stop when it does not end in a split mark."""
    text = text.strip("\n")
    if text and text[-1] not in SPLITS:
        text += "." if lang == "en" else "。"
    return text


def plan_batches(
    lengths: Sequence[int], batch_size: int, threshold: float = 0.75, bucket: bool = True
) -> list[list[int]]:
    """Group piece indices into GPT batches (upstream's ``to_batch``).

    Without bucketing: consecutive groups of ``batch_size``. With bucketing: pieces sorted by length
    (stable), then each batch takes up to ``batch_size`` of the next pieces and shrinks from the end
    until its middle element's length is at least ``threshold`` times the batch's mean length.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    n = len(lengths)
    if not bucket:
        return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
    order = sorted(range(n), key=lambda i: lengths[i])
    sorted_lengths = np.array([lengths[i] for i in order], dtype=np.float32)
    batches: list[list[int]] = []
    pos = 0
    while pos < n:
        end = min(pos + batch_size, n)
        while end - pos > 1:
            window = sorted_lengths[pos:end]
            # In float64 like upstream under NumPy 1.x (float32 scalar + Python float promoted then):
            # the 1e-8 must survive, so a middle length of exactly threshold * mean does NOT pass.
            score = float(window[(end - pos) // 2]) / (float(window.mean()) + 1e-8)
            if score >= threshold:
                break
            end -= 1
        batches.append(order[pos:end])
        pos = end
    return batches
