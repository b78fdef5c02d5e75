"""Synthesis endpoints: ``/inference`` (text + reference clip → audio, whole or streamed) and ``/stop``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, TypeVar

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from app.deps import EngineDep, SettingsDep, VoiceStoreDep
from app.engine.encoding import MEDIA_TYPES, StreamEncoder, encode
from app.engine.engine import AudioStream, Engine
from app.engine.errors import Cancelled, InvalidRequest, NotFound
from app.engine.jobs import ReferenceAudio, SynthesisJob
from app.engine.planning import check_aux_count, check_reference, checked_references
from app.engine.reference_clips import ReferenceAudioError, ReferenceBudget
from app.engine.registry import resolve_under
from app.errors import InvalidInput, PayloadTooLarge, ServiceError
from app.routers.text import check_text_size
from app.schemas.errors import error_responses
from app.schemas.inference import InferenceParams, StopRequest, StopResponse
from app.settings import Settings, request_limits
from app.store.voices import VoiceClips, VoiceStore

router = APIRouter(tags=["synthesis"])
log = logging.getLogger(__name__)
T = TypeVar("T")

class UnsupportedAudio(ServiceError):
    status_code = 415
    code = "unsupported_audio"


class ClientClosedRequest(ServiceError):
    status_code = 499  # nginx's code: nobody reads the answer, but the request log says what happened
    code = "client_closed_request"


async def while_connected(request: Request, work: Awaitable[T], poll_s: float = 0.25) -> T:
    """Await ``work`` unless the client disconnects first: then cancel it. The cancellation reaches
    the engine, which withdraws the synthesis from the queue or stops it at the next decode step."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientClosedRequest("the client closed the connection; its synthesis was cancelled")
    finally:
        task.cancel()  # no-op when finished; stops the work when this handler itself is cancelled


async def stored_voice(store: VoiceStore, name: str) -> VoiceClips | None:
    """The stored voice ``name`` (clips, prompt, models, defaults), or None when there is none."""
    try:
        return await run_in_threadpool(store.get_clips, name)
    except NotFound:
        return None


def reference_budget(settings: Settings) -> ReferenceBudget:
    """The memory one request's reference clips may take (charged from their headers)."""
    return ReferenceBudget(request_limits(settings).reference_budget_bytes)


def check_aux_clips(settings: Settings, count: int, field: str = "aux_ref_audio_paths") -> None:
    """Too many auxiliary clips are refused before any is read."""
    check_aux_count(count, request_limits(settings), field)


async def _read_clip(settings, source: UploadFile | str, field: str, budget: ReferenceBudget) -> ReferenceAudio:
    data, name = await clip_bytes(settings, source, field)
    return decode_clip(data, name, field, budget)


async def clip_bytes(settings, source: UploadFile | str, field: str) -> tuple[bytes, str]:
    """The bytes of an upload, or of a file named under the reference-audio root, and its name."""
    if isinstance(source, str):
        root = settings.ref_audio_root
        if root is None:
            raise InvalidInput(
                f"{field}: upload a file; names are accepted only when GSV_REF_AUDIO_ROOT is set", code="upload_required"
            )
        path = resolve_under(root, source, f"{field} name")
        if not path.is_file():
            raise InvalidInput(f"{field}: no file {source!r} in the reference-audio root", code="ref_audio_not_found")
        if path.stat().st_size > settings.max_body_bytes:  # what an upload of it would be refused at
            raise PayloadTooLarge(f"{field}: {source!r} is larger than {settings.max_body_bytes} bytes")
        data, name = await run_in_threadpool(path.read_bytes), source
    else:
        data, name = await source.read(), source.filename or field
    return data, name


def decode_clip(data: bytes, name: str, field: str, budget: ReferenceBudget) -> ReferenceAudio:
    """A clip's samples, or the 4xx its bytes deserve: 415 when they are not audio, 422 when the clip
    breaks a reference rule (rate, length), 413 when the request's clips exceed their memory budget.
    Each is found from the header before the samples are decoded."""
    if not data:
        raise InvalidInput(f"{field}: the file {name!r} is empty", code="empty_audio")
    try:
        reference = ReferenceAudio.decode(data, field, budget)
    except ReferenceAudioError:
        raise UnsupportedAudio(f"{field}: {name!r} could not be decoded as WAV, FLAC, OGG or MP3") from None
    check_reference(reference, field)
    return reference


