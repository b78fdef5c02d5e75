"""Text endpoints: ``/to_cut`` (upstream's text-cutting tool) and ``/phonemize`` (text → phonemes)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import EngineDep, SettingsDep
from app.errors import PayloadTooLarge
from app.schemas.errors import error_responses
from app.schemas.text import (
    PhonemePart,
    PhonemeSegment,
    PhonemizeRequest,
    PhonemizeResponse,
    ToCutRequest,
    ToCutResponse,
)

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
def to_cut(body: ToCutRequest, engine: EngineDep, settings: SettingsDep) -> ToCutResponse:
    check_text_size(body.text_inp, settings.max_text_chars, "text_inp")
    return ToCutResponse(text=engine.cut(body.text_inp, body.how_to_cut))


@router.post(
    "/phonemize",
    response_model=PhonemizeResponse,
    summary="Show the phonemes the models would receive (to find mispronunciations)",
    description=(
        "Runs the text frontend exactly as synthesis does: cutting, language splitting, normalisation, "
        "G2P and the symbol table of the chosen version. One segment per piece the model receives."
    ),
    responses=error_responses(413, 422),
)
def phonemize(body: PhonemizeRequest, engine: EngineDep, settings: SettingsDep) -> PhonemizeResponse:
    check_text_size(body.text, settings.max_text_chars, "text")
    segments = engine.phonemize(body.text, body.text_lang, body.text_split_method, body.version)
    return PhonemizeResponse(
        segments=[
            PhonemeSegment(
                text=s.text,
                norm_text=s.norm_text,
                lang="+".join(dict.fromkeys(p.lang for p in s.lang_segments)),
                phones=s.phones,
                phone_ids=s.phone_ids,
                parts=[
                    PhonemePart(
                        lang=p.lang,
                        text=p.text,
                        norm_text=p.norm_text,
                        phones=p.phones,
                        phone_ids=p.phone_ids,
                        word2ph=p.word2ph,
                    )
                    for p in s.lang_segments
                ],
            )
            for s in segments
        ]
    )
