"""Weight management endpoints: ``/change_choices`` (list what the weights root holds)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import EngineDep
from app.schemas.weights import WeightChoices

router = APIRouter(tags=["weights"])


@router.post(
    "/change_choices",
    response_model=WeightChoices,
    summary="List SoVITS and GPT weights (rescans the weights root)",
)
def change_choices(engine: EngineDep) -> WeightChoices:
    sovits, gpt = engine.weight_choices()
    return WeightChoices(sovits=sovits, gpt=gpt)
