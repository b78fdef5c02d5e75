"""The engine: the one object every client surface talks to. It wires the pieces together and holds
no rule of its own:

    job -> planning (checks) -> model manager (the voice, loaded off the worker) -> scheduler (queue,
    cancellation, worker threads) -> runner (pipeline on a worker thread; its GPT rows go to the GPT
    stage, which decodes the rows of all running requests together) -> models -> audio

Created once per app from an :class:`EngineConfig` (the service builds it from its settings); nothing
below it reads settings, and nothing here knows about HTTP: refusals are ``app.engine.errors`` kinds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.engine import planning
from app.engine.gpt_stage import GptStage
from app.engine.jobs import SynthesisJob
from app.engine.model_manager import GptChoice, ModelManager, SovitsChoice
from app.engine.models.t2s_decode import decode_alone
from app.engine.pipeline import ALONE, DEFAULT_NOISE_SCALE, Stages, SynthesisResult
from app.engine.runner import Runner, WorkItem
from app.engine.scheduler import Scheduler, Ticket
from app.engine.telemetry import NO_TELEMETRY, Telemetry
from app.engine.text import zh
from app.engine.text.cut import to_cut
from app.engine.text.en import lexicon as en_lexicon
from app.engine.text.preprocess import Segment, preprocess
from app.logging_setup import request_id_var

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    weights_root: Path
    device: str = "auto"  # auto: CUDA when available
    half: bool = False  # half precision on CUDA (ignored on CPU)
    max_loaded_models: int = 2  # loaded GPT models and loaded SoVITS models kept each
    max_queue: int = 16  # synthesis requests waiting at most
    decoder_noise_scale: float = DEFAULT_NOISE_SCALE  # 0 reproduces the conformance corpus
    torch_threads: int = 0  # 0: PyTorch's default
    # Continuous batching: up to gpt_slots requests run at once and their GPT rows share every decode
    # step; False runs one request at a time (for comparison, and as a fallback).
    continuous_batching: bool = True
    gpt_slots: int = 16  # rows decoded together per loaded GPT model
    gpt_context: int = 2048  # positions per slot (phones + reference codes + generated tokens)
    cuda_graphs: bool = True  # GPT decode steps replayed from CUDA graphs (on CUDA only)
    # Per request: auxiliary clips at most, and the memory its clips may take to decode.
    limits: planning.RequestLimits = field(default_factory=planning.RequestLimits)


@dataclass(frozen=True)
class AudioStream:
    """A synthesis answered in chunks: int16 mono audio at ``sample_rate``, made with ``seed``."""

    sample_rate: int
    seed: int
    chunks: AsyncIterator[np.ndarray]


@dataclass
class EngineStatus:
    ready: bool
    device: str
    weights_root: str
    problems: list[str] = field(default_factory=list)


def resolve_device(setting: str) -> str:
    """The torch device for a ``device`` setting (``auto`` picks CUDA when available)."""
    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


class Engine:
    def __init__(self, config: EngineConfig, telemetry: Telemetry = NO_TELEMETRY):
        """``telemetry`` hears what the engine does, for monitoring (the service: Prometheus metrics)."""
        self.config = config
        self.telemetry = telemetry
        self.device = resolve_device(config.device)
        self.dtype = torch.float16 if config.half and self.device.startswith("cuda") else torch.float32
        self.models = ModelManager(
            config.weights_root, self.device, self.dtype, config.max_loaded_models, telemetry
        )
        self.scheduler: Scheduler | None = None
        self.gpt_stage: GptStage | None = None

    def start(self) -> None:
        root = Path(self.config.weights_root)
        log.info(
            "engine starting: device=%s dtype=%s weights_root=%s", self.device, self.dtype, root.resolve()
        )
        if not root.is_dir():
            log.warning(
                "weights root %s does not exist; no model can be loaded until it does", root.resolve()
            )
        # Chinese polyphones: g2pW when its model is in the weights root, else upstream's pypinyin path.
        zh.configure_from_weights_root(root)
        # English: upstream's own CMU dictionaries when the weights root is an upstream checkout.
        en_lexicon.configure_from_weights_root(root)
        # PyTorch's CPU thread count is per thread (OpenMP), so it is set in each worker thread.
        threads = self.config.torch_threads or torch.get_num_threads()
        stages, workers, worker_threads = ALONE, 1, threads
        if not self.config.cuda_graphs:
            stages = Stages(gpt=lambda model, request: decode_alone(model, request, graphs=False))
        stages = Stages(gpt=self._reported(stages.gpt))
        if self.config.continuous_batching:
            # The GPT thread and one other stage (frontend or decoder, which take turns) compute at
            # once, each with every CPU thread. Measured on 2 cores (benchmarks/serving.py, 16 clients):
            # halving the threads was 40% slower, two side lanes of one thread each 4% faster. Sizing
            # each lane's threads by the load (all when alone, one each side by side) was ~5% faster,
            # but the thread count changes float rounding (matmuls and convolutions split their work
            # by thread), so a seeded request's tokens and audio would depend on what ran beside it.
            self.gpt_stage = GptStage(
                self.config.gpt_slots, self.config.gpt_context, threads, self.config.cuda_graphs, self.telemetry
            )
            # Looked up per call, so that the stage's ``decode`` can be wrapped (the conformance
            # recorder does) without rebuilding the runner.
            stages = Stages(
                gpt=lambda model, request: self.gpt_stage.decode(model, request), turn=threading.Lock()
            )
            workers = self.config.gpt_slots
        runner = Runner(self.config.decoder_noise_scale, stages, worker_threads, self.telemetry)
        self.scheduler = Scheduler(
            runner, max_queue=self.config.max_queue, workers=workers, telemetry=self.telemetry
        )
        log.info(
            "continuous batching %s (%d request(s) at once)",
            "on" if self.config.continuous_batching else "off", workers,
        )  # fmt: skip

    def _reported(self, decode: Callable) -> Callable:
        """One request at a time: its GPT decode, reported as the GPT stage reports its steps. The
        decode is not seen step by step here: a parallel request steps until its longest row ends,
        a sequential one row after another."""

        def decode_reported(model, request):
            began = time.perf_counter()
            rows = decode(model, request)
            lengths = [int(r.shape[0]) for r in rows]
            steps = max(lengths, default=0) if request.parallel else sum(lengths)
            self.telemetry.gpt_decoded(sum(lengths), steps, time.perf_counter() - began)
            return rows

        return decode_reported

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        if self.gpt_stage is not None:
            self.gpt_stage.close()
        self.models.close()
        log.info("engine stopped")

    def status(self) -> EngineStatus:
        """Ready when the worker runs and the current models can be loaded (or are)."""
        root = Path(self.config.weights_root)
        if not root.is_dir():
            problems = [f"weights root {root} does not exist"]
        else:
            problems = self.models.problems()
        if self.scheduler is None or not self.scheduler.alive():
            problems.append("the synthesis worker is not running")
        if self.gpt_stage is not None and not self.gpt_stage.alive():
            problems.append("the GPT stage is not running")
        return EngineStatus(not problems, self.device, str(root), problems)

    # ---------------------------------------------------------------- text
    def cut(self, text: str, method: str) -> str:
        return to_cut(text, method)

    def phonemize(self, text: str, lang: str, method: str, version: str) -> list[Segment]:
        """The segments the models of ``version`` would receive for ``text`` (no BERT features)."""
        planning.check_language(lang, "text_lang", version)
        planning.check_cut_method(method)
        return preprocess(text, lang, method, version)

    # ---------------------------------------------------------------- weights
    def weight_choices(self) -> tuple[list[str], list[str]]:
        return self.models.weight_choices()

    def select_gpt(self, name: str) -> GptChoice:
        return self.models.select_gpt(name)

    def select_sovits(self, name: str) -> SovitsChoice:
        return self.models.select_sovits(name)

    def super_sampling_available(self, model_version: str) -> bool:
        """super_sampling works for this model: a v3 model, with the AP-BWE files installed."""
        return model_version == "v3" and not self.models.super_sampling_missing()

    # ---------------------------------------------------------------- synthesis
    async def synthesize(
        self, job: SynthesisJob, gpt_weights: str | None = None, sovits_weights: str | None = None
    ) -> SynthesisResult:
        """Check the job, get its voice (with these models, else the current ones), queue it for the
        worker and await its audio. The voice is fixed here, so a weight switch while it waits does
        not affect it; loading it never holds up the worker."""
        ticket = self._enqueue(await self._prepare(job, gpt_weights, sovits_weights))
        try:
            result = await ticket.future
            self.telemetry.audio_produced(result.seconds)
            return result
        except asyncio.CancelledError:  # the caller gave up (its client went away): free the worker
            self.scheduler.withdraw(ticket)
            raise

    async def stream(
        self, job: SynthesisJob, gpt_weights: str | None = None, sovits_weights: str | None = None
    ) -> AudioStream:
        """Like ``synthesize``, but the audio comes as int16 chunks while it is made (the job's
        ``streaming_mode`` says how it is cut; mode 0 gives one chunk). The seed and the sample rate
        are fixed before the first chunk. Closing the chunk iterator early withdraws the request."""
        asked = time.perf_counter()
        if job.requested_seed == -1:  # drawn now, so that it is known before any audio
            job = dataclasses.replace(job, seed=planning.resolve_seed(-1), keep_random=False)
        work = await self._prepare(job, gpt_weights, sovits_weights)
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[np.ndarray] = asyncio.Queue()
        work = dataclasses.replace(work, on_chunk=lambda c: loop.call_soon_threadsafe(arrived.put_nowait, c))
        ticket = self._enqueue(work)
        extender = work.bandwidth_extender
        rate = extender.cfg.output_rate if extender is not None else work.voice.sample_rate
        return AudioStream(rate, job.requested_seed, self._chunks(ticket, arrived, rate, asked))

    async def _chunks(
        self, ticket: Ticket, arrived: asyncio.Queue, rate: int, asked: float
    ) -> AsyncIterator[np.ndarray]:
        """A ticket's chunks as they arrive; at its end, its error (if any) is raised. ``asked``:
        when the stream was asked for (perf_counter), to report the time to its first audio."""
        first = True

        def handed_out(chunk: np.ndarray) -> np.ndarray:
            nonlocal first
            if first and chunk.shape[0]:
                first = False
                self.telemetry.first_audio(time.perf_counter() - asked)
            self.telemetry.audio_produced(chunk.shape[0] / rate)
            return chunk

        try:
            while True:
                next_chunk = asyncio.ensure_future(arrived.get())
                await asyncio.wait({next_chunk, ticket.future}, return_when=asyncio.FIRST_COMPLETED)
                if next_chunk.done():
                    yield handed_out(next_chunk.result())
                    continue
                next_chunk.cancel()
                # Chunks are handed over before the outcome (one FIFO of loop callbacks): drain them.
                while not arrived.empty():
                    yield handed_out(arrived.get_nowait())
                ticket.future.result()
                return
        finally:
            if not ticket.future.done():  # the consumer stopped early (client gone): free the worker
                self.scheduler.withdraw(ticket)
                ticket.future.cancel()  # nobody will read its outcome

    async def _prepare(self, job: SynthesisJob, gpt_weights: str | None, sovits_weights: str | None) -> WorkItem:
        """The checks that need no worker, the voice (loaded off the worker) and the job's extras."""
        gpt, sovits = self.models.chosen(gpt_weights, sovits_weights)
        self.models.inspect_sovits(sovits)  # a LoRA without its base: refused before anything loads
        job = planning.check_request(job, self.config.limits)
        voice = await self.models.voice_async(gpt, sovits)
        # The loaded model knows its version for sure (a small plain v2 file reads as v1 by size).
        missing = self.models.super_sampling_missing()
        planning.check_against_model(job, voice.model_version, super_sampling_missing=missing)
        extender = None
        if planning.super_samples(job, voice.model_version):
            extender = await self.models.bandwidth_extender_async()
        return WorkItem(job, voice, extender)

    def _enqueue(self, work: WorkItem) -> Ticket:
        assert self.scheduler is not None, "engine not started"
        # Work time grows with the text (tokens to decode), so its length is the job's cost.
        return self.scheduler.enqueue(request_id_var.get(), work, batch_key=work.voice.name, cost=len(work.job.text))

    def cancel(self, request_id: str | None) -> int:
        return self.scheduler.cancel(request_id) if self.scheduler is not None else 0
