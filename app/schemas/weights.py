"""Schemas of the weight-management endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.base import RequestModel
from app.schemas.enums import Language


class WeightChoices(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sovits": [
                        "GPT_SoVITS/pretrained_models/gsv-v2final-pretrained/s2G2333k.pth",
                        "SoVITS_weights_v2/voice_e8_s200.pth",
                    ],
                    "gpt": ["GPT_SoVITS/pretrained_models/s1v3.ckpt", "GPT_weights_v2/voice-e15.ckpt"],
                }
            ]
        }
    )

    sovits: list[str] = Field(..., description="SoVITS weight names (relative to the weights root), natural-sorted.")
    gpt: list[str] = Field(..., description="GPT weight names (relative to the weights root), natural-sorted.")


class GptWeightsRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"weights_path": "GPT_SoVITS/pretrained_models/s1v3.ckpt"}]}
    )

    weights_path: str = Field(..., description="A GPT name from /change_choices (relative to the weights root).")


class GptWeightsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"weights_path": "GPT_weights_v2/voice-e15.ckpt", "version": "v2", "max_sec": 54}]}
    )

    weights_path: str
    version: str = Field(..., description="Symbol table the model reads: v1 or v2.")
    max_sec: int = Field(..., description="Longest output per piece, in seconds (sets the early stop).")


class SovitsWeightsRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"sovits_path": "SoVITS_weights_v2/voice_e8_s200.pth", "prompt_language": "中文", "text_language": "英文"}
            ]
        }
    )

    sovits_path: str = Field(..., description="A SoVITS name from /change_choices (relative to the weights root).")
    prompt_language: Language | None = Field(None, description="The UI's current prompt language, to keep or reset.")
    text_language: Language | None = Field(None, description="The UI's current text language, to keep or reset.")


class LanguageChoice(BaseModel):
    label: str = Field(..., examples=["中文"])
    code: str = Field(..., examples=["all_zh"])


class SovitsWeightsResponse(BaseModel):
    """What upstream's UI updates after a SoVITS switch, as named fields."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sovits_path": "SoVITS_weights_v2/voice_e8_s200.pth",
                    "version": "v2",
                    "model_version": "v2",
                    "is_lora": False,
                    "languages": [{"label": "中文", "code": "all_zh"}, {"label": "英文", "code": "en"}],
                    "prompt_language": "all_zh",
                    "prompt_text_reset": False,
                    "text_language": "en",
                    "text_reset": False,
                    "sample_steps_applies": False,
                    "sample_steps": 32,
                    "aux_refs_apply": True,
                    "ref_text_free_allowed": True,
                    "super_sampling_available": False,
                }
            ]
        }
    )

    sovits_path: str
    version: str = Field(..., description="Symbol table: v1 or v2.")
    model_version: str = Field(..., description="v1, v2, v2Pro, v2ProPlus, v3 or v4.")
    is_lora: bool
    languages: list[LanguageChoice] = Field(..., description="Languages this model can speak (both dropdowns).")
    prompt_language: str | None = Field(None, description="Prompt language kept, or all_zh when it was not valid.")
    prompt_text_reset: bool = Field(..., description="True when the prompt text must be cleared (language reset).")
    text_language: str | None = Field(None, description="Text language kept, or all_zh when it was not valid.")
    text_reset: bool = Field(..., description="True when the text must be cleared (language reset).")
    sample_steps_applies: bool = Field(..., description="sample_steps matters (v3/v4 only).")
    sample_steps: int = Field(32, description="The sample_steps value the UI resets to.")
    aux_refs_apply: bool = Field(..., description="Auxiliary references are used (not v3/v4).")
    ref_text_free_allowed: bool = Field(..., description="Prompt-free mode is allowed (not v3/v4).")
    super_sampling_available: bool = Field(
        ...,
        description="super_sampling can be used: a v3 model, with the AP-BWE model installed "
        "(tools/AP_BWE_main/24kto48k/ in the weights root).",
    )
