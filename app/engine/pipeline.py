"""The synthesis path: one :class:`SynthesisJob` + a loaded :class:`Voice` → int16 audio.

Upstream's ``TTS.run`` (non-streaming), stage by stage:

1. plan (``app.engine.planning``): the job's rules are checked and upstream's per-request decisions
   made: which references condition the decoder, bucketing, the seed, super-sampling;
2. references: the main clip's semantic codes (the GPT prompt) and the conditioning of every reference
   the decoder reads come from the voice, which caches them per clip;
3. prompt text: closed with a full stop when it lacks one, then read like a text piece; its phones and
   BERT features precede those of every piece in the GPT input (skipped in prompt-free mode);
4. text: cut into pieces (the frontend), each with phones and BERT features;
5. batches: pieces grouped by :func:`~app.engine.planning.plan_batches`;
6. per batch: GPT decode (parallel or sequential) → semantic tokens → the voice's decoder → one
   waveform per piece (SoVITS for v1-v2ProPlus; content features -> flow matching -> vocoder for v3/v4,
   through the same interface);
7. streaming (``streaming_mode`` 1-3, see ``app.engine.streaming``): mode 1 hands out each batch's
   audio as soon as it is decoded; modes 2/3 decode each piece alone, its tokens in chunks while
   the GPT decodes, with no bucketing; otherwise,
8. assembly in text order: each piece peak-limited and followed by ``fragment_interval`` of silence;
   for v3 with ``super_sampling``, the whole waveform is extended 24 -> 48 kHz (AP-BWE) and peak-limited
   again; then int16.

Concurrency: the pipeline runs on a request's own worker thread. ``Stages`` says how its heavy parts
meet other requests': the GPT decode goes to the shared GPT stage (continuous batching) or runs alone,
and the frontend and the decoder take turns (one request at a time in either), so many running
requests overlap stage by stage instead of all computing at once.

Randomness (GPT sampling, decoder noise, the v3/v4 sampler's start noise) comes from one
``torch.Generator`` seeded with the job's seed, consumed in upstream's order, so a seeded job is
reproducible and needs no global seeding.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from app.engine.audio import assemble_fragments, peak_limited, silence_samples, to_int16
from app.engine.decoders import DecodeSettings
from app.engine.errors import Cancelled, Conflict
from app.engine.jobs import SynthesisJob
from app.engine.models.bandwidth_extension import BandwidthExtender
from app.engine.models.t2s import DecodeCancelled, T2SModel
from app.engine.models.t2s_decode import DecodeRequest
from app.engine.planning import closed_prompt_text, plan_batches, plan_synthesis
from app.engine.streaming import PieceStitcher, TokenChunker
from app.engine.text.preprocess import Segment, phones_for_piece, preprocess
from app.engine.voice import Voice

log = logging.getLogger(__name__)

# (stage, done, total): "text" once the pieces are known (done = total = pieces), then "batch" after
# every batch with the number of pieces synthesised so far.
ProgressCallback = Callable[[str, int, int], None]

DEFAULT_NOISE_SCALE = 0.5  # upstream hard-codes the SoVITS decoder's noise scale to 0.5


@dataclass(frozen=True)
class SynthesisResult:
    sample_rate: int
    audio: np.ndarray  # int16, mono
    seed: int  # the seed actually used (a drawn one when the job asked for -1)
    # Seconds each stage took: "frontend" (references, text, BERT), "gpt" (waiting for and taking part
    # in the GPT decode), "decoder" (to waveforms, super-sampling included), summed over the pieces.
    stage_seconds: Mapping[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / self.sample_rate


def _decode_alone(model: T2SModel, request: DecodeRequest) -> list[torch.Tensor]:
    return model.decode(request)


@dataclass(frozen=True)
class Stages:
    """How a request's heavy parts run beside other requests' (see the module docstring)."""

    gpt: Callable[[T2SModel, DecodeRequest], list[torch.Tensor]] = _decode_alone
    turn: AbstractContextManager = nullcontext()  # held for the frontend and for each decoder call


ALONE = Stages()


class _StageClock:
    """Seconds spent in each stage of one synthesis (a stream's GPT runs on another thread: each
    stage is added to by one thread only)."""

    def __init__(self):
        self.seconds = {"frontend": 0.0, "gpt": 0.0, "decoder": 0.0}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - began


@dataclass(frozen=True)
class _Prompt:
    """The reference side of the GPT input: prompt-text phones and features, reference codes."""

    phone_ids: list[int]
    bert: torch.Tensor  # [1024, len(phone_ids)]
    codes: torch.Tensor  # [P] semantic codes of the main reference


def synthesize(
    job: SynthesisJob,
    voice: Voice,
    *,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressCallback | None = None,
    generator: torch.Generator | None = None,
    bandwidth_extender: BandwidthExtender | None = None,
    stages: Stages = ALONE,
    on_chunk: Callable[[np.ndarray], None] | None = None,
) -> SynthesisResult:
    """Run one job. ``noise_scale``: the SoVITS decoder's sampling noise (the service's
    ``GSV_DECODER_NOISE_SCALE``; 0 reproduces the conformance corpus). ``should_stop`` is polled at
    every GPT decode step and between stages; when it returns True, ``Cancelled`` is raised.
    ``generator`` replaces the one seeded from the job (the reported seed is still the job's).
    ``bandwidth_extender``: the AP-BWE model, needed when a v3 job asks for ``super_sampling``.
    ``on_chunk`` receives the int16 audio as it is made, in the chunks of the job's
    ``streaming_mode`` (mode 0: the whole answer once); the result holds all of it either way.

    Refusals are ``app.engine.errors`` kinds (InvalidRequest for the job's rules, text with nothing
    readable and bad references; Conflict for super-sampling without its model; Cancelled).
    """

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled("synthesis was stopped")

    started = time.perf_counter()
    plan = plan_synthesis(job, voice.model_version)
    if plan.super_sample and bandwidth_extender is None:
        raise Conflict("super_sampling needs the AP-BWE model", code="super_sampling_model_missing")
    if generator is None:
        generator = torch.Generator(device=voice.device).manual_seed(plan.seed)
    clock = _StageClock()

    with stages.turn, clock("frontend"):
        # references (main first: its conditioning leads the average, as upstream orders them)
        conditioning = [voice.conditioning(r) for r in plan.references]
        check_stop()

        # prompt text
        prompt: _Prompt | None = None
        if plan.uses_prompt:
            text = closed_prompt_text(job.prompt_text, job.prompt_lang)
            segment = phones_for_piece(text, job.prompt_lang, voice.text_version)
            prompt = _Prompt(
                segment.phone_ids,
                voice.shared.bert.segment_features(segment),
                voice.prompt_codes(plan.references[0]),
            )
        check_stop()

        # text
        segments: list[Segment] = preprocess(
            job.text, job.text_lang, job.text_split_method, voice.text_version
        )
        features: dict[int, torch.Tensor] = {}  # piece → BERT features
        if not plan.streaming_mode:  # a stream reads each piece's when its turn comes (sooner audio)
            for i, segment in enumerate(segments):
                features[i] = voice.shared.bert.segment_features(segment)
                check_stop()

    def features_of(rows: list[int]) -> list[torch.Tensor]:
        if missing := [i for i in rows if i not in features]:
            with stages.turn, clock("frontend"):
                for i in missing:
                    features[i] = voice.shared.bert.segment_features(segments[i])
        return [features[i] for i in rows]

    if on_progress is not None:
        on_progress("text", len(segments), len(segments))

    settings = DecodeSettings(
        speed=job.speed_factor,
        noise_scale=noise_scale,
        generator=generator,
        prompt_codes=None if prompt is None else prompt.codes,
        prompt_phone_ids=() if prompt is None else tuple(prompt.phone_ids),
        sample_steps=job.sample_steps,
        batched=job.parallel_infer,
    )
    pause = silence_samples(voice.model_sample_rate, job.fragment_interval)
    extender = bandwidth_extender if plan.super_sample else None
    streamed: list[np.ndarray] = []

    def emit(chunk: np.ndarray) -> None:
        streamed.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)

    if plan.streaming_mode in (2, 3):
        log.info(
            "streaming %d piece(s) in token chunks (mode %d, seed %d)", len(segments), plan.streaming_mode, plan.seed
        )
        similarity = voice.mute_similarity if plan.streaming_mode == 2 else None
        # The GPT samples on its own thread while this one decodes chunks: the decoder's noise gets a
        # stream of its own (seeded alike), so a seeded stream does not depend on thread timing.
        settings = dataclasses.replace(
            settings, generator=torch.Generator(device=voice.device).manual_seed(plan.seed)
        )
        for number, segment in enumerate(segments, start=1):
            check_stop()
            request = _gpt_request(job, [segment], features_of([number - 1]), prompt, generator, should_stop,
                                   parallel=False)  # fmt: skip
            _stream_piece(request, voice, segment, conditioning, settings, similarity, stages, emit, job, clock)
            emit(np.zeros(pause, dtype=np.int16))
            if on_progress is not None:
                on_progress("batch", number, len(segments))
        return _finished(np.concatenate(streamed), voice.sample_rate, plan.seed, started, clock)

    batches = plan_batches(
        [len(s.norm_text) for s in segments], job.batch_size, job.batch_threshold, plan.bucket
    )
    log.info(
        "synthesising %d piece(s) in %d batch(es) (%s GPT decode, seed %d%s)",
        len(segments), len(batches), "parallel" if job.parallel_infer else "sequential", plan.seed,
        ", one chunk per batch" if plan.streaming_mode else "",
    )  # fmt: skip

    # per batch: GPT → tokens → waveform per piece
    fragments: list[torch.Tensor | None] = [None] * len(segments)
    done = 0
    for number, rows in enumerate(batches, start=1):
        check_stop()
        batch_started = time.perf_counter()
        request = _gpt_request(job, [segments[i] for i in rows], features_of(rows), prompt,
                               generator, should_stop, parallel=job.parallel_infer)  # fmt: skip
        with clock("gpt"):
            tokens = _decode_tokens(voice, request, stages)
        check_stop()
        phones = [torch.tensor(segments[i].phone_ids, dtype=torch.long) for i in rows]
        with stages.turn, clock("decoder"):
            audio = voice.decoder.fragments(tokens, phones, conditioning, settings)
        for index, fragment in zip(rows, audio, strict=True):
            fragments[index] = fragment
        if plan.streaming_mode:  # mode 1: this batch's pieces, each followed by its pause, as a chunk
            check_stop()
            with clock("decoder"):
                emit(_to_output(assemble_fragments(audio, pause), extender, voice))
        done += len(rows)
        log.info(
            "batch %d/%d: %d piece(s), %s tokens, %.2f s",
            number, len(batches), len(rows), "+".join(str(t.shape[0]) for t in tokens),
            time.perf_counter() - batch_started,
        )  # fmt: skip
        if on_progress is not None:
            on_progress("batch", done, len(segments))

    sample_rate = bandwidth_extender.cfg.output_rate if plan.super_sample else voice.sample_rate
    if plan.streaming_mode:
        return _finished(np.concatenate(streamed), sample_rate, plan.seed, started, clock)
    # assembly. Quirk kept: the pause length uses the SoVITS model's rate (upstream does so even for
    # v3/v4, whose vocoder output rate differs).
    waveform = assemble_fragments([f for f in fragments if f is not None], pause)
    check_stop()
    with clock("decoder"):
        audio = _to_output(waveform, extender, voice)
    if on_chunk is not None:  # asked for chunks without streaming: the whole answer is the one chunk
        on_chunk(audio)
    return _finished(audio, sample_rate, plan.seed, started, clock)


def _to_output(waveform: np.ndarray, extender: BandwidthExtender | None, voice: Voice) -> np.ndarray:
    """Float waveform → the int16 answer: extended 24 → 48 kHz first (v3 super-sampling) when given."""
    if extender:
        extended = extender.extend(torch.from_numpy(waveform), voice.sample_rate)
        waveform = peak_limited(extended.cpu().numpy())
    return to_int16(waveform)


def _finished(
    audio: np.ndarray, sample_rate: int, seed: int, started: float, clock: _StageClock
) -> SynthesisResult:
    log.info(
        "synthesised %.2f s of audio at %d Hz in %.2f s",
        audio.shape[0] / sample_rate, sample_rate, time.perf_counter() - started,
    )  # fmt: skip
    return SynthesisResult(sample_rate=sample_rate, audio=audio, seed=seed, stage_seconds=dict(clock.seconds))


_GPT_DONE = object()


def _stream_piece(
    request: DecodeRequest,
    voice: Voice,
    segment: Segment,
    conditioning: list,
    settings: DecodeSettings,
    similarity: torch.Tensor | None,
    stages: Stages,
    emit: Callable[[np.ndarray], None],
    job: SynthesisJob,
    clock: _StageClock,
) -> None:
    """Streaming modes 2/3 for one piece: the GPT decodes it on another thread (alone, or beside
    other requests in the GPT stage) and reports each token; the cut rule turns tokens into chunks,
    which this thread decodes into audio while the GPT goes on."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    chunker = TokenChunker(job.min_chunk_length, similarity)
    abandoned = threading.Event()  # this side failed: stop the GPT instead of decoding for nobody

    def on_token(row: int, token: int | None, ended: bool) -> None:  # on the decoding thread
        if ended:
            events.put((chunker.finish(token), True))
            return
        chunk = chunker.push(token)
        if chunk is not None:
            events.put((chunk, False))

    asked_to_stop = request.should_stop
    request.on_token = on_token
    request.should_stop = lambda: abandoned.is_set() or (asked_to_stop is not None and asked_to_stop())

    def run_gpt() -> None:
        try:
            with clock("gpt"):
                _decode_tokens(voice, request, stages)
            events.put(_GPT_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            events.put(exc)

    gpt = threading.Thread(target=run_gpt, name="gpt-stream", daemon=True)
    gpt.start()
    phones = torch.tensor(segment.phone_ids, dtype=torch.long)
    stitcher = PieceStitcher(
        voice.decoder.chunk_decoder(phones, conditioning, settings),
        voice.decoder.samples_per_token(job.speed_factor),
        job.overlap_length,
    )
    try:
        while (event := events.get()) is not _GPT_DONE:
            if isinstance(event, BaseException):
                raise event
            tokens, final = event
            with stages.turn, clock("decoder"):
                audio = stitcher.chunk(tokens, final)
            if audio is not None:
                emit(to_int16(peak_limited(audio.cpu().numpy())))
    finally:
        abandoned.set()
        gpt.join()


def _gpt_request(
    job: SynthesisJob,
    segments: list[Segment],
    features: list[torch.Tensor],
    prompt: _Prompt | None,
    generator: torch.Generator,
    should_stop: Callable[[], bool] | None,
    parallel: bool,
) -> DecodeRequest:
    """The GPT call for some pieces: prompt-text phones and features before each piece's, the
    reference's codes as the prompt."""
    if prompt is None:
        phones = [torch.tensor(s.phone_ids, dtype=torch.long) for s in segments]
        berts = features
    else:
        phones = [torch.tensor(prompt.phone_ids + s.phone_ids, dtype=torch.long) for s in segments]
        berts = [torch.cat([prompt.bert, f], dim=1) for f in features]
    return DecodeRequest(
        phones,
        berts,
        None if prompt is None else prompt.codes,
        top_k=job.top_k,
        top_p=job.top_p,
        temperature=job.temperature,
        repetition_penalty=job.repetition_penalty,
        parallel=parallel,
        generator=generator,
        should_stop=should_stop,
    )


def _decode_tokens(voice: Voice, request: DecodeRequest, stages: Stages) -> list[torch.Tensor]:
    """The GPT stage for one request: per piece, the semantic tokens upstream keeps."""
    try:
        return stages.gpt(voice.t2s, request)
    except DecodeCancelled as exc:
        raise Cancelled("synthesis was stopped") from exc
