"""The worker queue: order, bounded size, cancellation of queued and running tickets, batching shape."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.engine.errors import Cancelled as SynthesisCancelled
from app.engine.scheduler import QueueFull, Scheduler


def make_runner(step_s: float = 0.01, steps: int = 5, gate: threading.Event | None = None, seen=None):
    """Runs each ticket for a few polled 'decode steps'; answers the job doubled."""

    def run(batch):
        if seen is not None:
            seen.append([t.job for t in batch])
        for ticket in batch:
            if gate is not None:
                gate.wait(5)
            for _ in range(steps):
                if ticket.should_stop():
                    ticket.resolve(error=SynthesisCancelled("stopped"))
                    break
                time.sleep(step_s)
            else:
                ticket.resolve(ticket.job * 2)

    return run


def test_results_come_back_in_order():
    async def main():
        scheduler = Scheduler(make_runner(), max_queue=8)
        try:
            futures = [scheduler.submit(f"r{i}", i) for i in range(4)]
            return await asyncio.gather(*futures)
        finally:
            scheduler.close()

    assert asyncio.run(main()) == [0, 2, 4, 6]


def test_full_queue_is_refused_with_a_retry_hint():
    gate = threading.Event()

    async def main():
        scheduler = Scheduler(make_runner(gate=gate), max_queue=2)
        try:
            first = scheduler.submit("a", 1)
            await asyncio.sleep(0.05)  # the worker takes "a" and waits at the gate
            scheduler.submit("b", 2)
            scheduler.submit("c", 3)
            with pytest.raises(QueueFull) as info:
                scheduler.submit("d", 4)
            assert info.value.retry_after_s >= 1
            gate.set()
            return await first
        finally:
            gate.set()
            scheduler.close()

    assert asyncio.run(main()) == 2


def test_cancel_one_running_request_by_id_within_a_step():
    async def main():
        scheduler = Scheduler(make_runner(step_s=0.02, steps=500), max_queue=4)
        try:
            running = scheduler.submit("long", 1)
            other = scheduler.submit("other", 5)
            await asyncio.sleep(0.1)
            started = time.monotonic()
            assert scheduler.cancel("long") == 1
            with pytest.raises(SynthesisCancelled):
                await running
            assert time.monotonic() - started < 1.0
            scheduler.cancel("other")  # would otherwise run 500 steps
            with pytest.raises(SynthesisCancelled):
                await other
            # the worker keeps serving
            fast = Scheduler(make_runner(), max_queue=1)
            try:
                return await fast.submit("next", 21)
            finally:
                fast.close()
        finally:
            scheduler.close()

    assert asyncio.run(main()) == 42


def test_cancel_without_id_stops_running_and_queued():
    async def main():
        scheduler = Scheduler(make_runner(step_s=0.02, steps=500), max_queue=4)
        try:
            futures = [scheduler.submit(f"r{i}", i) for i in range(3)]
            await asyncio.sleep(0.1)
            assert scheduler.cancel() == 3
            results = await asyncio.gather(*futures, return_exceptions=True)
            assert all(isinstance(r, SynthesisCancelled) for r in results)
            assert scheduler.pending()[0] == 0
            return True
        finally:
            scheduler.close()

    assert asyncio.run(main())


def test_service_keeps_working_after_a_cancel():
    async def main():
        scheduler = Scheduler(make_runner(step_s=0.02, steps=50), max_queue=4)
        try:
            first = scheduler.submit("x", 1)
            await asyncio.sleep(0.05)
            scheduler.cancel()
            await asyncio.gather(first, return_exceptions=True)
            return await scheduler.submit("y", 3)
        finally:
            scheduler.close()

    assert asyncio.run(main()) == 6


def test_runner_crash_answers_the_batch_and_the_worker_survives():
    calls = []

    def runner(batch):
        calls.append(len(batch))
        if batch[0].job == "boom":
            raise RuntimeError("model exploded")
        for t in batch:
            t.resolve("ok")

    async def main():
        scheduler = Scheduler(runner, max_queue=4)
        try:
            with pytest.raises(RuntimeError):
                await scheduler.submit("a", "boom")
            return await scheduler.submit("b", "fine")
        finally:
            scheduler.close()

    assert asyncio.run(main()) == "ok"


def test_queued_tickets_with_the_same_key_are_taken_as_one_batch():
    gate = threading.Event()
    seen: list[list[int]] = []

    async def main():
        scheduler = Scheduler(make_runner(gate=gate, steps=1, seen=seen), max_queue=8, max_batch=4)
        try:
            futures = [scheduler.submit("first", 0, batch_key="other")]
            await asyncio.sleep(0.05)  # worker holds "first" at the gate
            futures += [scheduler.submit(f"r{i}", i, batch_key="voice-a") for i in range(1, 4)]
            futures.append(scheduler.submit("r4", 4, batch_key="voice-b"))
            gate.set()
            return await asyncio.gather(*futures)
        finally:
            gate.set()
            scheduler.close()

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    assert seen == [[0], [1, 2, 3], [4]]


def _sleeping_runner(seconds_per_cost: float):
    """Each ticket takes ``cost`` x ``seconds_per_cost`` (its job is its cost), in polled steps."""

    def run(batch):
        for ticket in batch:
            deadline = time.monotonic() + ticket.job * seconds_per_cost
            while time.monotonic() < deadline:
                if ticket.should_stop():
                    ticket.resolve(error=SynthesisCancelled("stopped"))
                    break
                time.sleep(0.005)
            else:
                ticket.resolve(ticket.job)

    return run


def _retry_hint_and_drain(seconds_per_cost: float, max_queue: int, history: list[int]) -> tuple[int, float]:
    """Run jobs of the ``history`` costs one by one, then one job of cost 5 and a full queue of them.
    Returns the Retry-After the next submission is refused with, and how long the queue took to drain."""

    async def main():
        scheduler = Scheduler(_sleeping_runner(seconds_per_cost), max_queue=max_queue)
        try:
            for i, cost in enumerate(history):
                await scheduler.submit(f"history{i}", cost, cost=cost)
            running = scheduler.submit("run", 5, cost=5)
            await asyncio.sleep(0.02)  # the worker takes it
            queued = [scheduler.submit(f"q{i}", 5, cost=5) for i in range(max_queue)]
            with pytest.raises(QueueFull) as info:
                scheduler.submit("refused", 5, cost=5)
            began = time.monotonic()
            await asyncio.gather(running, *queued)
            return info.value.retry_after_s, time.monotonic() - began
        finally:
            scheduler.close()

    return asyncio.run(main())


def test_retry_after_follows_the_queue_drain_time_after_long_requests():
    """A burst of short requests after a few long ones: the hint must be near the real drain time
    (it was minutes for a queue that drained in seconds when the pace ignored request size)."""
    # History: long requests (cost 100 -> 1 s each); then six queued of 0.05 s each.
    hint, drain = _retry_hint_and_drain(0.01, max_queue=6, history=[100, 100, 100])
    assert 1 <= hint <= max(1.0, 3 * drain), (hint, drain)


def test_retry_after_counts_the_whole_queue():
    hint, drain = _retry_hint_and_drain(0.1, max_queue=3, history=[5])  # 0.5 s per request
    assert drain / 2 <= hint <= 3 * drain, (hint, drain)  # 1.5 s of queued work: hint 2


def test_withdrawn_tickets_leave_the_queue_and_stop_running():
    gate = threading.Event()

    async def main():
        scheduler = Scheduler(make_runner(step_s=0.05, steps=200, gate=gate), max_queue=4)
        try:
            running = scheduler.enqueue("a", 1)
            await asyncio.sleep(0.05)
            waiting = scheduler.enqueue("b", 2)
            assert scheduler.withdraw(waiting) and scheduler.pending() == (0, 1)
            gate.set()
            await asyncio.sleep(0.1)
            began = time.monotonic()
            assert scheduler.withdraw(running)
            while scheduler.pending() != (0, 0):
                await asyncio.sleep(0.01)
            stopped_in = time.monotonic() - began
            assert not scheduler.withdraw(running)  # nothing left to stop
            follow_up = await scheduler.submit("c", 3)
            return stopped_in, follow_up, running.future, waiting.future
        finally:
            scheduler.close()

    stopped_in, follow_up, *futures = asyncio.run(main())
    assert stopped_in < 0.5 and follow_up == 6  # within a step or two, and the worker keeps serving
    assert all(isinstance(f.exception(), SynthesisCancelled) for f in futures)


def test_alive_reports_the_worker_thread():
    async def main():
        scheduler = Scheduler(make_runner(), max_queue=2)
        assert scheduler.alive()
        scheduler.close()
        return scheduler.alive()

    assert asyncio.run(main()) is False
