"""Schemas of the stored-voice endpoints (``/voices``): the creation form and what is answered.

A voice's ``defaults`` are synthesis parameters by their job names (``top_k``, ``speed_factor`` ...),
checked by the same rules as a request's (``app.engine.planning.check_parameters``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, Json, ValidationInfo, field_validator

from app.engine.errors import InvalidRequest
from app.engine.jobs import SynthesisJob, job_defaults
from app.engine.planning import check_parameters
from app.schemas.base import RequestModel
from app.schemas.enums import Language, cut_method_code, language_code

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# A voice's own prompt_text and prompt_lang are fields of their own, not defaults.
DEFAULT_KEYS = tuple(k for k in job_defaults() if k not in ("prompt_text", "prompt_lang"))
_CODES = {"text_lang": language_code, "text_split_method": cut_method_code}


class VoiceForm(RequestModel):
    """The non-file fields of ``POST /voices``."""

    name: str = Field(..., pattern=NAME_PATTERN, description="Letters, digits, `.`, `_`, `-`; 1–64 characters.")
    prompt_text: str = Field("", description="The words spoken in the main clip (empty: prompt-free synthesis).")
    prompt_lang: Language = Field("all_zh", description="Language of prompt_text: a UI label or a code.")
    gpt_weights: str | None = Field(None, description="GPT weights this voice uses unless a request names others.")
    sovits_weights: str | None = Field(None, description="SoVITS weights this voice uses unless a request names others.")
    defaults: Json[dict[str, Any]] = Field(
        default_factory=dict,
        description=f"JSON object of synthesis parameters a request with this voice starts from; keys: {', '.join(DEFAULT_KEYS)}.",
        examples=['{"top_k": 5, "speed_factor": 1.1}'],
    )

    @field_validator("defaults", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return "{}" if value in ("", None) else value

    @field_validator("defaults", mode="after")
    @classmethod
    def _check_defaults(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # prompt_text and prompt_lang come first, so they are checked (and read here) already.
        return checked_defaults(value, info.data.get("prompt_text", ""), info.data.get("prompt_lang", "all_zh"))


def checked_defaults(values: dict[str, Any], prompt_text: str = "", prompt_lang: str = "all_zh") -> dict[str, Any]:
    """``values`` with language and cut-method labels turned into codes; ValueError names what is wrong."""
    known = job_defaults()
    unknown = sorted(set(values) - set(DEFAULT_KEYS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_KEYS)}")
    out = {}
    for key, value in values.items():
        if not _same_kind(value, known[key]):
            raise ValueError(f"{key} must be a {type(known[key]).__name__}, got {value!r}")
        out[key] = _CODES[key](value) if key in _CODES else value
    try:  # the ranges and codes every request must respect
        check_parameters(SynthesisJob(text="", ref_audio=b"", prompt_text=prompt_text, prompt_lang=prompt_lang, **out))
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None
    except OverflowError:  # an integer too large to compare with a float bound
        raise ValueError("a number in defaults is far out of range") from None
    return out


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


class ClipInfo(BaseModel):
    filename: str = Field(..., description="The uploaded file's name.")
    sample_rate: int = Field(..., description="Hz, as decoded.")
    seconds: float = Field(..., description="Length, as decoded.")


class VoiceInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "narrator",
                    "prompt_text": "这是一段参考音频的文本。",
                    "prompt_lang": "all_zh",
                    "gpt_weights": "GPT_weights_v2/voice-e15.ckpt",
                    "sovits_weights": "SoVITS_weights_v2/voice_e8_s200.pth",
                    "defaults": {"top_k": 5, "speed_factor": 1.1},
                    "created_at": "2026-01-01T12:00:00Z",
                    "ref_audio": {"filename": "ref.wav", "sample_rate": 32000, "seconds": 4.2},
                    "aux_ref_audios": [],
                    "aux_ref_audio_count": 0,
                }
            ]
        }
    )

    name: str
    prompt_text: str
    prompt_lang: str = Field(..., description="A language code.")
    gpt_weights: str | None
    sovits_weights: str | None
    defaults: dict[str, Any] = Field(..., description="Synthesis parameters by job name (languages and cut methods as codes).")
    created_at: datetime
    ref_audio: ClipInfo = Field(..., description="The main reference clip.")
    aux_ref_audios: list[ClipInfo] = Field(..., description="Extra reference clips, in upload order.")
    aux_ref_audio_count: int


class VoiceList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"voices": VoiceInfo.model_config["json_schema_extra"]["examples"]}]}
    )

    voices: list[VoiceInfo] = Field(..., description="Every stored voice, by name.")
