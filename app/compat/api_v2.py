"""Upstream's ``api_v2.py`` as a drop-in: ``/tts`` (GET and POST), ``/set_gpt_weights``,
``/set_sovits_weights``, ``/set_refer_audio`` and ``/control``, with api_v2's names, types, defaults
and answer shapes, onto the same engine calls as ``/inference`` (no second pipeline).

Differences from upstream, each on the safe side:
- ``ref_audio_path`` is a stored voice's name (``/voices``: its clips, prompt text and language,
  models and default parameters, where the request gives none) or, like ``aux_ref_audio_paths`` and
  ``refer_audio_path``, a file under ``GSV_REF_AUDIO_ROOT`` (never an arbitrary server path).
- ``/control``'s restart and exit answer 403 unless ``GSV_ALLOW_CONTROL`` is set.
- ``media_type`` also takes ``mp3`` and ``flac``; a stream is one continuous file of its type.
- A full queue answers 429 with ``Retry-After`` (upstream has no queue).
Refusals answer api_v2's ``{"message": ...}`` with status 400 (plus our ``code``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from app.deps import EngineDep, SettingsDep
from app.engine import errors as engine_errors
from app.engine.encoding import MEDIA_TYPES
from app.engine.jobs import CUT_METHODS, ReferenceAudio, SynthesisJob
from app.engine.languages import LANGUAGES
from app.engine.reference_clips import ReferenceBudget
from app.errors import ServiceError, register_error_shape
from app.routers.synthesis import (
    audio_answer,
    check_aux_clips,
    clip_bytes,
    decode_clip,
    reference_budget,
    stored_voice,
    voice_references,
)
from app.routers.text import check_text_size
from app.store.voices import VoiceClips

router = APIRouter(tags=["api_v2 (upstream drop-in)"])
log = logging.getLogger(__name__)

EXAMPLE = {
    "text": "先帝创业未半而中道崩殂，今天下三分，益州疲弊，此诚危急存亡之秋也。",
    "text_lang": "zh",
    "ref_audio_path": "archive_jingyuan_1.wav",
    "prompt_lang": "zh",
    "prompt_text": "我是「罗浮」云骑将军景元。",
    "text_split_method": "cut5",
    "batch_size": 1,
    "media_type": "wav",
    "streaming_mode": True,
}


class TTSRequest(BaseModel):
    """api_v2's ``TTS_Request``: the same fields, types and defaults."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    text: str | None = None
    text_lang: str | None = None
    ref_audio_path: str | None = Field(None, description="A stored voice's name, or a file under GSV_REF_AUDIO_ROOT (required unless set by /set_refer_audio).")  # fmt: skip
    aux_ref_audio_paths: list[str] | None = None
    prompt_lang: str | None = None
    prompt_text: str = ""
    top_k: int = 15
    top_p: float = 1
    temperature: float = 1
    text_split_method: str = "cut5"
    batch_size: int = 1
    batch_threshold: float = 0.75
    split_bucket: bool = True
    speed_factor: float = 1.0
    fragment_interval: float = 0.3
    seed: int = -1
    media_type: str = "wav"
    streaming_mode: bool | int = Field(False, description="0/false, 1/true, 2 or 3 (see /inference).")
    parallel_infer: bool = True
    repetition_penalty: float = 1.35
    sample_steps: int = 32
    super_sampling: bool = False
    overlap_length: int = 2
    min_chunk_length: int = 16


