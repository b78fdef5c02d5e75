"""FastAPI dependencies: the engine and the voice store created in the lifespan, and the settings the app
was built from."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.engine.engine import Engine
from app.settings import Settings
from app.store.voices import VoiceStore


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_voice_store(request: Request) -> VoiceStore:
    return request.app.state.voices


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
VoiceStoreDep = Annotated[VoiceStore, Depends(get_voice_store)]
