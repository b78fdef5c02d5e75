"""The engine: the one object the routers talk to. It owns the weight registry, the loaded-model
caches, the current model choice and (with the pipeline) the synthesis worker. Created once per app,
in the lifespan; nothing below it reads settings."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.engine.checkpoints import CheckpointError
from app.engine.model_cache import ModelCache
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.t2s import T2SModel
from app.engine.registry import ModelVersion, WeightRegistry, gpt_symbol_version, sovits_version_from_file
from app.engine.text import zh
from app.engine.text.cut import to_cut
from app.engine.text.preprocess import Segment, TextRejected, preprocess
from app.errors import InvalidInput, ServiceError
from app.schemas.enums import LANGUAGE_LABELS, V1_LANGUAGES
from app.settings import Settings, resolve_device

log = logging.getLogger(__name__)

VOCODER_VERSIONS = ("v3", "v4")


@dataclass
class EngineStatus:
    ready: bool
    device: str
    weights_root: str
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GptChoice:
    name: str
    version: str  # symbol table: v1 or v2
    max_sec: int


@dataclass(frozen=True)
class SovitsChoice:
    name: str
    version: ModelVersion


@dataclass(frozen=True)
class LanguageUpdate:
    """Upstream's UI reaction to a SoVITS switch for one language dropdown."""

    language: str | None  # the code kept, or "all_zh" when the old one is not valid any more
    reset: bool  # the text that belongs to the dropdown must be cleared


def languages_for(symbols_version: str) -> list[str]:
    codes = list(LANGUAGE_LABELS.values())
    return [c for c in codes if c in V1_LANGUAGES] if symbols_version == "v1" else codes


def language_update(current: str | None, allowed: list[str]) -> LanguageUpdate:
    if current is None:
        return LanguageUpdate(None, False)
    if current in allowed:
        return LanguageUpdate(current, False)
    return LanguageUpdate("all_zh", True)


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = torch.float16 if settings.half and self.device.startswith("cuda") else torch.float32
        self.registry = WeightRegistry(settings.weights_root)
        self._gpt_models: ModelCache[T2SModel] = ModelCache(settings.max_loaded_models, self._load_gpt, "GPT")
        self._sovits_models: ModelCache[SoVITSSynthesizer] = ModelCache(
            settings.max_loaded_models, self._load_sovits, "SoVITS"
        )
        self._choice_lock = threading.Lock()
        self.current_gpt: GptChoice | None = None
        self.current_sovits: SovitsChoice | None = None

    def start(self) -> None:
        root = Path(self.settings.weights_root)
        log.info("engine starting: device=%s dtype=%s weights_root=%s", self.device, self.dtype, root.resolve())
        if not root.is_dir():
            log.warning("weights root %s does not exist; no model can be loaded until it does", root.resolve())
        # Chinese polyphones: g2pW when its model is in the weights root, else upstream's pypinyin path.
        zh.configure_from_weights_root(root)

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

    def _load_gpt(self, name: str) -> T2SModel:
        path = self.registry.resolve_gpt(name)
        try:
            return T2SModel.from_checkpoint(path, device=self.device, dtype=self.dtype)
        except CheckpointError as exc:
            raise InvalidInput(str(exc), code="invalid_weights") from None
        except (ValueError, KeyError) as exc:
            raise InvalidInput(f"{Path(name).name}: not a usable GPT checkpoint ({exc})", code="invalid_weights") from None

    def _load_sovits(self, name: str) -> SoVITSSynthesizer:
        path = self.registry.resolve_sovits(name)
        try:
            model = SoVITSSynthesizer.from_checkpoint(path)
        except CheckpointError as exc:
            raise InvalidInput(str(exc), code="invalid_weights") from None
        except (ValueError, KeyError) as exc:
            raise InvalidInput(f"{Path(name).name}: not a usable SoVITS checkpoint ({exc})", code="invalid_weights") from None
        return model.to(device=self.device, dtype=self.dtype)

    def gpt_model(self, name: str) -> T2SModel:
        return self._gpt_models.get(name)

    def sovits_model(self, name: str) -> SoVITSSynthesizer:
        return self._sovits_models.get(name)

    def inspect_sovits(self, name: str) -> ModelVersion:
        """Version of a SoVITS file without loading it fully; refuses what cannot be served."""
        path = self.registry.resolve_sovits(name)
        try:
            fast = sovits_version_from_file(path)
        except CheckpointError as exc:
            raise InvalidInput(str(exc), code="invalid_weights") from None
        if fast.is_lora:
            base = self.registry.pretrained_sovits_path(fast.model)
            if not base.is_file():
                rel = base.relative_to(Path(self.settings.weights_root).resolve())
                raise ServiceError(
                    f"{Path(name).name} is a SoVITS {fast.model} LoRA fine-tune; it needs its base model at "
                    f"{rel.as_posix()} in the weights root",
                    code="lora_base_missing",
                    status_code=409,
                )
        if fast.model in VOCODER_VERSIONS:
            raise ServiceError(
                f"{Path(name).name} is a SoVITS {fast.model} model; v3/v4 synthesis is not available in this release",
                code="model_version_unsupported",
                status_code=422,
            )
        return fast

    def select_gpt(self, name: str) -> GptChoice:
        model = self.gpt_model(name)
        choice = GptChoice(name, gpt_symbol_version(model.config.phone_vocab_size), int(model.config.max_sec))
        with self._choice_lock:
            self.current_gpt = choice
        log.info("current GPT weights: %s (%s)", name, choice.version)
        return choice

    def select_sovits(self, name: str) -> SovitsChoice:
        fast = self.inspect_sovits(name)
        model = self.sovits_model(name)
        version = ModelVersion("v1" if model.config.version == "v1" else "v2", model.config.version, fast.is_lora)
        choice = SovitsChoice(name, version)
        with self._choice_lock:
            self.current_sovits = choice
        log.info("current SoVITS weights: %s (%s)", name, version.model)
        return choice
