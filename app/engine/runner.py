"""The model runner: the synthesis worker's side of a request. It gets a batch of tickets from the
scheduler, each carrying a job and the voice (already loaded by the model manager) that runs it, and
resolves every ticket with its audio or its error. It never loads a model and never sees HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.engine.errors import EngineError
from app.engine.jobs import SynthesisJob
from app.engine.memory import release_freed_memory
from app.engine.models.bandwidth_extension import BandwidthExtender
from app.engine.pipeline import ALONE, Stages, synthesize
from app.engine.scheduler import Ticket
from app.engine.telemetry import NO_TELEMETRY, Telemetry
from app.engine.voice import Voice
from app.logging_setup import request_id_var

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """A queued job with everything it runs on."""

    job: SynthesisJob
    voice: Voice
    bandwidth_extender: BandwidthExtender | None  # v3 super_sampling only
    on_chunk: Callable[[np.ndarray], None] | None = None  # streaming: called with each int16 chunk


class Runner:
    def __init__(
        self, noise_scale: float, stages: Stages = ALONE, threads: int = 0, telemetry: Telemetry = NO_TELEMETRY
    ):
        self.noise_scale = noise_scale  # the SoVITS decoder's sampling noise (GSV_DECODER_NOISE_SCALE)
        self.stages = stages  # how a request's stages meet other requests' (continuous batching or not)
        self.threads = threads  # PyTorch CPU threads of each worker thread (0: PyTorch's default)
        self.telemetry = telemetry

    def __call__(self, batch: Sequence[Ticket]) -> None:
        """Run each ticket of a batch through the pipeline, one after another (with continuous
        batching, every worker thread gets batches of one and meets the others in the GPT stage)."""
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # per thread: OpenMP's thread count is a thread's own
        for ticket in batch:
            item: WorkItem = ticket.job
            token = request_id_var.set(ticket.request_id)
            try:
                result = synthesize(
                    item.job,
                    item.voice,
                    noise_scale=self.noise_scale,
                    should_stop=ticket.should_stop,
                    bandwidth_extender=item.bandwidth_extender,
                    stages=self.stages,
                    on_chunk=item.on_chunk,
                )
                self.telemetry.synthesized(result.stage_seconds)
                ticket.resolve(result)
            except Exception as exc:  # handed to the request, which answers it
                if not isinstance(exc, EngineError):
                    log.exception("synthesis failed")
                ticket.resolve(error=exc)
            finally:
                request_id_var.reset(token)
        # A synthesis frees hundreds of MB of activations; hand them back rather than let the heap grow.
        release_freed_memory()
