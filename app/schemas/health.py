"""Schemas of the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"] = Field("ok", examples=["ok"])


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"] = Field(..., examples=["ready"])
    device: str = Field(..., examples=["cpu"])
    weights_root: str = Field(..., examples=["weights"])
    problems: list[str] = Field(default_factory=list, description="Why the engine is not ready, if it is not.")
    warnings: list[str] = Field(default_factory=list, description="Ready, but worth knowing (e.g. demo weights).")
    startup_weights: str | None = Field(
        None,
        description="What start-up did about an empty weights root (make run): fetched upstream's pretrained "
        "models, or wrote demo weights and why; null when it found models.",
        examples=["fetched upstream's pretrained v2ProPlus models from https://huggingface.co into the empty weights root"],
    )
