"""The engine: the one object the routers talk to. It owns the weight registry now and the
models, scheduler and pipeline as they arrive. Created once per app, in the lifespan."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.engine.registry import WeightRegistry
from app.engine.text.cut import to_cut
from app.engine.text.preprocess import Segment, TextRejected, preprocess
from app.errors import InvalidInput
from app.schemas.enums import V1_LANGUAGES
from app.settings import Settings, resolve_device

log = logging.getLogger(__name__)


@dataclass
class EngineStatus:
    ready: bool
    device: str
    weights_root: str
    problems: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.registry = WeightRegistry(settings.weights_root)

    def start(self) -> None:
        root = Path(self.settings.weights_root)
        log.info("engine starting: device=%s half=%s weights_root=%s", self.device, self.settings.half, root.resolve())
        if not root.is_dir():
            log.warning("weights root %s does not exist; no model can be loaded until it does", root.resolve())

    def stop(self) -> None:
        log.info("engine stopped")

    def status(self) -> EngineStatus:
        root = Path(self.settings.weights_root)
        problems = [] if root.is_dir() else [f"weights root {root} does not exist"]
        return EngineStatus(ready=not problems, device=self.device, weights_root=str(root), problems=problems)

    # ---------------------------------------------------------------- text
    def cut(self, text: str, method: str) -> str:
        return to_cut(text, method)

    def phonemize(self, text: str, lang: str, method: str, version: str) -> list[Segment]:
        """The segments the models would receive for ``text`` (no BERT features)."""
        if version == "v1" and lang not in V1_LANGUAGES:
            raise InvalidInput(
                f"language {lang!r} is not available for v1 models; use one of {', '.join(V1_LANGUAGES)}",
                code="language_not_supported",
            )
        try:
            return preprocess(text, lang, method, version)
        except TextRejected as exc:
            raise InvalidInput(str(exc), code="no_speakable_text") from None

    # ---------------------------------------------------------------- weights
    def weight_choices(self) -> tuple[list[str], list[str]]:
        return self.registry.sovits_names(), self.registry.gpt_names()
