"""The engine: the one object the routers talk to. It owns the weight registry, the loaded-model
caches, the current model choice and (with the pipeline) the synthesis worker. Created once per app,
in the lifespan; nothing below it reads settings."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.engine import audio_features
from app.engine.audio import encode_wav
from app.engine.audio_features import ReferenceAudioError
from app.engine.checkpoints import CheckpointError
from app.engine.demo_weights import README_NAME as DEMO_MARKER
from app.engine.demo_weights import write_demo_weights
from app.engine.jobs import SynthesisCancelled, SynthesisJob
from app.engine.memory import release_freed_memory
from app.engine.model_cache import ModelCache
from app.engine.models.bandwidth_extension import BandwidthExtender
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.sovits_v3 import SoVITSV3
from app.engine.models.t2s import T2SModel
from app.engine.pipeline import PromptTextRequired, synthesize
from app.engine.registry import (
    BANDWIDTH_EXTENSION_DIR,
    ModelVersion,
    WeightRegistry,
    gpt_symbol_version,
)
from app.engine.scheduler import QueueFull, Scheduler, Ticket
from app.engine.text import zh
from app.engine.text.cut import to_cut
from app.engine.text.en import lexicon as en_lexicon
from app.engine.text.preprocess import Segment, TextRejected, preprocess
from app.engine.voice import (
    SharedModels,
    Vocoder,
    Voice,
    VoiceLoadError,
    load_shared_models,
    load_sovits,
    load_speaker_encoder,
    load_vocoder,
)
from app.errors import Busy, Cancelled, InvalidInput, MissingWeights, ServiceError
from app.logging_setup import request_id_var
from app.schemas.enums import LANGUAGE_LABELS, V1_LANGUAGES
from app.settings import Settings, resolve_device

log = logging.getLogger(__name__)


@dataclass
class EngineStatus:
    ready: bool
    device: str
    weights_root: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


DEMO_WARNING = (
    "DEMO WEIGHTS: the weights root holds random demo models that produce noise, not speech; put real "
    "GPT-SoVITS weights in its GPT_SoVITS/pretrained_models/, SoVITS_weights*/ and GPT_weights*/ folders "
    "(see weights/README.md)"
)


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
class LoadedSovits:
    model: SoVITSSynthesizer | SoVITSV3
    spectrogram: audio_features.SpectrogramConfig  # the checkpoint's data settings


@dataclass(frozen=True)
class SynthesisOutput:
    wav_bytes: bytes
    sample_rate: int
    seed: int
    seconds: float


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
        # A voice pairs a cached GPT and SoVITS model with the shared models; it keeps the features
        # of recent reference clips, so it is cached too (building one loads nothing). A voice must not
        # outlive an evicted model, or that model's memory would stay held by it.
        self._voices: ModelCache[Voice] = ModelCache(settings.max_loaded_models, self._build_voice, "voice")
        self._gpt_models: ModelCache[T2SModel] = ModelCache(
            settings.max_loaded_models,
            self._load_gpt,
            "GPT",
            on_evict=lambda name: self._drop_voices(lambda key: key[0] == name),
        )
        self._sovits_models: ModelCache[LoadedSovits] = ModelCache(
            settings.max_loaded_models,
            self._load_sovits,
            "SoVITS",
            on_evict=lambda name: self._drop_voices(lambda key: key[1] == name),
        )
        self._shared: SharedModels | None = None
        self._vocoders: dict[str, Vocoder] = {}  # v3 / v4 vocoder, loaded once, shared by their voices
        self._bandwidth_extender: BandwidthExtender | None = None  # v3 super_sampling, loaded on first use
        self._shared_lock = threading.Lock()
        self._choice_lock = threading.Lock()
        self.current_gpt: GptChoice | None = None
        self.current_sovits: SovitsChoice | None = None
        self.scheduler: Scheduler | None = None

    def _drop_voices(self, predicate) -> None:
        """After a model is evicted: drop the voices built on it, then give its memory back."""
        self._voices.discard_where(predicate)
        release_freed_memory()

    def start(self) -> None:
        root = Path(self.settings.weights_root)
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        log.info("engine starting: device=%s dtype=%s weights_root=%s", self.device, self.dtype, root.resolve())
        if self.settings.demo_if_empty and not any(self.weight_choices()):
            log.warning("weights root %s holds no model: writing demo weights into it", root.resolve())
            written = write_demo_weights(root)
            log.warning("wrote %d demo files", sum(r.written for r in written))
        if not root.is_dir():
            log.warning("weights root %s does not exist; no model can be loaded until it does", root.resolve())
        if self.uses_demo_weights:
            log.warning(DEMO_WARNING)
        # Chinese polyphones: g2pW when its model is in the weights root, else upstream's pypinyin path.
        zh.configure_from_weights_root(root)
        # English: upstream's own CMU dictionaries when the weights root is an upstream checkout.
        en_lexicon.configure_from_weights_root(root)
        self.scheduler = Scheduler(self._run_batch, max_queue=self.settings.max_queue)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        log.info("engine stopped")

    @property
    def uses_demo_weights(self) -> bool:
        return (Path(self.settings.weights_root) / DEMO_MARKER).is_file()

    def status(self) -> EngineStatus:
        root = Path(self.settings.weights_root)
        problems = [] if root.is_dir() else [f"weights root {root} does not exist"]
        warnings = [DEMO_WARNING] if self.uses_demo_weights else []
        return EngineStatus(not problems, self.device, str(root), problems, warnings)

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

    def _load_sovits(self, name: str) -> LoadedSovits:
        path = self.registry.resolve_sovits(name)
        version = self.inspect_sovits(name)  # a LoRA's base is checked to exist here
        try:
            model, spectrogram = load_sovits(path, version, self.registry.root, self.device, self.dtype)
        except CheckpointError as exc:
            raise InvalidInput(str(exc), code="invalid_weights") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{Path(name).name}: not a usable SoVITS checkpoint ({exc})", code="invalid_weights") from None
        release_freed_memory()  # the file's state dicts (GBs for v3/v4) are garbage now
        return LoadedSovits(model, spectrogram)

    def gpt_model(self, name: str) -> T2SModel:
        return self._gpt_models.get(name)

    def sovits_model(self, name: str) -> SoVITSSynthesizer | SoVITSV3:
        return self._sovits_models.get(name).model

    def _vocoder(self, model_version: str) -> Vocoder:
        """The v3 (BigVGAN) or v4 vocoder, loaded on first use and shared by every voice of that version."""
        with self._shared_lock:
            if model_version not in self._vocoders:
                try:
                    self._vocoders[model_version] = load_vocoder(
                        self.settings.weights_root, model_version, self.device, self.dtype
                    )
                except (OSError, CheckpointError) as exc:
                    raise MissingWeights(
                        f"the {model_version} vocoder is missing or unreadable in the weights root ({exc}); "
                        "see weights/README.md for where it goes"
                    ) from None
            return self._vocoders[model_version]

    @property
    def bandwidth_extension_dir(self) -> Path:
        return Path(self.settings.weights_root) / BANDWIDTH_EXTENSION_DIR

    def _missing_bandwidth_extension_files(self) -> list[str]:
        folder = self.bandwidth_extension_dir
        return [name for name in ("g_24kto48k.zip", "config.json") if not (folder / name).is_file()]

    def super_sampling_available(self, model_version: str) -> bool:
        """super_sampling works for this model: a v3 model, with the AP-BWE files installed."""
        return model_version == "v3" and not self._missing_bandwidth_extension_files()

    def _check_bandwidth_extension(self) -> None:
        """409 now (in the request) when super_sampling is asked for and its model is not installed."""
        missing = self._missing_bandwidth_extension_files()
        if missing:
            raise ServiceError(
                f"super_sampling needs upstream's AP-BWE model: {' and '.join(missing)} missing from "
                f"{BANDWIDTH_EXTENSION_DIR}/ in the weights root (see weights/README.md); "
                "send super_sampling=false for 24 kHz audio",
                code="super_sampling_model_missing",
                status_code=409,
            )

    def _loaded_bandwidth_extender(self) -> BandwidthExtender:
        with self._shared_lock:
            if self._bandwidth_extender is None:
                try:
                    self._bandwidth_extender = BandwidthExtender.from_folder(self.bandwidth_extension_dir, self.device)
                except (OSError, CheckpointError) as exc:
                    raise MissingWeights(f"the AP-BWE super-sampling model cannot be loaded ({exc})") from None
                log.info("loaded the AP-BWE super-sampling model from %s", BANDWIDTH_EXTENSION_DIR)
            return self._bandwidth_extender

    def _shared_models(self, with_speaker: bool) -> SharedModels:
        """HuBERT and BERT (and the speaker encoder once a v2Pro voice needs it), loaded once."""
        root = Path(self.settings.weights_root)
        with self._shared_lock:
            try:
                if self._shared is None:
                    self._shared = load_shared_models(root, self.device, self.dtype, with_speaker_encoder=with_speaker)
                elif with_speaker and self._shared.speaker is None:
                    self._shared = SharedModels(
                        self._shared.hubert, self._shared.bert, load_speaker_encoder(root, self.device, self.dtype)
                    )
            except (OSError, CheckpointError) as exc:
                raise MissingWeights(
                    f"a shared model is missing or unreadable in the weights root ({exc}); "
                    "see weights/README.md for where HuBERT, BERT and the speaker model go"
                ) from None
            return self._shared

    def _build_voice(self, key: tuple[str, str]) -> Voice:
        gpt, sovits = key
        loaded = self._sovits_models.get(sovits)
        shared = self._shared_models(with_speaker=_uses_speaker(loaded.model))
        vocoder = self._vocoder(loaded.model.config.version) if isinstance(loaded.model, SoVITSV3) else None
        try:
            return Voice(
                self.gpt_model(gpt),
                loaded.model,
                shared,
                loaded.spectrogram,
                vocoder=vocoder,
                device=self.device,
                dtype=self.dtype,
                name=f"{gpt}+{sovits}",
            )
        except VoiceLoadError as exc:
            raise InvalidInput(str(exc), code="incompatible_weights") from None

    def inspect_sovits(self, name: str) -> ModelVersion:
        """Version of a SoVITS file without loading it fully; refuses what cannot be served."""
        try:
            fast = self.registry.sovits_version_fast(name)
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
        # Load what every voice of this model needs now, so a missing HuBERT/BERT/speaker model is
        # reported here, when the model is chosen, rather than by the first synthesis.
        self._shared_models(with_speaker=_uses_speaker(model))
        if isinstance(model, SoVITSV3):
            self._vocoder(model.config.version)
        version = ModelVersion("v1" if model.config.version == "v1" else "v2", model.config.version, fast.is_lora)
        choice = SovitsChoice(name, version)
        with self._choice_lock:
            self.current_sovits = choice
        log.info("current SoVITS weights: %s (%s)", name, version.model)
        return choice

    # ---------------------------------------------------------------- synthesis
    def _chosen(self, gpt: str | None, sovits: str | None) -> tuple[str, str]:
        """The request's models, else the current ones, else upstream's start-up picks (the first
        SoVITS name and the last GPT name of the listing)."""
        sovits_names, gpt_names = self.weight_choices()
        gpt = gpt or (self.current_gpt.name if self.current_gpt else (gpt_names[-1] if gpt_names else None))
        sovits = sovits or (
            self.current_sovits.name if self.current_sovits else (sovits_names[0] if sovits_names else None)
        )
        if gpt is None or sovits is None:
            raise ServiceError(
                "no model selected: POST /init_t2s_weights and /change_sovits_weights first, "
                "or name gpt_weights and sovits_weights in the request",
                code="no_model_selected",
                status_code=409,
            )
        self.registry.resolve_gpt(gpt)  # 404 / 422 now, not in the worker
        return gpt, sovits

    async def synthesize(
        self, job: SynthesisJob, gpt_weights: str | None = None, sovits_weights: str | None = None
    ) -> SynthesisOutput:
        """Queue one job for the worker (with these models, else the current ones) and await its audio.
        The model names are fixed here, so a weight switch while it waits does not affect it."""
        gpt, sovits = self._chosen(gpt_weights, sovits_weights)
        version = self.inspect_sovits(sovits)
        for field_name, lang in (("text_lang", job.text_lang), ("prompt_lang", job.prompt_lang)):
            if version.symbols == "v1" and lang not in V1_LANGUAGES:
                raise InvalidInput(
                    f"{field_name} {lang!r} is not available for v1 models; use one of {', '.join(V1_LANGUAGES)}",
                    code="language_not_supported",
                )
        if version.uses_vocoder and not job.uses_prompt_text:
            raise InvalidInput(
                f"SoVITS {version.model} models need the reference's text: set prompt_text "
                "(ref_text_free / prompt-free synthesis is not available for v3/v4, as upstream)",
                code="prompt_text_required",
            )
        if job.super_sampling and version.model == "v3":
            # Upstream silently answers 24 kHz when the model is missing; a request that asked for
            # 48 kHz gets a clear refusal instead.
            self._check_bandwidth_extension()
        assert self.scheduler is not None, "engine not started"
        try:
            future = self.scheduler.submit(request_id_var.get(), (job, gpt, sovits), batch_key=(gpt, sovits))
        except QueueFull as exc:
            raise Busy(str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
        try:
            return await future
        except SynthesisCancelled:
            raise Cancelled("synthesis was cancelled by /stop") from None
        except TextRejected as exc:
            raise InvalidInput(str(exc), code="no_speakable_text") from None
        except ReferenceAudioError as exc:
            raise InvalidInput(str(exc), code="invalid_reference_audio") from None
        except PromptTextRequired as exc:
            raise InvalidInput(str(exc), code="prompt_text_required") from None

    def _run_batch(self, batch: list[Ticket]) -> None:
        """Worker thread: run each ticket of a batch (same voice) through the pipeline."""
        for ticket in batch:
            job, gpt, sovits = ticket.job
            token = request_id_var.set(ticket.request_id)
            try:
                voice = self._voices.get((gpt, sovits))
                super_sample = job.super_sampling and voice.model_version == "v3"
                extender = self._loaded_bandwidth_extender() if super_sample else None
                result = synthesize(job, voice, should_stop=ticket.should_stop, bandwidth_extender=extender)
                wav = encode_wav(result.audio, result.sample_rate)
                seconds = len(result.audio) / result.sample_rate
                log.info("synthesised %.2f s of audio at %d Hz (seed %d)", seconds, result.sample_rate, result.seed)
                ticket.resolve(SynthesisOutput(wav, result.sample_rate, result.seed, seconds))
            except Exception as exc:  # handed to the request, which maps it to an answer
                expected = ServiceError | SynthesisCancelled | TextRejected | ReferenceAudioError | PromptTextRequired
                if not isinstance(exc, expected):
                    log.exception("synthesis failed")
                ticket.resolve(error=exc)
            finally:
                request_id_var.reset(token)
        # A synthesis frees hundreds of MB of activations; hand them back rather than let the heap grow.
        release_freed_memory()

    def cancel(self, request_id: str | None) -> int:
        return self.scheduler.cancel(request_id) if self.scheduler is not None else 0


def _uses_speaker(model: SoVITSSynthesizer | SoVITSV3) -> bool:
    """v2Pro/v2ProPlus voices need the speaker-verification model."""
    return isinstance(model, SoVITSSynthesizer) and model.config.uses_speaker_embedding