class Message(BaseModel):
    """api_v2's answer of a setter, and of every refusal."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"message": "success"}, {"message": "text_lang is required"}]}
    )

    message: str
    code: str | None = Field(None, description="Our error code (refusals only).")
    Exception: str | None = Field(None, description="What failed (a setter's refusal).")


MESSAGES = {status: {"model": Message, "description": "api_v2's `{\"message\": ...}`"} for status in (400, 403)}


class Refusal(ServiceError):
    """An api_v2-style refusal: 400 with ``{"message": ...}``."""

    status_code = 400
    code = "bad_request"


def _message_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if code:
        body["code"] = code
    return body


def _message(status: int, message: str, code: str | None = None, headers=None) -> JSONResponse:
    return JSONResponse(_message_body(status, message, code), status_code=status, headers=headers)


# Refusals made before a route runs (a slow or too large body, a wrong method) answer api_v2's shape.
API_V2_PATHS = frozenset({"/tts", "/set_gpt_weights", "/set_sovits_weights", "/set_refer_audio", "/control"})
register_error_shape(API_V2_PATHS.__contains__, _message_body)


def _streaming_mode(value: bool | int) -> int:
    # ``True == 1`` in Python, as in upstream: true is mode 1.
    if value not in (0, 1, 2, 3):
        raise Refusal("the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)")
    return int(value)


def _language(value: str | None, field: str) -> str:
    if value in (None, ""):
        raise Refusal(f"{field} is required")
    code = value.lower()
    if code not in LANGUAGES:
        raise Refusal(f"{field}: {value} is not supported")
    return code


async def _clip(settings, name: str, field: str, budget: ReferenceBudget) -> ReferenceAudio:
    data, shown = await clip_bytes(settings, name, field)
    return decode_clip(data, shown, field, budget)


async def _tts(request: Request, engine, settings, req: TTSRequest) -> Response:
    ref_name = req.ref_audio_path or getattr(request.app.state, "api_v2_reference", None)
    if ref_name in (None, ""):
        raise Refusal("ref_audio_path is required")
    if req.text in (None, ""):
        raise Refusal("text is required")
    # A stored voice by name (its clips, prompt, models and defaults), else a file under the root.
    voice = await stored_voice(request.app.state.voices, ref_name)
    if voice is not None:
        req = _with_voice(req, voice)
    text_lang = _language(req.text_lang, "text_lang")
    prompt_lang = _language(req.prompt_lang, "prompt_lang")
    if req.media_type not in MEDIA_TYPES:
        raise Refusal(f"media_type: {req.media_type} is not supported")
    if req.text_split_method not in CUT_METHODS:
        raise Refusal(f"text_split_method:{req.text_split_method} is not supported")
    mode = _streaming_mode(req.streaming_mode)
    check_text_size(req.text, settings.max_text_chars, "text")
    check_text_size(req.prompt_text, settings.max_text_chars, "prompt_text")
    aux_names = req.aux_ref_audio_paths or []
    check_aux_clips(settings, len(aux_names) + (len(voice.aux_ref_audios) if voice else 0))
    budget = reference_budget(settings)
    if voice is not None:
        ref_audio, aux = voice_references(voice, ref_name, budget)
    else:
        ref_audio, aux = await _clip(settings, ref_name, "ref_audio_path", budget), []
    aux += [await _clip(settings, name, "aux_ref_audio_paths", budget) for name in aux_names]
    job = SynthesisJob(
        text=req.text,
        text_lang=text_lang,
        ref_audio=ref_audio,
        aux_ref_audios=aux,
        prompt_text=req.prompt_text or "",
        prompt_lang=prompt_lang,
        top_k=req.top_k,
        top_p=req.top_p,
        temperature=req.temperature,
        text_split_method=req.text_split_method,
        batch_size=req.batch_size,
        batch_threshold=req.batch_threshold,
        split_bucket=req.split_bucket,
        speed_factor=req.speed_factor,
        fragment_interval=req.fragment_interval,
        seed=req.seed,
        keep_random=False,  # api_v2 has no such switch: seed -1 is its "random"
        parallel_infer=req.parallel_infer,
        repetition_penalty=req.repetition_penalty,
        sample_steps=req.sample_steps,
        super_sampling=req.super_sampling,
        streaming_mode=mode,
        overlap_length=req.overlap_length,
        min_chunk_length=req.min_chunk_length,
    )
    gpt, sovits = (voice.gpt_weights, voice.sovits_weights) if voice else (None, None)
    return await audio_answer(request, engine, job, req.media_type, gpt, sovits)


def _with_voice(req: TTSRequest, voice: VoiceClips) -> TTSRequest:
    """The request with the voice's prompt and default parameters where the client gave none."""
    given = req.model_fields_set
    defaults = {k: v for k, v in voice.defaults.items() if k in TTSRequest.model_fields and k not in given}
    if "prompt_lang" not in given or not req.prompt_lang:
        defaults["prompt_lang"] = voice.prompt_lang
    if "prompt_text" not in given:
        defaults["prompt_text"] = voice.prompt_text
    return req.model_copy(update=defaults)


