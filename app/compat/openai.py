"""OpenAI's speech API as a drop-in: ``POST /v1/audio/speech`` and ``GET /v1/models``, so OpenAI's client
libraries (``base_url=.../v1``) speak with stored voices, onto the same engine calls as ``/inference``.

- ``voice`` is a stored voice (``POST /voices``), by name or as ``{"id": name}``; its clips, prompt,
  models and default parameters make the job. ``instructions`` is accepted and ignored.
- ``model`` is an alias of GSV_OPENAI_MODELS (``tts-1``/``tts-1-hd``: the voice's or the current
  models) or a weight name (a SoVITS name with the current GPT model, a GPT name with the current SoVITS).
- The audio is streamed as it is made (``streaming_mode`` 2); ``stream_format=sse`` wraps the same
  encoded bytes in base64 ``speech.audio.delta`` events. ``pcm`` is resampled to OpenAI's 24 kHz.
- Every refusal on these paths answers OpenAI's ``{"error": {"message", "type", "param", "code"}}``
  (validation errors included, 400), so OpenAI clients raise their usual exceptions.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import soxr
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.deps import EngineDep, SettingsDep, VoiceStoreDep
from app.engine import errors as engine_errors
from app.engine.encoding import StreamEncoder
from app.engine.engine import AudioStream
from app.engine.jobs import SynthesisJob
from app.errors import ERROR_SCOPE_KEY, ServiceError, engine_status, register_error_shape
from app.routers.synthesis import audio_answer, reference_budget, voice_references, while_connected
from app.routers.text import check_text_size
from app.schemas.openai import (
    CONTENT_TYPE,
    MEDIA_TYPE,
    PCM_RATE,
    ModelList,
    ModelObject,
    SpeechRequest,
    openai_error_responses,
)

log = logging.getLogger(__name__)
STARTED = int(time.time())
JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(SynthesisJob))


class OpenAIRefusal(ServiceError):
    """A refusal that names the request field at fault (OpenAI's ``param``)."""

    def __init__(self, message: str, *, status_code: int, code: str, param: str | None = None):
        super().__init__(message, status_code=status_code, code=code)
        self.param = param


def openai_error_body(status: int, message: str, code: str | None, param: str | None = None) -> dict:
    if status == 429:
        kind = "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(request: Request, status: int, message: str, code: str | None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    request.scope[ERROR_SCOPE_KEY] = f"{code}: {message}"  # the request log says why
    return JSONResponse(openai_error_body(status, message, code, param), status_code=status, headers=headers)


# Errors answered before a route runs (unknown paths and methods, slow or too large bodies) take
# OpenAI's shape under /v1/ too.
register_error_shape(lambda path: path.startswith("/v1/"), openai_error_body)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = where[0] if where else None
    message = f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid')}"
    return openai_error(request, 400, message, "invalid_value" if param else "invalid_body", param)


class OpenAIRoute(APIRoute):
    """Routes whose every 4xx/5xx (request validation included) answers OpenAI's error body; other
    paths keep the service's own shape (app/errors.py)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation_error(request, exc)
            except OpenAIRefusal as exc:
                return openai_error(request, exc.status_code, exc.message, exc.code, exc.param)
            except ServiceError as exc:
                # 422 is the service's "invalid input"; OpenAI says 400 for any bad request.
                status = 400 if exc.status_code == 422 else exc.status_code
                return openai_error(request, status, exc.message, exc.code, headers=exc.headers)
            except engine_errors.EngineError as exc:
                status = engine_status(exc)
                status = 400 if status == 422 else status
                busy = isinstance(exc, engine_errors.Busy)
                headers = {"Retry-After": str(exc.retry_after_s)} if busy else None
                return openai_error(request, status, exc.message, "rate_limit_exceeded" if busy else exc.code,
                                    headers=headers)  # fmt: skip
            except StarletteHTTPException as exc:
                message = exc.detail if isinstance(exc.detail, str) else "request failed"
                code = "request_timeout" if exc.status_code == 408 else None
                return openai_error(
                    request, exc.status_code, message, code, headers=getattr(exc, "headers", None)
                )

        return route


router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], route_class=OpenAIRoute)


def _pair(model: str, settings, engine, voice) -> tuple[str | None, str | None]:
    """The (gpt, sovits) weights ``model`` names; None: the current model."""
    sovits_names, gpt_names = engine.weight_choices()
    alias = settings.openai_models.get(model)
    if alias is not None:
        gpt, sovits = alias.gpt or voice.gpt_weights, alias.sovits or voice.sovits_weights
        for name, names in ((alias.gpt, gpt_names), (alias.sovits, sovits_names)):
            if name is not None and name not in names:
                raise OpenAIRefusal(f"the model alias {model!r} names {name!r}, which is not in the weights root",
                                    status_code=404, code="model_not_found", param="model")  # fmt: skip
        return gpt, sovits
    if model in sovits_names:
        return None, model
    if model in gpt_names:
        return model, None
    known = ", ".join(settings.openai_models)
    raise OpenAIRefusal(f"no model named {model!r}: use {known} or a weight name from GET /v1/models",
                        status_code=404, code="model_not_found", param="model")  # fmt: skip


def _voice_name(voice) -> str:
    return voice if isinstance(voice, str) else voice.id


async def _voice(store, voice) -> object:
    name = _voice_name(voice)
    try:
        return await run_in_threadpool(store.get_clips, name)
    except engine_errors.NotFound:
        raise OpenAIRefusal(
            f"no voice named {name!r}: create it with POST /voices (GET /voices lists them)",
            status_code=404, code="voice_not_found", param="voice",
        ) from None  # fmt: skip


@router.post(
    "/audio/speech",
    summary="OpenAI: speak text in a stored voice",
    description=(
        "OpenAI's speech endpoint. `voice` is a stored voice (`POST /voices`); its reference clip, prompt, "
        "models and default parameters are used. `instructions` is accepted and ignored. The audio streams "
        "as it is made; `pcm` is 16-bit mono at 24 kHz, `opus` is Ogg/Opus at 48 kHz, `wav` is at the "
        "model's rate (`X-Sample-Rate`). `stream_format=sse` answers `text/event-stream` with "
        "`speech.audio.delta` events (base64 of the encoded audio) and a final `speech.audio.done`. "
        'Errors answer OpenAI\'s `{"error": {"message", "type", "param", "code"}}`.'
    ),
    response_class=Response,
    responses={
        200: {
            "content": {
                **{
                    t: {"schema": {"type": "string", "format": "binary"}}
                    for t in sorted(set(CONTENT_TYPE.values()))
                },
                # One schema per event (OpenAPI 3.2's reading, which schemathesis validates each event by).
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string"},
                            "data": {
                                "type": "string",
                                "description": 'JSON: {"type": "speech.audio.delta", "audio": BASE64} per '
                                'chunk, then {"type": "speech.audio.done", "usage": {...}}',
                            },
                        },
                        "required": ["data"],
                        "examples": [{"data": '{"type": "speech.audio.delta", "audio": "SUQzBAAAAAAA"}'}],
                    }
                },
            },
            "description": "The audio (streamed), or server-sent events with `stream_format=sse`.",
        },
        **openai_error_responses(400, 404, 409, 429, 503),
    },
)
async def speech(
    request: Request, body: SpeechRequest, engine: EngineDep, settings: SettingsDep, voices: VoiceStoreDep
) -> Response:
    check_text_size(body.input, settings.max_text_chars, "input")
    voice = await _voice(voices, body.voice)
    gpt, sovits = _pair(body.model, settings, engine, voice)
    params = {k: v for k, v in voice.defaults.items() if k in JOB_FIELDS}
    if "speed" in body.model_fields_set or "speed_factor" not in params:
        params["speed_factor"] = body.speed
    params.setdefault("text_lang", "auto")
    params["streaming_mode"] = params.get("streaming_mode") or 2  # a voice's own mode 1 or 3 is kept
    ref_audio, aux = voice_references(voice, _voice_name(body.voice), reference_budget(settings))
    job = SynthesisJob(
        **{
            **params,
            "text": body.input,
            "ref_audio": ref_audio,
            "aux_ref_audios": aux,
            "prompt_text": voice.prompt_text,
            "prompt_lang": voice.prompt_lang,
        }
    )
    fmt = body.response_format
    if body.stream_format == "audio" and fmt != "pcm":
        answer = await audio_answer(request, engine, job, MEDIA_TYPE[fmt], gpt, sovits)
        answer.headers["content-type"] = CONTENT_TYPE[fmt]
        return answer
    stream = await while_connected(request, engine.stream(job, gpt, sovits))
    # The first chunk is awaited before answering, so a refusal until then is still an HTTP error.
    first = await while_connected(request, anext(stream.chunks))
    pieces = _pieces(stream, first, fmt)
    rate = PCM_RATE if fmt == "pcm" else stream.sample_rate
    headers = {"X-Seed": str(stream.seed), "X-Sample-Rate": str(rate)}
    if body.stream_format == "sse":
        return StreamingResponse(
            _events(pieces, len(body.input)), media_type="text/event-stream", headers=headers
        )
    return StreamingResponse(pieces, media_type=CONTENT_TYPE[fmt], headers=headers)


class _Pcm24k:
    """Resamples a stream of int16 chunks to 24 kHz, continuously across chunks."""

    def __init__(self, rate: int):
        self._same = rate == PCM_RATE
        self._stream = None if self._same else soxr.ResampleStream(rate, PCM_RATE, 1, dtype="int16")

    def __call__(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        if self._same:
            return chunk
        return self._stream.resample_chunk(chunk, last=last)


async def _pieces(stream: AudioStream, first: np.ndarray, fmt: str) -> AsyncIterator[bytes]:
    """The stream as one continuous file of ``fmt`` (pcm: resampled to 24 kHz), piece by piece. A stop
    ends it cleanly; a failure mid-stream propagates (the connection is aborted, not cut short)."""
    rate = PCM_RATE if fmt == "pcm" else stream.sample_rate
    resample = _Pcm24k(stream.sample_rate) if fmt == "pcm" else None
    encoder = StreamEncoder(MEDIA_TYPE[fmt], rate)

    def encode(chunk: np.ndarray, last: bool = False) -> bytes:
        return encoder.write(resample(chunk, last) if resample else chunk)

    try:
        yield encoder.start() + encode(first)
        async for chunk in stream.chunks:
            if data := encode(chunk):
                yield data
    except engine_errors.Cancelled:
        log.info("stream stopped; ending it")
    finally:
        await stream.chunks.aclose()
    tail = encode(np.zeros(0, dtype=np.int16), last=True) if resample else b""
    yield tail + encoder.finish()


async def _events(pieces: AsyncIterator[bytes], input_tokens: int) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: a ``speech.audio.delta`` per non-empty piece, then ``speech.audio.done``."""
    async for piece in pieces:
        if piece:
            delta = {"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode("ascii")}
            yield f"data: {json.dumps(delta)}\n\n".encode()
    usage = {"input_tokens": input_tokens, "output_tokens": 0, "total_tokens": input_tokens}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


@router.get("/models", response_model=ModelList, summary="OpenAI: the model names /v1/audio/speech accepts")
def models(engine: EngineDep, settings: SettingsDep) -> ModelList:
    sovits_names, gpt_names = engine.weight_choices()
    names = [*settings.openai_models, *gpt_names, *sovits_names]
    return ModelList(data=[ModelObject(id=name, created=STARTED) for name in dict.fromkeys(names)])


@router.get(
    "/models/{model:path}",
    response_model=ModelObject,
    summary="OpenAI: one model name",
    responses=openai_error_responses(404),
)
def model(model: str, engine: EngineDep, settings: SettingsDep) -> ModelObject:
    sovits_names, gpt_names = engine.weight_choices()
    if model not in settings.openai_models and model not in gpt_names and model not in sovits_names:
        raise OpenAIRefusal(
            f"no model named {model!r}", status_code=404, code="model_not_found", param="model"
        )
    return ModelObject(id=model, created=STARTED)
