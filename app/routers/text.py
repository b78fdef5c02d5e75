"""Text endpoints: ``/to_cut`` (upstream's text-cutting tool)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import EngineDep
from app.errors import PayloadTooLarge
from app.schemas.errors import error_responses
from app.schemas.text import ToCutRequest, ToCutResponse

router = APIRouter(tags=["text"])


def check_text_size(text: str, limit: int, field: str) -> None:
    if len(text) > limit:
        raise PayloadTooLarge(f"{field} has {len(text)} characters; the limit is {limit} (GSV_MAX_TEXT_CHARS)")


@router.post(
    "/to_cut",
    response_model=ToCutResponse,
    summary="Cut text into synthesis pieces, as upstream's UI does",
    responses=error_responses(413, 422),
)
def to_cut(body: ToCutRequest, engine: EngineDep) -> ToCutResponse:
    check_text_size(body.text_inp, engine.settings.max_text_chars, "text_inp")
    return ToCutResponse(text=engine.cut(body.text_inp, body.how_to_cut))
