"""Schemas of the synthesis endpoints: ``/inference`` (multipart form) and ``/stop``.

Defaults and ranges are not written here: they come from the engine's one set
(``app.engine.jobs.job_defaults`` = upstream's fast web UI defaults, ``PARAMETER_BOUNDS``), so every
surface publishes the same values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.engine.jobs import PARAMETER_BOUNDS, SAMPLE_STEPS, job_defaults
from app.logging_setup import REQUEST_ID_PATTERN
from app.schemas.base import RequestModel
from app.schemas.enums import CutMethod, Language, cut_method_label, language_label

DEFAULTS = job_defaults()
MediaType = Literal["wav", "raw", "ogg", "aac", "mp3", "flac"]  # app.engine.encoding.MEDIA_TYPES


def job_field(name: str, description: str | None = None, **extra: Any) -> Any:
    """A form field for job parameter ``name``: the job's default and, where it has one, its range."""
    bounds = PARAMETER_BOUNDS.get(name)
    if bounds is not None:
        extra["gt" if bounds.low_exclusive else "ge"] = bounds.low
        extra["le"] = bounds.high
    return Field(DEFAULTS[name], description=description, **extra)


class InferenceParams(RequestModel):
    """Every non-file field of upstream's fast web UI ``inference``, same names and defaults."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": "今天天气很好，我们一起去公园散步吧。",
                    "text_lang": "中文",
                    "prompt_text": "这是一段参考音频的文本。",
                    "prompt_lang": "中文",
                    "text_split_method": "凑四句一切",
                    "top_k": 5,
                    "seed": 1234,
                    "keep_random": False,
                },
                {  # streamed: Ogg/Opus chunks cut at silence-like tokens, one piece per sentence
                    "text": "第一句话。第二句话。第三句话。",
                    "text_lang": "中文",
                    "prompt_text": "这是一段参考音频的文本。",
                    "prompt_lang": "中文",
                    "text_split_method": "按中文句号。切",
                    "streaming_mode": 2,
                    "media_type": "ogg",
                },
            ]
        }
    )

    text: str = Field(..., min_length=1, description="Text to speak.")
    # Languages and cut methods default to the UI label of the job's default code.
    text_lang: Language = Field(
        language_label(DEFAULTS["text_lang"]), validate_default=True, description="Language of the text."
    )
    prompt_text: str = job_field("prompt_text", "What the reference clip says (empty: prompt-free mode).")
    prompt_lang: Language = Field(
        language_label(DEFAULTS["prompt_lang"]), validate_default=True, description="Language of the prompt text."
    )
    top_k: int = job_field("top_k")
    top_p: float = job_field("top_p")
    temperature: float = job_field("temperature", "Above 0 (upstream divides by it).")
    text_split_method: CutMethod = Field(cut_method_label(DEFAULTS["text_split_method"]), validate_default=True)
    batch_size: int = job_field("batch_size")
    speed_factor: float = job_field("speed_factor", "Speech rate (upstream's UI: 0.6–1.65).")
    ref_text_free: bool = job_field("ref_text_free", "Ignore prompt_text (prompt-free mode; not for v3/v4).")
    split_bucket: bool = job_field("split_bucket", "Group pieces of similar length when batching.")
    fragment_interval: float = job_field("fragment_interval", "Silence between pieces, seconds.")
    seed: int = job_field("seed", "-1 or keep_random: a random seed (reported back).")
    keep_random: bool = job_field("keep_random", "Ignore seed and draw a new one each time (upstream's default).")
    parallel_infer: bool = job_field("parallel_infer", "Decode the pieces of a batch in parallel.")
    repetition_penalty: float = job_field("repetition_penalty")
    # An int checked against SAMPLE_STEPS rather than a Literal: multipart form values arrive as strings
    # ("8"), which a Literal of ints does not coerce.
    sample_steps: int = job_field(
        "sample_steps",
        f"Flow-matching steps, one of {', '.join(map(str, SAMPLE_STEPS))} (v3/v4 only; ignored otherwise).",
        json_schema_extra={"enum": list(SAMPLE_STEPS)},
    )
    super_sampling: bool = job_field(
        "super_sampling",
        "v3 only: extend the 24 kHz output to 48 kHz with upstream's AP-BWE model "
        "(tools/AP_BWE_main/24kto48k/ in the weights root; 409 super_sampling_model_missing without it). "
        "Ignored for other versions.",
    )
    streaming_mode: int = job_field(
        "streaming_mode",
        "0: answer when done. Streamed (a chunked response whose bytes start with the first audio): "
        "1 one chunk per batch of pieces; 2 token chunks cut at silence-like tokens (lowest latency that "
        "sounds natural); 3 fixed-length token chunks. v3/v4 models stream modes 2/3 as mode 1.",
    )
    overlap_length: int = job_field(
        "overlap_length", "Modes 2/3: tokens of overlap between consecutive chunk decodes (cross-faded)."
    )
    min_chunk_length: int = job_field("min_chunk_length", "Modes 2/3: tokens a chunk holds at least.")
    media_type: MediaType = Field(
        "wav",
        description="Answer format: wav (16-bit PCM; streamed with an unknown-length header), raw (16-bit "
        "little-endian mono PCM, no header), ogg (Ogg/Opus, 48 kHz), aac (ADTS), mp3, flac. A stream is "
        "one continuous file of that type.",
    )
    voice: str | None = Field(
        None,
        description="A stored voice (`/voices`) instead of `ref_audio_path`: its clips, and its prompt text "
        "and language, default parameters and models where the form gives none.",
    )
    gpt_weights: str | None = Field(None, description="GPT name for this request only (default: the current one).")
    sovits_weights: str | None = Field(None, description="SoVITS name for this request only (default: current).")

    @field_validator("sample_steps")
    @classmethod
    def _known_step_count(cls, value: int) -> int:
        if value not in SAMPLE_STEPS:
            raise ValueError(f"sample_steps must be one of {', '.join(map(str, SAMPLE_STEPS))}")
        return value


class StopRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"request_id": "3f2a9c0e"}, {}]})

    request_id: str | None = Field(
        None,
        pattern=REQUEST_ID_PATTERN,
        description="Cancel only this request (its X-Request-ID: 1-128 of A-Z a-z 0-9 . _ : -); else all.",
    )


class StopResponse(BaseModel):
    cancelled: int = Field(..., description="How many queued or running requests were cancelled.", examples=[1])