async def _answer(request: Request, engine, settings, req: TTSRequest) -> Response:
    """``/tts`` with api_v2's error shape: every refusal is a 400 ``{"message"}``."""
    try:
        return await _tts(request, engine, settings, req)
    except engine_errors.Busy as exc:
        return _message(429, str(exc), exc.code, {"Retry-After": str(exc.retry_after_s)})
    except ServiceError as exc:
        if exc.status_code >= 500:
            raise
        return _message(400, exc.message, exc.code)
    except engine_errors.EngineError as exc:
        if isinstance(exc, engine_errors.ModelUnavailable):
            raise
        return _message(400, str(exc), exc.code)


AUDIO = {
    200: {
        "content": {
            t: {"schema": {"type": "string", "format": "binary", "examples": ["(the audio file's bytes)"]}}
            for t in MEDIA_TYPES.values()
        },
        "description": "The audio, whole or streamed (as /inference answers it).",
    },
    **MESSAGES,
}


@router.get("/tts", summary="api_v2: synthesise (query parameters)", responses=AUDIO, response_class=Response)
async def tts_get(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    params: Annotated[TTSRequest, Query()],
) -> Response:
    return await _answer(request, engine, settings, params)


@router.post("/tts", summary="api_v2: synthesise (JSON body)", responses=AUDIO, response_class=Response)
async def tts_post(request: Request, engine: EngineDep, settings: SettingsDep, body: TTSRequest) -> Response:
    return await _answer(request, engine, settings, body)


def _switch(select, name: str | None, what: str) -> JSONResponse:
    if name in (None, ""):
        return _message(400, f"{what} weight path is required")
    try:
        select(name)
    except (engine_errors.EngineError, ServiceError) as exc:
        return JSONResponse({"message": f"change {what} weight failed", "Exception": str(exc)}, status_code=400)
    return JSONResponse({"message": "success"})


@router.get(
    "/set_gpt_weights",
    summary="api_v2: make a GPT model the current one (a weights-root path)",
    response_model=Message,
    responses=MESSAGES,
)
def set_gpt_weights(engine: EngineDep, weights_path: str | None = None) -> JSONResponse:
    return _switch(engine.select_gpt, weights_path, "gpt")


@router.get(
    "/set_sovits_weights",
    summary="api_v2: make a SoVITS model the current one (a weights-root path)",
    response_model=Message,
    responses=MESSAGES,
)
def set_sovits_weights(engine: EngineDep, weights_path: str | None = None) -> JSONResponse:
    return _switch(engine.select_sovits, weights_path, "sovits")


@router.get(
    "/set_refer_audio",
    summary="api_v2: the reference /tts uses when it names none",
    response_model=Message,
    responses=MESSAGES,
)
async def set_refer_audio(request: Request, settings: SettingsDep, refer_audio_path: str | None = None) -> JSONResponse:  # fmt: skip
    if refer_audio_path in (None, ""):
        return _message(400, "refer_audio_path is required")
    try:  # checked now, read per request
        await _clip(settings, refer_audio_path, "refer_audio_path", reference_budget(settings))
    except (ServiceError, engine_errors.EngineError) as exc:
        return JSONResponse({"message": "set refer audio failed", "Exception": exc.message}, status_code=400)
    request.app.state.api_v2_reference = refer_audio_path
    return JSONResponse({"message": "success"})


def _exit() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the server shuts down gracefully (the engine stops)


def _restart() -> None:
    os.execv(sys.executable, [sys.executable, *sys.argv])


@router.get(
    "/control",
    summary="api_v2: restart or exit the service (403 unless GSV_ALLOW_CONTROL)",
    response_model=Message,
    responses=MESSAGES,
)
async def control(settings: SettingsDep, command: str | None = None) -> Response:
    if command is None:
        return _message(400, "command is required")
    if command not in ("restart", "exit"):
        return _message(400, f"unknown command {command!r}: restart or exit")
    if not settings.allow_control:
        return _message(403, f"{command} is disabled (set GSV_ALLOW_CONTROL=true to allow it)", "control_disabled")
    log.warning("/control: %s requested", command)
    # Answered first, then done (a background task runs after the reply is sent).
    return JSONResponse(
        {"message": f"{command} accepted"}, background=BackgroundTask(_exit if command == "exit" else _restart)
    )
