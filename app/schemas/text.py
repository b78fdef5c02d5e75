"""Schemas of the text endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.enums import CutMethod


class ToCutRequest(BaseModel):
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
