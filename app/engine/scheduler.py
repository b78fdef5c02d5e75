"""The engine worker: a bounded queue of synthesis tickets, one worker thread, cancellation.

Requests arrive on the event loop; synthesis is CPU/GPU-bound PyTorch work, so it runs on a worker
thread and the request awaits a future. The queue is bounded: when it is full the caller gets
``QueueFull`` (HTTP 429 with Retry-After: the queue's drain time at the recent pace) instead of
waiting forever.

Concurrency: ``workers`` threads each take a *batch* of tickets at a time (``_take_batch``): the first
ticket and whatever queued tickets share its ``batch_key``, up to ``max_batch``. With continuous
batching the engine runs many workers of one ticket each; their GPT work meets in the GPT stage, which
decodes the rows of all of them together. With it off, one worker runs one request at a time.

Cancellation (``/stop``): each ticket has an event; the runner polls ``ticket.should_stop`` once per
decode step. Cancelling a queued ticket answers it at once; cancelling a running one ends it within a
step. Either way the request gets ``Cancelled`` and the worker keeps serving. A request whose client
went away is withdrawn the same way (``withdraw``), so abandoned work does not occupy the worker.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine.errors import Busy, Cancelled
from app.engine.telemetry import NO_TELEMETRY, Telemetry
from app.logging_setup import request_id_var

log = logging.getLogger(__name__)


class QueueFull(Busy):
    def __init__(self, retry_after_s: int):
        super().__init__(
            f"the synthesis queue is full; retry in about {retry_after_s} s", retry_after_s=retry_after_s
        )


@dataclass(eq=False)
class Ticket:
    request_id: str
    job: Any
    batch_key: Hashable
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    cost: float = 1.0
    enqueued_at: float = field(default_factory=time.monotonic)
    _cancel: threading.Event = field(default_factory=threading.Event)

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the outcome back to the event loop (safe to call from the worker thread, once)."""

        def settle():
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(settle)


# A runner gets a batch of tickets and must resolve every one of them.
Runner = Callable[[Sequence[Ticket]], None]


class Scheduler:
    def __init__(
        self,
        runner: Runner,
        max_queue: int = 16,
        max_batch: int = 1,
        name: str = "synthesis",
        workers: int = 1,
        telemetry: Telemetry = NO_TELEMETRY,
    ):
        self._runner = runner
        self._telemetry = telemetry
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._workers = workers
        self._queue: collections.deque[Ticket] = collections.deque()
        self._running: dict[Ticket, float] = {}  # running ticket → when it was taken (monotonic seconds)
        self._cond = threading.Condition()
        self._closed = False
        self._recent_work: collections.deque[tuple[float, float]] = collections.deque(maxlen=20)  # (s, cost)
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # ---------------------------------------------------------------- event-loop side
    def submit(
        self, request_id: str, job: Any, batch_key: Hashable = None, cost: float = 1.0
    ) -> asyncio.Future:
        return self.enqueue(request_id, job, batch_key, cost).future

    def enqueue(self, request_id: str, job: Any, batch_key: Hashable = None, cost: float = 1.0) -> Ticket:
        """Queue a job; the ticket's future answers it. ``withdraw(ticket)`` abandons it. ``cost``: the
        job's size in any unit that work time is roughly proportional to (the engine: text length)."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(request_id, job, batch_key, loop, loop.create_future(), cost=max(cost, 1e-6))
        with self._cond:
            if self._closed or len(self._queue) >= self._max_queue:
                self._telemetry.rejected()
                raise QueueFull(5 if self._closed else self._retry_after())
            self._queue.append(ticket)
            self._report()
            self._cond.notify()
        log.info("queued synthesis (queue length %d)", len(self._queue))
        return ticket

    def withdraw(self, ticket: Ticket) -> bool:
        """The caller gave up (its client went away): stop its ticket as ``/stop`` would. True if
        there was work to stop."""
        queued, running = self._stop(lambda t: t is ticket)
        if queued or running:
            self._telemetry.cancelled("client_gone", 1)
            log.info("client went away: %s synthesis cancelled", "queued" if queued else "running")
        return bool(queued or running)

    def alive(self) -> bool:
        """Every worker thread is running (readiness)."""
        return all(t.is_alive() for t in self._threads) and not self._closed

    def cancel(self, request_id: str | None = None) -> int:
        """Cancel the matching queued and running tickets (all of them without an id)."""
        queued, running = self._stop(lambda t: request_id is None or t.request_id == request_id)
        stopped = len(queued) + len(running)
        if stopped:
            self._telemetry.cancelled("stop", stopped)
            log.info(
                "cancelled %d synthesis request(s)%s", stopped, f" for {request_id}" if request_id else ""
            )
        return stopped

    def _stop(self, matches: Callable[[Ticket], bool]) -> tuple[list[Ticket], list[Ticket]]:
        """Stop the matching tickets: queued ones leave the queue and are answered ``Cancelled`` at
        once; running ones are flagged, and the runner ends them at its next decode step."""
        with self._cond:
            running = [t for t in self._running if matches(t)]
            queued = [t for t in self._queue if matches(t)]
            for ticket in queued:
                self._queue.remove(ticket)
            if queued:
                self._report()
        for ticket in (*running, *queued):
            ticket.cancel()
        for ticket in queued:
            ticket.resolve(error=Cancelled("synthesis was cancelled before it started"))
        return queued, running

    def pending(self) -> tuple[int, int]:
        """(queued, running) counts."""
        with self._cond:
            return len(self._queue), len(self._running)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.cancel()
        for thread in self._threads:
            thread.join(timeout)

    # ---------------------------------------------------------------- worker side
    def _report(self) -> None:
        """Tell the telemetry the queue's new state (the caller holds the lock)."""
        self._telemetry.queue_changed(len(self._queue), len(self._running))

    def _retry_after(self) -> int:
        """Seconds until the queue has drained at the recent pace: the queued work (sum of costs)
        x recent seconds per unit of cost / requests served at once. Weighing by cost keeps a burst of
        short requests after a few long ones from being told to wait for minutes. Without history,
        the running request's age is the best guess available."""
        queued = sum(t.cost for t in self._queue)
        if self._recent_work:
            seconds = sum(s for s, _ in self._recent_work)
            cost = sum(c for _, c in self._recent_work)
            estimate = queued * seconds / cost
        else:
            age = time.monotonic() - min(self._running.values()) if self._running else 0.0
            estimate = len(self._queue) * max(1.0, age)
        return max(1, math.ceil(estimate / max(1, self._max_batch * self._workers)))

    def _take_batch(self) -> list[Ticket]:
        """Block for the next ticket, then add queued tickets with the same batch key."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return []
            first = self._queue.popleft()
            batch = [first]
            for ticket in list(self._queue):
                if len(batch) >= self._max_batch:
                    break
                if ticket.batch_key == first.batch_key and first.batch_key is not None:
                    self._queue.remove(ticket)
                    batch.append(ticket)
            now = time.monotonic()
            self._running.update((t, now) for t in batch)
            self._report()
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            token = request_id_var.set(batch[0].request_id)
            try:
                self._runner(batch)
            except BaseException as exc:  # the runner failed as a whole: answer everyone, keep serving
                log.exception("synthesis worker error")
                for ticket in batch:
                    ticket.resolve(error=exc)
            finally:
                request_id_var.reset(token)
                with self._cond:
                    started = min(self._running.pop(t) for t in batch)
                    self._report()
                    # Seconds and cost of each batch: the pace Retry-After is estimated from.
                    self._recent_work.append((time.monotonic() - started, sum(t.cost for t in batch)))
