"""What the engine reports about its own work, for monitoring, without knowing who listens.

The engine calls a :class:`Telemetry` at a few cheap points: when the queue changes, once per
iteration of the GPT decode loop (not per token), once per finished synthesis, per audio chunk handed
out, per model cache event. The default does nothing; the service passes an implementation backed by
Prometheus metrics (``app/metrics.py``) to :class:`~app.engine.engine.Engine`. Every label-like
argument comes from one of the small fixed sets below, so an implementation may use them as metric
labels as they are. Methods are called from worker threads, the GPT thread and the event loop alike,
so an implementation must be thread-safe and quick.
"""

from __future__ import annotations

from collections.abc import Mapping

STAGES = ("frontend", "gpt", "decoder")  # keys of SynthesisResult.stage_seconds
CACHE_KINDS = ("gpt", "sovits", "voice")
CACHE_EVENTS = ("load", "hit", "eviction")
CANCEL_REASONS = ("stop", "client_gone")  # /stop or the service stopping | the client went away


class Telemetry:
    """The engine's reports; each method is a no-op here (override the ones you need)."""

    def queue_changed(self, queued: int, running: int) -> None:
        """Synthesis requests waiting in the queue and running now, after any change."""

    def rejected(self) -> None:
        """A synthesis was refused because the queue was full (the caller answers 429)."""

    def cancelled(self, reason: str, count: int) -> None:
        """``count`` queued or running syntheses were cancelled; ``reason`` is in CANCEL_REASONS."""

    def gpt_decoded(self, tokens: int, steps: int, seconds: float) -> None:
        """GPT decode work: ``steps`` decode steps drew ``tokens`` semantic tokens (one per live row
        per step) in ``seconds`` of the decoding thread's time."""

    def gpt_slots(self, live_rows: int, slots: int) -> None:
        """GPT rows decoding now, and the decode slots allocated for them (all loaded models)."""

    def synthesized(self, stage_seconds: Mapping[str, float]) -> None:
        """A synthesis finished; seconds its stages (STAGES) took, each summed over its pieces."""

    def audio_produced(self, seconds: float) -> None:
        """Seconds of audio handed to a caller (a whole answer, or one streamed chunk)."""

    def first_audio(self, seconds: float) -> None:
        """A stream's first audio came ``seconds`` after it was asked for."""

    def model_cache(self, kind: str, event: str) -> None:
        """A model cache of ``kind`` (CACHE_KINDS) saw ``event`` (CACHE_EVENTS)."""


NO_TELEMETRY = Telemetry()
