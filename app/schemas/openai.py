"""The OpenAI-compatible speech API's bodies: ``/v1/audio/speech``'s request, ``/v1/models``' list, and
OpenAI's error shape, with OpenAI's field names, limits and defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

# OpenAI's response formats → our media types (app.engine.encoding) and the content types OpenAI answers.
MEDIA_TYPE: dict[str, str] = {
    "mp3": "mp3",
    "opus": "ogg",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "pcm": "raw",
}
CONTENT_TYPE: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
PCM_RATE = 24_000  # OpenAI's pcm: 24 kHz, 16-bit signed little-endian, mono, no header


class VoiceRef(BaseModel):
    """A voice given as an object, as OpenAI's custom voices are."""

    id: str = Field(..., min_length=1, description="A stored voice's name.", examples=["demo"])


class SpeechRequest(BaseModel):
    """OpenAI's ``POST /v1/audio/speech`` body."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "tts-1", "input": "Hello there.", "voice": "demo", "response_format": "mp3"},
                {"model": "tts-1", "input": "你好，今天天气很好。", "voice": {"id": "demo"}, "response_format": "pcm",
                 "speed": 1.25, "stream_format": "sse"},
            ]
        }
    )  # fmt: skip

    model: str = Field(
        ...,
        min_length=1,
        description="An alias from GSV_OPENAI_MODELS (default `tts-1` and `tts-1-hd`: the current models, or "
        "the voice's own), or a weight name from `GET /v1/models`: a SoVITS name speaks with that SoVITS "
        "model and the current GPT model, a GPT name with that GPT model and the current SoVITS model.",
        examples=["tts-1"],
    )
    input: str = Field(..., min_length=1, max_length=4096, description="The text to speak (1-4096 characters, any "
                       "language mix: it is read as 多语种混合 `auto` unless the voice's defaults name a language).")  # fmt: skip
    voice: str | VoiceRef = Field(
        ..., description='A stored voice (`POST /voices`) by name, or as `{"id": name}`.', examples=["demo"]
    )
    response_format: ResponseFormat = Field(
        "mp3",
        description="`mp3`, `opus` (Ogg/Opus, 48 kHz), `aac` (ADTS), `flac`, `wav` (16-bit, the model's rate) or "
        "`pcm`: raw 16-bit signed little-endian mono samples at 24 kHz (resampled from the model's rate).",
    )
    speed: float = Field(
        1.0, ge=0.25, le=4.0, description="Speaking speed, 0.25-4.0 (the synthesis' `speed_factor`; default 1.0, "
        "or the voice's own `speed_factor` default when not given)."
    )  # fmt: skip
    instructions: str | None = Field(
        None,
        description="Accepted for compatibility and IGNORED: GPT-SoVITS takes its style from the reference clip.",
    )
    stream_format: Literal["audio", "sse"] = Field(
        "audio",
        description="`audio`: the encoded audio is sent as it is made (one continuous file of the format). `sse`: "
        '`text/event-stream` events `{"type": "speech.audio.delta", "audio": base64}` whose decoded audio joined '
        'is that same file, then `{"type": "speech.audio.done", "usage": {...}}` (input tokens: characters).',
    )


class ModelObject(BaseModel):
    id: str = Field(..., examples=["tts-1"])
    object: Literal["model"] = "model"
    created: int = Field(..., description="Unix time: when the service started.")
    owned_by: str = "gsv-server"


class ModelList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "list",
                    "data": [{"id": "tts-1", "object": "model", "created": 1764979200, "owned_by": "gsv-server"}],
                }
            ]
        }
    )

    object: Literal["list"] = "list"
    data: list[ModelObject]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(..., examples=["invalid_request_error"])
    param: str | None = Field(None, description="The request field at fault, if one is.", examples=["voice"])
    code: str | None = Field(None, examples=["voice_not_found"])


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


def openai_error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses=`` for the statuses, plus ``4XX``: every refusal on /v1 is OpenAI-shaped (request
    validation included, as 400; the ``4XX`` entry also stops FastAPI from documenting a 422)."""
    statuses_and_range: tuple[int | str, ...] = (*statuses, "4XX")
    return {
        status: {"model": OpenAIError, "description": "OpenAI's error body"} for status in statuses_and_range
    }
