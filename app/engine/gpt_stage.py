"""The GPT stage: one thread that decodes the rows of every running request together.

Request workers (the scheduler's threads, one request each) reach the GPT part of their pipeline and
call :meth:`GptStage.decode`, which hands the request to this thread and waits. The thread loops: new
requests join their model's :class:`~app.engine.models.t2s_decode.DecodeBatch` (one per loaded GPT
model, its slots allocated once), then every batch with live rows takes one step. Rows join and leave
between steps, so a short request is never stuck behind a long one, and the text frontend and the
decoders of other requests run on their own threads meanwhile.

A request whose rows can never fit the shared slots (more rows than slots, or more positions than a
slot holds) is decoded in a batch of its own, stepped by the same loop. Batches of models that are
no longer loaded vanish with their model (a batch holds its model weakly); under memory pressure the
idle batches of other models are freed before a new one is allocated.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass

import torch

from app.engine.memory import available_bytes
from app.engine.models.t2s import T2SModel
from app.engine.models.t2s_decode import DecodeBatch, DecodeRequest, new_group
from app.engine.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)


@dataclass
class GptStats:
    steps: int = 0  # decode steps taken (over all batches)
    rows_stepped: int = 0  # live rows summed over those steps

    @property
    def mean_rows(self) -> float:
        return self.rows_stepped / self.steps if self.steps else 0.0


class GptStage:
    def __init__(
        self,
        slots: int,
        context: int,
        threads: int = 0,
        cuda_graphs: bool = True,
        telemetry: Telemetry = NO_TELEMETRY,
    ):
        self.slots, self.context = slots, context
        self._telemetry = telemetry
        # Decode steps replayed from CUDA graphs when the model is on CUDA; False: always eager.
        self._graphs: bool | None = None if cuda_graphs else False
        self._threads = threads  # PyTorch CPU threads of the GPT thread (0: PyTorch's default)
        self._cond = threading.Condition()
        self._inbox: list = []  # (model, group) handed over by request threads
        self._batches: weakref.WeakKeyDictionary[T2SModel, DecodeBatch] = weakref.WeakKeyDictionary()
        self._private: list[DecodeBatch] = []
        self._closed = False
        self._retired = GptStats()  # counts of batches already dropped
        self._thread = threading.Thread(target=self._loop, name="gpt-stage", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ request threads

    def decode(self, model: T2SModel, request: DecodeRequest) -> list[torch.Tensor]:
        """Decode ``request`` beside every other running request; blocks until its rows are done.
        Raises what ``T2SModel.generate`` raises (``DecodeCancelled`` when ``should_stop`` fires)."""
        group = new_group(model, request)  # checks and embeds the phones in the caller's thread
        done = threading.Event()
        group.on_finished = done.set
        with self._cond:
            if self._closed:
                raise RuntimeError("the GPT stage is closed")
            self._inbox.append((model, group))
            self._cond.notify()
        while not done.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError("the GPT stage stopped")
        return group.tokens()

    def live_rows(self) -> int:
        """Rows decoding now, over every batch (read from another thread: a snapshot)."""
        return sum(b.live_rows() for b in (*list(self._batches.values()), *list(self._private)))

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def stats(self) -> GptStats:
        batches = [*self._batches.values(), *self._private]
        return GptStats(
            steps=self._retired.steps + sum(b.steps for b in batches),
            rows_stepped=self._retired.rows_stepped + sum(b.rows_stepped for b in batches),
        )

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the GPT thread

    def _busy(self) -> bool:
        return any(b.busy for b in (*self._batches.values(), *self._private))

    def _loop(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)  # per thread: OpenMP's thread count is a thread's own
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and not self._inbox and not self._busy():
                        self._cond.wait()
                    if self._closed:
                        arrivals, self._inbox = self._inbox, []
                        for _, group in arrivals:
                            group.finish(RuntimeError("the GPT stage is closed"))
                        for batch in (*self._batches.values(), *self._private):
                            batch.fail_all(RuntimeError("the GPT stage is closed"))
                        return
                    arrivals, self._inbox = self._inbox, []
                self._place_all(arrivals)
                del arrivals  # this frame must not keep a model alive (batches hold theirs weakly)
                began, before = time.perf_counter(), self._counts()
                for batch in [*self._batches.values(), *self._private]:
                    if batch.busy:
                        self._step(batch)
                for batch in [b for b in self._private if not b.busy]:
                    self._retire(batch)
                    self._private.remove(batch)
                self._report(began, before)

    def _place_all(self, arrivals: list) -> None:
        for model, group in arrivals:
            self._place(model, group)

    def _place(self, model: T2SModel, group) -> None:
        batch = self._batches.get(model)
        if batch is None:
            self._make_room(model)
            batch = self._batches[model] = DecodeBatch(model, self.slots, self.context, self._graphs)
            log.info("GPT slots allocated: %d x %d positions", self.slots, self.context)
        if batch.fits(group):
            batch.add(group)
            return
        own = DecodeBatch.sized_for(model, group, self._graphs)
        own.add(group)
        self._private.append(own)
        log.info("a request larger than the shared GPT slots decodes in a batch of its own")

    def _make_room(self, model: T2SModel) -> None:
        """Under memory pressure (less free than the new slots need, with a margin), free the slots
        of other models that have no live rows. Slots of loaded models are otherwise kept: switching
        between two voices must not reallocate GBs on every request."""
        weight = model.to_logits.weight
        config = model.config
        needed = 2 * config.num_layers * self.slots * self.context * config.dim * weight.element_size()
        free = available_bytes(str(weight.device))
        if free is not None and free >= 2 * needed:
            return
        for other, idle in list(self._batches.items()):
            if not idle.busy:
                self._retire(idle)
                del self._batches[other]
                log.info("freed the GPT slots of an idle model (memory pressure)")

    def _step(self, batch: DecodeBatch) -> None:
        try:
            batch.step()
        except Exception as exc:  # a failed step ends the requests in it, not the stage
            log.exception("GPT decode step failed")
            batch.fail_all(exc)

    def _counts(self) -> tuple[int, int]:
        """(steps, rows stepped) so far, retired batches included."""
        stats = self.stats()
        return stats.steps, stats.rows_stepped

    def _report(self, began: float, before: tuple[int, int]) -> None:
        """One loop iteration's work and the slots' state, to the telemetry (per step, not per token)."""
        steps, rows = self._counts()
        if steps > before[0]:
            self._telemetry.gpt_decoded(rows - before[1], steps - before[0], time.perf_counter() - began)
        batches = [*self._batches.values(), *self._private]
        self._telemetry.gpt_slots(sum(b.live_rows() for b in batches), sum(b.capacity for b in batches))

    def _retire(self, batch: DecodeBatch) -> None:
        self._retired.steps += batch.steps
        self._retired.rows_stepped += batch.rows_stepped
