"""Weight management: list what the weights root holds, switch the current GPT and SoVITS models."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from app.deps import EngineDep
from app.engine.languages import languages_for
from app.schemas.enums import language_label
from app.schemas.errors import error_responses
from app.schemas.weights import (
    GptWeightsRequest,
    GptWeightsResponse,
    LanguageChoice,
    SovitsWeightsRequest,
    SovitsWeightsResponse,
    WeightChoices,
)

router = APIRouter(tags=["weights"])


@dataclass(frozen=True)
class LanguageUpdate:
    """Upstream's web UI reaction to a SoVITS switch, for one language dropdown."""

    language: str | None  # the code kept, or "all_zh" when the old one is not valid any more
    reset: bool  # the text that belongs to the dropdown must be cleared


def language_update(current: str | None, allowed: tuple[str, ...]) -> LanguageUpdate:
    if current is None:
        return LanguageUpdate(None, False)
    if current in allowed:
        return LanguageUpdate(current, False)
    return LanguageUpdate("all_zh", True)


@router.post(
    "/change_choices",
    response_model=WeightChoices,
    summary="List SoVITS and GPT weights (rescans the weights root)",
)
def change_choices(engine: EngineDep) -> WeightChoices:
    sovits, gpt = engine.weight_choices()
    return WeightChoices(sovits=sovits, gpt=gpt)


@router.post(
    "/init_t2s_weights",
    response_model=GptWeightsResponse,
    summary="Load a GPT model and make it the current one",
    responses=error_responses(404, 422),
)
def init_t2s_weights(body: GptWeightsRequest, engine: EngineDep) -> GptWeightsResponse:
    choice = engine.select_gpt(body.weights_path)
    return GptWeightsResponse(weights_path=choice.name, version=choice.version, max_sec=choice.max_sec)


@router.post(
    "/change_sovits_weights",
    response_model=SovitsWeightsResponse,
    summary="Load a SoVITS model and make it the current one",
    description=(
        "Answers what upstream's UI updates after the switch: the languages the model speaks, whether the "
        "current prompt/text languages are kept or reset to 中文 (clearing their text), and which options "
        "apply to this model version. A v3/v4 LoRA file whose base model is missing answers 409."
    ),
    responses=error_responses(404, 409, 422),
)
def change_sovits_weights(body: SovitsWeightsRequest, engine: EngineDep) -> SovitsWeightsResponse:
    choice = engine.select_sovits(body.sovits_path)
    version = choice.version
    allowed = languages_for(version.symbols)
    prompt = language_update(body.prompt_language, allowed)
    text = language_update(body.text_language, allowed)
    return SovitsWeightsResponse(
        sovits_path=choice.name,
        version=version.symbols,
        model_version=version.model,
        is_lora=version.is_lora,
        languages=[LanguageChoice(label=language_label(code), code=code) for code in allowed],
        prompt_language=prompt.language,
        prompt_text_reset=prompt.reset,
        text_language=text.language,
        text_reset=text.reset,
        sample_steps_applies=version.uses_vocoder,
        aux_refs_apply=not version.uses_vocoder,
        ref_text_free_allowed=not version.uses_vocoder,
        super_sampling_available=engine.super_sampling_available(version.model),
    )
