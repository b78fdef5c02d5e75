"""Schemas of the weight-management endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