def voice_references(
    voice: VoiceClips, name: str, budget: ReferenceBudget
) -> tuple[ReferenceAudio, list[ReferenceAudio]]:
    """A stored voice's clips, decoded under the current rules. A voice saved before them that breaks
    them is refused with what is wrong (``gsv-check-voices`` lists such voices)."""
    try:
        return checked_references(voice.ref_audio, voice.aux_ref_audios, budget, ("ref_audio", "aux_ref_audio"))
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"stored voice {name!r} cannot be used: {exc.message}. Store it again with a clip that fits the "
            "rules (gsv-check-voices lists every such voice)",
            code="stored_voice_invalid",
        ) from None


STREAM_FORMATS = (
    "Streamed answers (`streaming_mode` 1-3) use chunked transfer encoding and start with the first "
    "audio: `wav` is a 44-byte header whose RIFF and data sizes are 0xFFFFFFFF (length unknown) followed "
    "by 16-bit PCM as it is made; `raw` is that PCM alone; `ogg` (Opus), `mp3`, `aac` (ADTS) and `flac` "
    "are ONE continuous stream of that type. `X-Seed` and `X-Sample-Rate` (of the PCM; Opus plays at 48 "
    "kHz) come with the headers. `/stop` or closing the connection ends a stream within one decode step; "
    "a stopped stream ends cleanly (a complete, shorter file)."
)


@router.post(
    "/inference",
    summary="Speak text in the voice of a reference clip",
    description=(
        "Multipart form with the 21 parameters of upstream's fast web UI (same names and defaults), plus "
        "`streaming_mode`, `overlap_length`, `min_chunk_length` (upstream api_v2's) and `media_type`. "
        "`ref_audio_path` is the main reference clip (3–10 s) as an upload, or a file name under "
        "GSV_REF_AUDIO_ROOT; `aux_ref_audio_paths` are optional extra clips whose timbre is averaged in. "
        "Answers the audio in `media_type` (default `audio/wav`, 16-bit PCM at the model's rate) with the "
        "seed used in `X-Seed` and the rate in `X-Sample-Rate`. `/stop` cancels it (409 "
        "`synthesis_cancelled` before any audio was sent). " + STREAM_FORMATS
    ),
    response_class=Response,
    responses={
        200: {
            "content": {
                content_type: {"schema": {"type": "string", "format": "binary"}}
                for content_type in MEDIA_TYPES.values()
            },
            "description": "The synthesised speech, whole or streamed (see the description).",
            "headers": {
                "X-Seed": {"description": "The seed used (drawn when random).", "schema": {"type": "integer"}},
                "X-Sample-Rate": {"description": "Sample rate of the audio, Hz.", "schema": {"type": "integer"}},
            },
        },
        **error_responses(404, 409, 413, 415, 422, 429),
    },
)
async def inference(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    voices: VoiceStoreDep,
    params: Annotated[InferenceParams, Form()],
    ref_audio_path: Annotated[UploadFile | str | None, File(description="Main reference clip, 3–10 s (or `voice`).")] = None,  # fmt: skip
    aux_ref_audio_paths: Annotated[list[UploadFile], File(description="Extra reference clips.")] = [],  # noqa: B006
) -> Response:
    async def aux(budget: ReferenceBudget) -> list[ReferenceAudio]:
        check_aux_clips(settings, len(aux_ref_audio_paths))
        return [await _read_clip(settings, clip, "aux_ref_audio_paths", budget) for clip in aux_ref_audio_paths]

    async def ref(budget: ReferenceBudget) -> ReferenceAudio:
        return await _read_clip(settings, ref_audio_path, "ref_audio_path", budget)

    job, gpt, sovits = await inference_job(settings, voices, params, None if ref_audio_path is None else ref, aux)
    return await audio_answer(request, engine, job, params.media_type, gpt, sovits)


