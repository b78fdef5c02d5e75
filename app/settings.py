"""Service settings: environment variables ``GSV_*`` (or a ``.env`` file), overridable from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engine.engine import EngineConfig
from app.engine.planning import RequestLimits
from app.store.db import sqlite_url


class ModelPair(BaseModel):
    """The GPT and SoVITS weights an OpenAI ``model`` alias stands for (None: the current one)."""

    model_config = ConfigDict(extra="forbid")

    gpt: str | None = None
    sovits: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GSV_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 in containers).")
    port: int = Field(9872, ge=1, le=65535, description="TCP port (upstream's web UI uses 9872).")
    weights_root: Path = Field(
        Path("weights"),
        description="Folder laid out like an upstream GPT-SoVITS install (see weights/README.md).",
    )
    ref_audio_root: Path | None = Field(
        None,
        description="Folder whose files /inference accepts by name instead of an upload (unset: uploads only).",
    )
    demo_if_empty: bool = Field(
        False,
        description="When the weights root holds no model, write demo weights (noise, not speech) into it.",
    )
    fetch_weights: bool = Field(
        True,
        description="With demo_if_empty (make run): when the weights root holds no model, first try to fetch "
        "upstream's pretrained models from the Hugging Face hub (a 3 s reachability check); demo weights only "
        "when that fails. false: straight to demo weights.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available.")
    half: bool = Field(False, description="Run models in half precision on CUDA (ignored on CPU).")
    torch_threads: int = Field(
        0, ge=0, description="CPU threads for PyTorch (0: PyTorch's default). 1 helps on busy small machines."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_text_chars: int = Field(
        100_000, ge=1, description="Longest text accepted by text endpoints; longer input gets 413."
    )
    max_loaded_models: int = Field(
        2, ge=1, description="Loaded GPT models and loaded SoVITS models kept each (least recently used go)."
    )
    max_queue: int = Field(16, ge=1, description="Synthesis requests waiting at most; more get 429.")
    decoder_noise_scale: float = Field(
        0.5,
        ge=0.0,
        le=10.0,
        description="SoVITS decoder sampling noise (upstream: 0.5). 0 makes synthesis reproduce the "
        "conformance corpus, upstream's own output with its noise off.",
    )
    continuous_batching: bool = Field(
        True,
        description="Run many requests at once, their GPT rows sharing every decode step. false: one "
        "request at a time (for comparison, and as a fallback).",
    )
    gpt_slots: int = Field(
        16, ge=1, le=256, description="Rows decoded together per loaded GPT model; also requests run at once."
    )
    gpt_context: int = Field(
        2048,
        ge=256,
        le=16384,
        description="Positions per GPT slot (phones + reference codes + generated tokens). The slots' "
        "memory is gpt_slots x gpt_context x layers x 2 x hidden size, allocated once per GPT model.",
    )
    cuda_graphs: bool = Field(
        True,
        description="On CUDA, replay each GPT decode step shape from a CUDA graph captured once "
        "(ignored on CPU). false: every step runs eagerly.",
    )
    allow_control: bool = Field(
        False,
        description="Let api_v2's /control restart or exit the service (off: 403). Only for a service "
        "nobody untrusted can reach.",
    )
    data_dir: Path = Field(
        Path("data"),
        description="Folder of the service's own state: the SQLite database of stored voices (unless "
        "database_url is set).",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database of stored voices (e.g. postgresql+psycopg://user@host/gsv); "
        "unset: a SQLite file in data_dir. Replicas sharing it share their voices.",
    )
    openai_models: dict[str, ModelPair] = Field(
        default_factory=lambda: {"tts-1": ModelPair(), "tts-1-hd": ModelPair()},
        description="The model names /v1/audio/speech accepts besides weight names: a JSON object alias → "
        '{"gpt": name|null, "sovits": name|null}; a null (or missing) name is the voice\'s, else the current model.',
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Largest request body (JSON or uploads) accepted; larger gets 413.",
    )
    max_aux_refs: int = Field(
        8, ge=0, le=64, description="Auxiliary reference clips one request may send (or a voice may store)."
    )
    reference_memory_mb: int = Field(
        256,
        ge=16,
        description="Memory one request's reference clips may take to decode and prepare, in MiB, checked "
        "from their headers before decoding; more gets 413 reference_budget_exceeded.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a request body may take to arrive after its headers (slower uploads get 408).",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a client may take to send a request's headers (the connection is closed)."
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest request head (request line and headers together); more gets 431."
    )
    max_header_count: int = Field(100, ge=8, description="Most headers a request may have; more get 431.")
    web_ui: bool = Field(
        True,
        description="Serve upstream's fast web UI at / and its gradio API (gradio_client); false: API only.",
    )


def store_url(settings: Settings) -> str:
    """The database the store uses: ``database_url``, or the SQLite file under ``data_dir``."""
    return settings.database_url or sqlite_url(settings.data_dir)


def engine_config(settings: Settings) -> EngineConfig:
    """What the engine needs of the settings (it never reads them itself)."""
    return EngineConfig(
        weights_root=settings.weights_root,
        device=settings.device,
        half=settings.half,
        max_loaded_models=settings.max_loaded_models,
        max_queue=settings.max_queue,
        decoder_noise_scale=settings.decoder_noise_scale,
        torch_threads=settings.torch_threads,
        continuous_batching=settings.continuous_batching,
        gpt_slots=settings.gpt_slots,
        gpt_context=settings.gpt_context,
        cuda_graphs=settings.cuda_graphs,
        limits=request_limits(settings),
    )


def request_limits(settings: Settings) -> RequestLimits:
    return RequestLimits(
        max_aux_refs=settings.max_aux_refs, reference_budget_bytes=settings.reference_memory_mb * 1024 * 1024
    )
