"""Schemas of the synthesis endpoints: ``/inference`` (multipart form) and ``/stop``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas.enums import CutMethod, Language

SAMPLE_STEPS = (4, 8, 16, 32, 64, 128)


class InferenceParams(BaseModel):
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
                }
            ]
        }
    )

    text: str = Field(..., min_length=1, description="Text to speak.")
    text_lang: Language = Field("中文", validate_default=True, description="Language of the text.")
    prompt_text: str = Field("", description="What the reference clip says (empty: prompt-free mode).")
    prompt_lang: Language = Field("中文", validate_default=True, description="Language of the prompt text.")
    top_k: int = Field(5, ge=1, le=100)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="Above 0 (upstream divides by it).")
    text_split_method: CutMethod = Field("凑四句一切", validate_default=True)
    batch_size: int = Field(20, ge=1, le=200)
    speed_factor: float = Field(1.0, ge=0.25, le=4.0, description="Speech rate (upstream's UI: 0.6–1.65).")
    ref_text_free: bool = Field(False, description="Ignore prompt_text (prompt-free mode; not for v3/v4).")
    split_bucket: bool = Field(True, description="Group pieces of similar length when batching.")
    fragment_interval: float = Field(0.3, ge=0.01, le=5.0, description="Silence between pieces, seconds.")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 or keep_random: a random seed (reported back).")
    keep_random: bool = Field(True, description="Ignore seed and draw a new one each time (upstream's default).")
    parallel_infer: bool = Field(True, description="Decode the pieces of a batch in parallel.")
    repetition_penalty: float = Field(1.35, ge=0.0, le=2.0)
    # An int checked against SAMPLE_STEPS rather than a Literal: multipart form values arrive as strings
    # ("8"), which a Literal of ints does not coerce.
    sample_steps: int = Field(
        32, description="Flow-matching steps, one of 4, 8, 16, 32, 64, 128 (v3/v4 only; ignored otherwise).",
        json_schema_extra={"enum": list(SAMPLE_STEPS)},
    )
    super_sampling: bool = Field(
        False,
        description=(
            "v3 only: extend the 24 kHz output to 48 kHz with upstream's AP-BWE model "
            "(tools/AP_BWE_main/24kto48k/ in the weights root; 409 super_sampling_model_missing without it). "
            "Ignored for other versions."
        ),
    )
    gpt_weights: str | None = Field(None, description="GPT name for this request only (default: the current one).")
    sovits_weights: str | None = Field(None, description="SoVITS name for this request only (default: current).")


    @field_validator("sample_steps")
    @classmethod
    def _known_step_count(cls, value: int) -> int:
        if value not in SAMPLE_STEPS:
            raise ValueError(f"sample_steps must be one of {', '.join(map(str, SAMPLE_STEPS))}")
        return value


class StopRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"request_id": "3f2a9c0e"}, {}]})

    request_id: str | None = Field(None, description="Cancel only this request (its X-Request-ID); else all.")


class StopResponse(BaseModel):
    cancelled: int = Field(..., description="How many queued or running requests were cancelled.", examples=[1])