async def inference_job(
    settings: Settings,
    voices: VoiceStore,
    params: InferenceParams,
    ref: Callable[[ReferenceBudget], Awaitable[ReferenceAudio]] | None,
    aux: Callable[[ReferenceBudget], Awaitable[list[ReferenceAudio]]],
) -> tuple[SynthesisJob, str | None, str | None]:
    """The job of an /inference request and the models it names: its checked parameters, the stored
    voice (which wins over ``ref``, read only when no voice is named) and the clips (read after the
    cheap checks, all within one memory budget). The web UI builds its jobs here too, so both
    surfaces accept and refuse the same requests."""
    check_text_size(params.text, settings.max_text_chars, "text")
    check_text_size(params.prompt_text, settings.max_text_chars, "prompt_text")
    fields = params.model_dump(exclude={"gpt_weights", "sovits_weights", "media_type", "voice"})
    gpt, sovits = params.gpt_weights, params.sovits_weights
    budget = reference_budget(settings)
    extra = await aux(budget)
    if params.voice is not None:
        voice = await stored_voice(voices, params.voice)
        if voice is None:
            raise InvalidInput(f"voice: no stored voice {params.voice!r}", code="voice_not_found", status_code=404)
        # The voice fills what the form left out: its prompt, its default parameters, its models.
        given = params.model_fields_set
        fields |= {k: v for k, v in voice.defaults.items() if k in fields and k not in given}
        if "prompt_text" not in given:
            fields.update(prompt_text=voice.prompt_text, prompt_lang=voice.prompt_lang)
        gpt, sovits = gpt or voice.gpt_weights, sovits or voice.sovits_weights
        check_aux_clips(settings, len(voice.aux_ref_audios) + len(extra))
        clip, stored = voice_references(voice, params.voice, budget)
        extra = [*stored, *extra]
    elif ref is None:
        raise InvalidInput("ref_audio_path: upload the reference clip, or name a stored `voice`", code="ref_audio_required")
    else:
        clip = await ref(budget)
    return SynthesisJob(ref_audio=clip, aux_ref_audios=extra, **fields), gpt, sovits


async def audio_answer(
    request: Request,
    engine: Engine,
    job: SynthesisJob,
    media_type: str,
    gpt_weights: str | None = None,
    sovits_weights: str | None = None,
) -> Response:
    """Synthesise ``job`` and answer its audio in ``media_type``: whole, or streamed when the job has
    a ``streaming_mode`` (every surface that speaks answers through here)."""
    if job.streaming_mode == 0:
        result = await while_connected(request, engine.synthesize(job, gpt_weights, sovits_weights))
        return Response(
            content=encode(result.audio, result.sample_rate, media_type),
            media_type=MEDIA_TYPES[media_type],
            headers=_audio_headers(result.seed, result.sample_rate),
        )
    stream = await while_connected(request, engine.stream(job, gpt_weights, sovits_weights))
    # The first chunk is awaited before the answer starts, so a refusal (or a stop) until then is
    # still an HTTP error rather than an empty 200.
    first = await while_connected(request, anext(stream.chunks))
    return StreamingResponse(
        _encoded(stream, first, media_type),
        media_type=MEDIA_TYPES[media_type],
        headers=_audio_headers(stream.seed, stream.sample_rate),
    )


def _audio_headers(seed: int, sample_rate: int) -> dict[str, str]:
    return {"X-Seed": str(seed), "X-Sample-Rate": str(sample_rate)}


async def _encoded(stream: AudioStream, first: np.ndarray, media_type: str) -> AsyncIterator[bytes]:
    """The stream's chunks as one continuous file of ``media_type``. A stop ends it cleanly (the
    encoder's tail is still sent); a failure mid-stream aborts the connection, so the client sees an
    incomplete answer rather than a short one; a client that leaves cancels this generator, and
    closing the chunk iterator withdraws the synthesis."""
    encoder = StreamEncoder(media_type, stream.sample_rate)
    try:
        yield encoder.start() + encoder.write(first)
        async for chunk in stream.chunks:
            if data := encoder.write(chunk):
                yield data
    except Cancelled:
        log.info("stream stopped; ending it")
    finally:
        await stream.chunks.aclose()
    yield encoder.finish()


@router.post(
    "/stop",
    response_model=StopResponse,
    summary="Cancel synthesis: one request by id, or all of them",
    responses=error_responses(422),
)
def stop(engine: EngineDep, body: StopRequest | None = None) -> StopResponse:
    return StopResponse(cancelled=engine.cancel((body or StopRequest()).request_id))
