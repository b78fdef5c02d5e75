"""The model manager: what the weights root holds, which models are loaded, and the one place voices
are built.

- The registry (``app.engine.registry``) lists and resolves weight files; ``inspect_sovits`` tells a
  SoVITS file's version without loading it.
- Caches keep the most recently used GPT and SoVITS models (``max_loaded``) and the voices built on
  them; the shared models (HuBERT, BERT, the speaker encoder), the v3/v4 vocoders and the AP-BWE model
  are loaded once.
- Loading runs on one loader thread. The synthesis worker never loads: a request first gets its voice
  here (waiting, if it must be loaded), then queues for the worker, so a request for a new voice never
  blocks requests whose voices are loaded. A loaded voice is returned at once, without the loader.
- :meth:`ModelManager.voice` is the ONE function that builds a voice, used by the service, the tests
  and the benchmarks alike.
- The current GPT and SoVITS choice (upstream's UI state) lives here too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from app.engine.checkpoints import CheckpointError
from app.engine.decoders import Vocoder
from app.engine.errors import Conflict, EngineError, InvalidRequest
from app.engine.loading import (
    LoadedSovits,
    load_bandwidth_extender,
    load_gpt,
    load_shared_models,
    load_sovits,
    load_speaker_encoder,
    load_vocoder,
    missing_bandwidth_extension_files,
)
from app.engine.memory import release_freed_memory
from app.engine.model_cache import ModelCache
from app.engine.models.bandwidth_extension import BandwidthExtender
from app.engine.models.t2s import T2SModel
from app.engine.registry import ModelVersion, WeightRegistry
from app.engine.telemetry import NO_TELEMETRY, Telemetry
from app.engine.text.symbols import text_version_of_gpt
from app.engine.voice import SharedModels, Voice, VoiceLoadError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class GptChoice:
    name: str
    version: str  # symbol table: v1 or v2
    max_sec: int


@dataclass(frozen=True)
class SovitsChoice:
    name: str
    version: ModelVersion


class ModelManager:
    def __init__(
        self,
        weights_root: str | Path,
        device: str,
        dtype: torch.dtype,
        max_loaded: int = 2,
        telemetry: Telemetry = NO_TELEMETRY,
    ):
        self.root = Path(weights_root)
        self.device = device
        self.dtype = dtype
        self.registry = WeightRegistry(self.root)
        # A voice must not outlive an evicted model, or that model's memory would stay held by it.
        def events(kind: str):
            return lambda event: telemetry.model_cache(kind, event)

        self._voices: ModelCache[Voice] = ModelCache(
            max_loaded, self._build_voice, "voice", on_event=events("voice")
        )
        self._gpt: ModelCache[T2SModel] = ModelCache(
            max_loaded, self._load_gpt, "GPT", on_evict=lambda name: self._drop_voices(0, name), on_event=events("gpt")
        )
        self._sovits: ModelCache[LoadedSovits] = ModelCache(
            max_loaded,
            self._load_sovits,
            "SoVITS",
            on_evict=lambda name: self._drop_voices(1, name),
            on_event=events("sovits"),
        )
        self._shared: SharedModels | None = None
        self._vocoders: dict[str, Vocoder] = {}
        self._bandwidth_extender: BandwidthExtender | None = None
        self._lock = threading.Lock()  # guards the current choice
        self._on_loader = threading.local()
        self._loader = ThreadPoolExecutor(1, "model-loader", initializer=self._mark_loader_thread)
        self.current_gpt: GptChoice | None = None
        self.current_sovits: SovitsChoice | None = None
        self._load_failures: dict[tuple[str, str], str] = {}  # (gpt, sovits) -> why its voice failed

    def close(self) -> None:
        """Stop loading and let every model go: a closed manager loads nothing more, and whatever
        still refers to it (an app object after its lifespan, as tests make many) holds no GBs."""
        self._loader.shutdown(wait=False, cancel_futures=True)
        for cache in (self._voices, self._gpt, self._sovits):
            cache.clear()
        self._shared, self._bandwidth_extender = None, None
        self._vocoders.clear()

    # ---------------------------------------------------------------- the loader thread
    def _mark_loader_thread(self) -> None:
        self._on_loader.active = True

    def _load(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the loader thread and wait for it (at once when already there)."""
        if getattr(self._on_loader, "active", False):
            return work()
        return self._loader.submit(work).result()

    async def _load_async(self, work: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._loader.submit(work))

    # ---------------------------------------------------------------- listing and versions
    def weight_choices(self) -> tuple[list[str], list[str]]:
        """(SoVITS names, GPT names), rescanned."""
        return self.registry.sovits_names(), self.registry.gpt_names()

    def inspect_sovits(self, name: str) -> ModelVersion:
        """Version of a SoVITS file without loading it fully; refuses what cannot be served."""
        try:
            version = self.registry.sovits_version_fast(name)
        except CheckpointError as exc:
            raise InvalidRequest(str(exc), code="invalid_weights") from None
        if version.is_lora:
            base = self.registry.pretrained_sovits_path(version.model)
            if not base.is_file():
                rel = base.relative_to(self.root.resolve())
                raise Conflict(
                    f"{Path(name).name} is a SoVITS {version.model} LoRA fine-tune; it needs its base model at "
                    f"{rel.as_posix()} in the weights root",
                    code="lora_base_missing",
                )
        return version

    def super_sampling_missing(self) -> list[str]:
        """Files of the AP-BWE model (v3 super_sampling) that are not installed."""
        return missing_bandwidth_extension_files(self.root)

    # ---------------------------------------------------------------- models
    def gpt_model(self, name: str) -> T2SModel:
        return self._load(lambda: self._gpt.get(name))

    def sovits(self, name: str) -> LoadedSovits:
        return self._load(lambda: self._sovits.get(name))

    def voice(self, gpt: str, sovits: str) -> Voice:
        """The voice of a GPT + SoVITS pair, loaded (on the loader thread) when it is not yet."""
        return self._voices.peek((gpt, sovits)) or self._load(lambda: self._voices.get((gpt, sovits)))

    async def voice_async(self, gpt: str, sovits: str) -> Voice:
        """:meth:`voice` for the event loop: a loaded voice at once, else awaits the loader thread."""
        found = self._voices.peek((gpt, sovits))
        return found or await self._load_async(lambda: self._voices.get((gpt, sovits)))

    def bandwidth_extender(self) -> BandwidthExtender:
        return self._load(self._loaded_bandwidth_extender)

    async def bandwidth_extender_async(self) -> BandwidthExtender:
        return self._bandwidth_extender or await self._load_async(self._loaded_bandwidth_extender)

    # ---------------------------------------------------------------- current choice
    def select_gpt(self, name: str) -> GptChoice:
        model = self.gpt_model(name)
        choice = GptChoice(
            name, text_version_of_gpt(model.config.phone_vocab_size), int(model.config.max_sec)
        )
        with self._lock:
            self.current_gpt = choice
        log.info("current GPT weights: %s (%s)", name, choice.version)
        return choice

    def select_sovits(self, name: str) -> SovitsChoice:
        version = self.inspect_sovits(name)
        loaded = self.sovits(name)
        # Load what every voice of this model needs now, so a missing HuBERT/BERT/speaker model or
        # vocoder is reported here, when the model is chosen, rather than by the first synthesis.
        self._load(lambda: self._voice_parts(loaded))
        choice = SovitsChoice(name, ModelVersion(loaded.model.config.version, version.is_lora))
        with self._lock:
            self.current_sovits = choice
        log.info("current SoVITS weights: %s (%s)", name, choice.version.model)
        return choice

    def chosen(self, gpt: str | None, sovits: str | None) -> tuple[str, str]:
        """The request's models, else the current ones, else upstream's start-up picks (the first
        SoVITS name and the last GPT name of the listing). Names are checked to exist."""
        with self._lock:
            gpt = gpt or (self.current_gpt.name if self.current_gpt else None)
            sovits = sovits or (self.current_sovits.name if self.current_sovits else None)
        if gpt is None or sovits is None:
            sovits_names, gpt_names = self.weight_choices()
            gpt = gpt or (gpt_names[-1] if gpt_names else None)
            sovits = sovits or (sovits_names[0] if sovits_names else None)
        if gpt is None or sovits is None:
            raise Conflict(
                "no model selected: POST /init_t2s_weights and /change_sovits_weights first, "
                "or name gpt_weights and sovits_weights in the request",
                code="no_model_selected",
            )
        self.registry.resolve_gpt(gpt)
        self.registry.resolve_sovits(sovits)
        return gpt, sovits

    def problems(self) -> list[str]:
        """Why the current models cannot serve (for readiness; cheap: no model is loaded here)."""
        try:
            gpt, sovits = self.chosen(None, None)
            self.inspect_sovits(sovits)
        except EngineError as exc:
            return [exc.message]
        failure = self._load_failures.get((gpt, sovits))
        return [f"the current models ({gpt} + {sovits}) failed to load: {failure}"] if failure else []

    # ---------------------------------------------------------------- builders (loader thread)
    def _drop_voices(self, position: int, name: str) -> None:
        """After a model is evicted: drop the voices built on it, then give its memory back."""
        self._voices.discard_where(lambda key: key[position] == name)
        release_freed_memory()

    def _load_gpt(self, name: str) -> T2SModel:
        return load_gpt(self.registry.resolve_gpt(name), self.device, self.dtype)

    def _load_sovits(self, name: str) -> LoadedSovits:
        version = self.inspect_sovits(name)  # a LoRA's base is checked to exist here
        loaded = load_sovits(self.registry.resolve_sovits(name), version, self.root, self.device, self.dtype)
        release_freed_memory()  # the file's state dicts (GBs for v3/v4) are garbage now
        return loaded

    def _voice_parts(self, loaded: LoadedSovits) -> tuple[SharedModels, Vocoder | None]:
        """The shared models (with the speaker encoder for Pro models) and the vocoder (v3/v4) a voice
        of this SoVITS model needs, each loaded once."""
        config = loaded.model.config
        needs_speaker = getattr(config, "uses_speaker_embedding", False)
        if self._shared is None:
            self._shared = load_shared_models(
                self.root, self.device, self.dtype, with_speaker_encoder=needs_speaker
            )
        elif needs_speaker and self._shared.speaker is None:
            speaker = load_speaker_encoder(self.root, self.device, self.dtype)
            self._shared = SharedModels(self._shared.hubert, self._shared.bert, speaker)
        vocoder = None
        if config.version in ("v3", "v4"):
            if config.version not in self._vocoders:
                self._vocoders[config.version] = load_vocoder(
                    self.root, config.version, self.device, self.dtype
                )
            vocoder = self._vocoders[config.version]
        return self._shared, vocoder

    def _build_voice(self, key: tuple[str, str]) -> Voice:
        """THE voice builder (runs on the loader thread, through the voice cache). A failure is
        remembered for readiness until the same pair loads."""
        gpt_name, sovits_name = key
        try:
            loaded = self._sovits.get(sovits_name)
            shared, vocoder = self._voice_parts(loaded)
            voice = Voice(
                self._gpt.get(gpt_name),
                loaded.model,
                shared,
                loaded.spectrogram,
                vocoder=vocoder,
                device=self.device,
                dtype=self.dtype,
                name=f"{gpt_name}+{sovits_name}",
            )
        except VoiceLoadError as exc:
            self._load_failures[key] = str(exc)
            raise InvalidRequest(str(exc), code="incompatible_weights") from None
        except EngineError as exc:
            self._load_failures[key] = exc.message
            raise
        self._load_failures.pop(key, None)
        return voice

    def _loaded_bandwidth_extender(self) -> BandwidthExtender:
        if self._bandwidth_extender is None:
            self._bandwidth_extender = load_bandwidth_extender(self.root, self.device)
            log.info("loaded the AP-BWE super-sampling model")
        return self._bandwidth_extender
