"""Schemas of the text endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.base import RequestModel
from app.schemas.enums import CutMethod, Language


class ToCutRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text_inp": "今天天气很好。我们去公园吧！你觉得呢？好的。走吧。", "how_to_cut": "凑四句一切"},
                {"text_inp": "Hello there. It is 3.14 today. Bye.", "how_to_cut": "cut4"},
            ]
        }
    )

    text_inp: str = Field(..., description="Text to cut into the pieces that are synthesised one by one.")
    how_to_cut: CutMethod = Field(
        "凑四句一切",
        validate_default=True,  # the default is a UI label too and must become its code
        description="Cut method: upstream's UI label or its code cut0..cut5.",
    )


class ToCutResponse(BaseModel):
    text: str = Field(..., description="The text with one newline between pieces, exactly as upstream returns it.")


class PhonemizeRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "我今年25岁。", "text_lang": "中文", "text_split_method": "凑四句一切", "version": "v2"},
                {"text": "Hello world, 你好世界。", "text_lang": "auto", "text_split_method": "cut5", "version": "v2"},
            ]
        }
    )

    text: str = Field(..., description="Text to convert to phonemes, exactly as it would be synthesised.")
    text_lang: Language = Field("中文", validate_default=True, description="Language: UI label or code.")
    text_split_method: CutMethod = Field("凑四句一切", validate_default=True, description="How the text is cut.")
    version: Literal["v1", "v2"] = Field(
        "v2", description="Symbol table and language modules: v1 for v1 models, v2 for every newer model."
    )


class PhonemePart(BaseModel):
    lang: str = Field(..., description="Language of this part: zh, en, ja, ko or yue.", examples=["zh"])
    text: str = Field(..., examples=["我今年25岁。"])
    norm_text: str = Field(..., examples=["我今年二十五岁."])
    phones: list[str] = Field(..., examples=[["w", "o3", "j", "in1"]])
    phone_ids: list[int] = Field(..., examples=[[316, 232, 221, 196]])
    word2ph: list[int] | None = Field(None, description="Phones per normalised character (Chinese, Cantonese).")


class PhonemeSegment(BaseModel):
    text: str = Field(..., description="The piece as cut.", examples=["我今年25岁。"])
    norm_text: str = Field(..., description="The piece after normalisation.", examples=["我今年二十五岁."])
    lang: str = Field(..., description="Languages of the piece's parts, joined with '+'.", examples=["zh"])
    phones: list[str] = Field(..., examples=[["w", "o3", "j", "in1"]])
    phone_ids: list[int] = Field(..., description="Ids in the version's symbol table.", examples=[[316, 232, 221, 196]])
    parts: list[PhonemePart] = Field(..., description="The single-language parts the piece was read as.")


class PhonemizeResponse(BaseModel):
    segments: list[PhonemeSegment] = Field(..., description="One per piece the model would receive, in order.")
