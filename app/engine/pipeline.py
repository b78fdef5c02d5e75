"""The synthesis path: one :class:`SynthesisJob` + a loaded :class:`Voice` → int16 audio.

Upstream's ``TTS.run`` (non-streaming) for v1/v2/v2Pro/v2ProPlus, stage by stage:

1. references: the main clip must be 3-10 s; its semantic codes (the GPT prompt) and the conditioning
   of every reference (main first, then auxiliary ones, averaged by the decoder) come from the voice,
   which caches them per clip;
2. prompt text: closed with a full stop when it lacks one, then read like a text piece; its phones and
   BERT features precede those of every piece in the GPT input (skipped in prompt-free mode);
3. text: cut into pieces (the frontend), each with phones and BERT features;
4. batches: pieces grouped by :func:`plan_batches` (bucketing by length when ``split_bucket``);
5. per batch: GPT decode (parallel or sequential) → semantic tokens → decoder → one waveform per piece;
6. assembly in text order: each piece peak-limited and followed by ``fragment_interval`` of silence;
   for v3 with ``super_sampling``, the whole waveform is extended 24 -> 48 kHz (AP-BWE) and peak-limited
   again; then int16.

v3/v4 voices take the same path; only their decoder differs (:class:`~app.engine.voice.VocoderDecoder`:
content features -> flow-matching sampler with ``sample_steps`` -> vocoder, at the vocoder's rate). As
upstream, they need a prompt text (:class:`PromptTextRequired` otherwise), use only the main reference,
and turn bucketing off in parallel mode (the batched sampler keeps the pieces in text order).

Randomness (GPT sampling, decoder noise, the v3/v4 sampler's start noise) comes from one
``torch.Generator`` seeded with the job's seed, consumed in upstream's order, so a seeded job is
reproducible and needs no global seeding.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.engine.audio import assemble_fragments, peak_limited, silence_samples, to_int16
from app.engine.jobs import SynthesisCancelled, SynthesisJob, as_reference
from app.engine.models.bandwidth_extension import BandwidthExtender
from app.engine.models.t2s import DecodeCancelled
from app.engine.text.cut import SPLITS
from app.engine.text.preprocess import Segment, phones_for_piece, preprocess
from app.engine.voice import StartNoise, VocoderDecoder, VocoderPrompt, Voice

log = logging.getLogger(__name__)

# (stage, done, total): "text" once the pieces are known (done = total = pieces), then "batch" after
# every batch with the number of pieces synthesised so far.
ProgressCallback = Callable[[str, int, int], None]

MAX_SEED = 2**32 - 1  # upstream draws random seeds in [0, 2**32 - 1]

__all__ = [
    "PromptTextRequired",
    "SynthesisCancelled",
    "SynthesisResult",
    "plan_batches",
    "resolve_seed",
    "synthesize",
]


class PromptTextRequired(ValueError):
    """v3/v4 cannot synthesise without the reference's text (upstream's NO_PROMPT_ERROR)."""


@dataclass(frozen=True)
class SynthesisResult:
    sample_rate: int
    audio: np.ndarray  # int16, mono
    seed: int  # the seed actually used (a drawn one when the job asked for -1)


@dataclass(frozen=True)
class _Prompt:
    """The reference side of the GPT input: prompt-text phones and features, reference codes."""

    phone_ids: list[int]
    bert: torch.Tensor  # [1024, len(phone_ids)]
    codes: torch.Tensor  # [P] semantic codes of the main reference


def resolve_seed(requested: int) -> int:
    """``-1`` → a random seed in [0, 2**32 - 1] (upstream's rule); anything else is used as given."""
    if requested == -1:
        return random.SystemRandom().randint(0, MAX_SEED)
    if not 0 <= requested <= MAX_SEED:
        raise ValueError(f"seed must be -1 or in [0, {MAX_SEED}], got {requested}")
    return requested


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


def _closed_prompt_text(text: str, lang: str) -> str:
    """Upstream closes the prompt text with a full stop when it does not end in a split mark."""
    text = text.strip("\n")
    if text and text[-1] not in SPLITS:
        text += "." if lang == "en" else "。"
    return text


def synthesize(
    job: SynthesisJob,
    voice: Voice,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressCallback | None = None,
    generator: torch.Generator | None = None,
    start_noise: StartNoise | None = None,
    bandwidth_extender: BandwidthExtender | None = None,
) -> SynthesisResult:
    """Run one job. ``should_stop`` is polled at every GPT decode step and between stages; when it
    returns True, :class:`SynthesisCancelled` is raised. ``generator`` replaces the one seeded from
    the job (the reported seed is still the job's). ``start_noise`` (v3/v4, for tests) supplies the
    sampler's start noise per call instead of drawing it from the generator. ``bandwidth_extender``: the
    AP-BWE model, needed when a v3 job asks for ``super_sampling`` (ignored for other versions, as upstream).

    Raises ``TextRejected`` (nothing readable in the text), ``ReferenceAudioError`` (bad or too
    short/long reference), :class:`PromptTextRequired` (v3/v4 without prompt text) and ValueError for
    invalid codes or parameters.
    """

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise SynthesisCancelled("synthesis was stopped")

    started = time.perf_counter()
    uses_vocoder = isinstance(voice.decoder, VocoderDecoder)  # v3/v4
    if uses_vocoder and not job.uses_prompt_text:
        raise PromptTextRequired(
            f"{voice.model_version} models need the reference's text: set prompt_text (prompt-free mode "
            "is only available for v2 and later models that do not use a vocoder)"
        )
    super_sample = job.super_sampling and voice.model_version == "v3"
    if super_sample and bandwidth_extender is None:
        raise ValueError("super_sampling needs the AP-BWE model (bandwidth_extender)")
    seed = resolve_seed(job.requested_seed)
    if generator is None:
        generator = torch.Generator(device=voice.device).manual_seed(seed)

    # 1. references (main first: its conditioning leads the average, as upstream orders them)
    reference = as_reference(job.ref_audio)
    voice.check_reference(reference)
    references = [reference, *(as_reference(aux) for aux in job.aux_ref_audios)]
    if uses_vocoder:
        references = [reference]  # upstream's v3/v4 synthesis reads the main reference only
    conditioning = [voice.conditioning(r) for r in references]
    check_stop()

    # 2. prompt text
    prompt: _Prompt | None = None
    if job.uses_prompt_text:
        text = _closed_prompt_text(job.prompt_text, job.prompt_lang)
        segment = phones_for_piece(text, job.prompt_lang, voice.text_version)
        prompt = _Prompt(
            segment.phone_ids, voice.shared.bert.segment_features(segment), voice.prompt_codes(reference)
        )
    check_stop()

    # 3. text
    segments: list[Segment] = preprocess(job.text, job.text_lang, job.text_split_method, voice.text_version)
    features: list[torch.Tensor] = []
    for segment in segments:
        features.append(voice.shared.bert.segment_features(segment))
        check_stop()
    if on_progress is not None:
        on_progress("text", len(segments), len(segments))

    # 4. batches. Upstream turns bucketing off when the speed changes, and for v3/v4 in parallel mode.
    bucket = job.split_bucket and job.speed_factor == 1.0 and not (uses_vocoder and job.parallel_infer)
    decoder_inputs = {}
    if uses_vocoder:
        assert prompt is not None  # checked above
        decoder_inputs["prompt"] = VocoderPrompt(
            prompt.codes, prompt.phone_ids, job.sample_steps, job.parallel_infer, start_noise
        )
    batches = plan_batches([len(s.norm_text) for s in segments], job.batch_size, job.batch_threshold, bucket)
    log.info(
        "synthesising %d piece(s) in %d batch(es) (%s GPT decode, seed %d)",
        len(segments), len(batches), "parallel" if job.parallel_infer else "sequential", seed,
    )  # fmt: skip

    # 5. per batch: GPT → tokens → waveform per piece
    fragments: list[torch.Tensor | None] = [None] * len(segments)
    done = 0
    for number, rows in enumerate(batches, start=1):
        check_stop()
        batch_started = time.perf_counter()
        tokens = _decode_tokens(job, voice, [segments[i] for i in rows], [features[i] for i in rows], prompt,
                                generator, should_stop)  # fmt: skip
        check_stop()
        phones = [torch.tensor(segments[i].phone_ids, dtype=torch.long) for i in rows]
        audio = voice.decoder.fragments(
            tokens,
            phones,
            conditioning,
            speed=job.speed_factor,
            noise_scale=job.noise_scale,
            generator=generator,
            **decoder_inputs,  # v3/v4 only: the prompt and sampler settings (VocoderDecoder)
        )
        for index, fragment in zip(rows, audio, strict=True):
            fragments[index] = fragment
        done += len(rows)
        log.info(
            "batch %d/%d: %d piece(s), %s tokens, %.2f s",
            number, len(batches), len(rows), "+".join(str(t.shape[0]) for t in tokens),
            time.perf_counter() - batch_started,
        )  # fmt: skip
        if on_progress is not None:
            on_progress("batch", done, len(segments))

    # 6. assembly. Quirk kept: the pause length uses the SoVITS model's rate (upstream does so even for
    # v3/v4, whose vocoder output rate differs).
    pause = silence_samples(voice.model_sample_rate, job.fragment_interval)
    waveform = assemble_fragments([f for f in fragments if f is not None], pause)
    sample_rate = voice.sample_rate
    if super_sample:
        assert bandwidth_extender is not None
        check_stop()
        extended = bandwidth_extender.extend(torch.from_numpy(waveform), sample_rate)
        waveform = peak_limited(extended.cpu().numpy())
        sample_rate = bandwidth_extender.cfg.output_rate
    audio = to_int16(waveform)
    log.info(
        "synthesised %.2f s of audio at %d Hz in %.2f s",
        audio.shape[0] / sample_rate,
        sample_rate,
        time.perf_counter() - started,
    )
    return SynthesisResult(sample_rate=sample_rate, audio=audio, seed=seed)


def _decode_tokens(
    job: SynthesisJob,
    voice: Voice,
    segments: list[Segment],
    features: list[torch.Tensor],
    prompt: _Prompt | None,
    generator: torch.Generator,
    should_stop: Callable[[], bool] | None,
) -> list[torch.Tensor]:
    """The GPT stage for one batch: per piece, the semantic tokens upstream keeps."""
    if prompt is None:
        phones = [torch.tensor(s.phone_ids, dtype=torch.long) for s in segments]
        berts = features
    else:
        phones = [torch.tensor(prompt.phone_ids + s.phone_ids, dtype=torch.long) for s in segments]
        berts = [torch.cat([prompt.bert, f], dim=1) for f in features]
    try:
        return voice.t2s.generate(
            phones,
            berts,
            None if prompt is None else prompt.codes,
            top_k=job.top_k,
            top_p=job.top_p,
            temperature=job.temperature,
            repetition_penalty=job.repetition_penalty,
            parallel=job.parallel_infer,
            generator=generator,
            should_stop=should_stop,
        )
    except DecodeCancelled as exc:
        raise SynthesisCancelled("synthesis was stopped") from exc
