"""FastAPI dependencies: the engine created in the lifespan, and the settings the app was built from."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.engine.engine import Engine
from app.settings import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
