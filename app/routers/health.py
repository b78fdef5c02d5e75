"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
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
def readyz(request: Request, engine: EngineDep, settings: SettingsDep):
    status = engine.status()
    startup = getattr(request.app.state, "startup_weights", None)
    body = Readiness(
        status="ready" if status.ready else "not_ready",
        device=status.device,
        weights_root=status.weights_root,
        problems=status.problems,
        warnings=demo_warnings(settings.weights_root),
        startup_weights=startup.message if startup else None,
    )
    return body if status.ready else JSONResponse(body.model_dump(), status_code=503)
