"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.demo_setup import demo_warnings
from app.deps import EngineDep, SettingsDep
from app.schemas.health import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers")
def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: the engine can serve",
    responses={503: {"model": Readiness, "description": "Not ready; `problems` says why"}},
)
def readyz(engine: EngineDep, settings: SettingsDep):
    status = engine.status()
    body = Readiness(
        status="ready" if status.ready else "not_ready",
        device=status.device,
        weights_root=status.weights_root,
        problems=status.problems,
        warnings=demo_warnings(settings.weights_root),
    )
    return body if status.ready else JSONResponse(body.model_dump(), status_code=503)
