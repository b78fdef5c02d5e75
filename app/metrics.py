"""Prometheus metrics of the service (``GET /metrics``), through the official ``prometheus-client``.

:class:`AppMetrics` is one app's set of metrics. It is the engine's telemetry (``app.engine.telemetry``:
the engine reports, this module counts) and, with :class:`HttpMetricsMiddleware`, counts and times
every HTTP request by route template and status.

Registries: each app has its own ``CollectorRegistry`` (several apps live in one test process, and the
global registry would refuse the second set of names), with the process and Python collectors. When
``PROMETHEUS_MULTIPROC_DIR`` is set before the service starts (several worker processes, e.g.
``uvicorn --workers N``), prometheus-client keeps every value in files in that folder and
``/metrics`` answers the sum over all processes (``MultiProcessCollector``); gauges then add up the
live processes' values.

Labels take values from small fixed sets only: a route is its template (``/voices/{name}``, never the
raw path; paths no route matches are all ``unmatched``), a method outside the usual ones is ``other``,
stages, cache kinds and cancel reasons are the engine's fixed sets. No request id or text is a label.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.routing import Match

from app.engine.telemetry import CACHE_EVENTS, CACHE_KINDS, CANCEL_REASONS, STAGES, Telemetry

UNMATCHED_ROUTE = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Synthesis on a CPU takes seconds to minutes, so the buckets reach further than Prometheus' default.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
FIRST_AUDIO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)


def multiprocess_mode() -> bool:
    """prometheus-client's own decision, made when it was imported (PROMETHEUS_MULTIPROC_DIR set)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue


class AppMetrics(Telemetry):
    def __init__(self):
        self.multiprocess = multiprocess_mode()
        self.registry = CollectorRegistry()
        if self.multiprocess:
            # The metrics below write their values to files; the collector reads every process's.
            MultiProcessCollector(self.registry)
            target = None
        else:
            target = self.registry
            ProcessCollector(registry=target)
            PlatformCollector(registry=target)
            GCCollector(registry=target)

        def counter(name, doc, labels=()):
            return Counter(name, doc, labels, registry=target)

        def gauge(name, doc):
            # livesum: in multi-process mode, the sum over the processes alive
            return Gauge(name, doc, registry=target, multiprocess_mode="livesum")

        def histogram(name, doc, labels=(), buckets=DURATION_BUCKETS):
            return Histogram(name, doc, labels, registry=target, buckets=buckets)

        http = ("method", "route", "status")
        self.http_requests = counter("gsv_http_requests", "HTTP requests answered, by route template and status.", http)
        self.http_duration = histogram(
            "gsv_http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its answer (a stream's whole length).",
            http,
        )
        stage = histogram(
            "gsv_synthesis_stage_duration_seconds",
            "Seconds a finished synthesis spent per stage (frontend: references, text and BERT; gpt: "
            "waiting for and taking part in the GPT decode; decoder: tokens to waveform), over its pieces.",
            ("stage",),
        )
        self._stages = {name: stage.labels(stage=name) for name in STAGES}
        self.gpt_tokens = counter(
            "gsv_gpt_tokens", "Semantic tokens drawn by GPT decode steps (rate(): tokens per second)."
        )
        self.gpt_steps = counter("gsv_gpt_decode_steps", "GPT decode steps (tokens / steps: rows per step).")
        self.gpt_seconds = counter(
            "gsv_gpt_decode_seconds",
            "Seconds spent decoding GPT steps (rate(tokens) / rate(this): tokens per second of decoding).",
        )
        self.gpt_live_rows = gauge("gsv_gpt_live_rows", "GPT rows decoding now (all loaded models).")
        self.gpt_slots_total = gauge(
            "gsv_gpt_slots", "GPT decode slots allocated (live_rows / slots: the slots' occupancy)."
        )
        self.queue_length = gauge("gsv_synthesis_queue_length", "Synthesis requests waiting in the queue.")
        self.running = gauge("gsv_synthesis_running", "Synthesis requests running.")
        self.rejections = counter(
            "gsv_synthesis_rejected", "Synthesis requests refused because the queue was full (429)."
        )
        cancelled = counter(
            "gsv_synthesis_cancelled",
            "Queued or running syntheses cancelled (reason: stop = /stop or shutdown, client_gone).",
            ("reason",),
        )
        self._cancelled = {reason: cancelled.labels(reason=reason) for reason in CANCEL_REASONS}
        self.first_audio_seconds = histogram(
            "gsv_stream_first_audio_seconds",
            "Time from a stream being asked for (voice loading and queueing included) to its first audio.",
            buckets=FIRST_AUDIO_BUCKETS,
        )
        self.audio_seconds = counter("gsv_audio_produced_seconds", "Seconds of audio handed out (streams: as sent).")
        caches = {
            "load": counter("gsv_model_cache_loads", "Models loaded into a model cache.", ("kind",)),
            "hit": counter("gsv_model_cache_hits", "Model cache look-ups answered from memory.", ("kind",)),
            "eviction": counter("gsv_model_cache_evictions", "Models dropped from a model cache.", ("kind",)),
        }
        self._cache = {(k, e): caches[e].labels(kind=k) for k in CACHE_KINDS for e in CACHE_EVENTS}

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (prometheus-client's own negotiation: the
        classic text format unless OpenMetrics is asked for), and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method if method in METHODS else "other", route, str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)

    # ---------------------------------------------------------------- the engine's telemetry
    def queue_changed(self, queued: int, running: int) -> None:
        self.queue_length.set(queued)
        self.running.set(running)

    def rejected(self) -> None:
        self.rejections.inc()

    def cancelled(self, reason: str, count: int) -> None:
        if reason in self._cancelled:
            self._cancelled[reason].inc(count)

    def gpt_decoded(self, tokens: int, steps: int, seconds: float) -> None:
        self.gpt_tokens.inc(tokens)
        self.gpt_steps.inc(steps)
        self.gpt_seconds.inc(seconds)

    def gpt_slots(self, live_rows: int, slots: int) -> None:
        self.gpt_live_rows.set(live_rows)
        self.gpt_slots_total.set(slots)

    def synthesized(self, stage_seconds: Mapping[str, float]) -> None:
        for name, seconds in stage_seconds.items():
            if name in self._stages:
                self._stages[name].observe(seconds)

    def audio_produced(self, seconds: float) -> None:
        self.audio_seconds.inc(seconds)

    def first_audio(self, seconds: float) -> None:
        self.first_audio_seconds.observe(seconds)

    def model_cache(self, kind: str, event: str) -> None:
        child = self._cache.get((kind, event))
        if child is not None:
            child.inc()


class HttpMetricsMiddleware:
    """Counts and times every HTTP request (ASGI). Added last, so it is outside the request-id
    middleware and sees the status of every answer, its early 413s and last-resort 500s included."""

    def __init__(self, app, metrics: AppMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the client gets when nothing answers (an error escaped)

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self.metrics.http_request(scope["method"], route_template(scope), status, time.perf_counter() - began)


def route_template(scope) -> str:
    """The path template of the route that served the request (Starlette notes it in the scope), or
    of the route it was meant for when a middleware answered before routing (a 413); else
    ``unmatched``, one value for every unknown path."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        routes = _leaf_routes(getattr(getattr(app, "router", None), "routes", ()))
        route = next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def _leaf_routes(routes):
    """Routes with a path, in matching order: recent FastAPI versions keep an included router as one
    entry of ``app.routes`` (its routes in ``original_router``); older ones list its routes."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route
