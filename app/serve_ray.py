"""The service on Ray Serve: the same FastAPI app, one copy per replica, behind Ray's HTTP proxy.

    serve run deploy/ray/serve-cpu.yaml     # one machine, CPU replicas (deploy/ray/README.md: GPUs, clusters)

Each replica is one Ray actor process running :func:`app.main.create_app` with its own engine (model
cache, batching, worker threads) and its own pool of connections to the voices database. Ray routes
requests, replaces replicas that die or fail their health check, drains a replica before stopping it,
and scales their number on ongoing requests (the config files in deploy/ray set how). Nothing here is
a cluster mechanism of its own; this module only adapts the app to Ray Serve's replica life cycle:

- the app is built in the replica (``__serve_build_asgi_app__``), from the replica's environment
  (``GSV_*``: the config's ``runtime_env.env_vars``) plus any keyword arguments given to ``bind``;
- Ray runs the app's lifespan (uvicorn's lifespan runner) after building it, so the engine and the
  voice store start as they do under ``gsv-server``, and stop in the replica's destructor, which Ray
  calls once the replica has drained (``graceful_shutdown_timeout_s``);
- ``check_health`` asks the engine what ``GET /readyz`` reports; a replica that is not ready is
  replaced by Ray;
- every answer names its replica in ``X-Replica`` (Ray's replica id), for load and failure analysis.

State replicas share lives outside them: the weights on a mounted volume (``GSV_WEIGHTS_ROOT``), the
stored voices in one database (``GSV_DATABASE_URL``, PostgreSQL when there are several replicas).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from app.main import create_app
from app.settings import Settings

REPLICA_HEADER = "x-replica"


class ReplicaHeaderMiddleware:
    """Adds ``X-Replica: <id>`` to every HTTP answer, streamed ones included (pure ASGI: the body
    passes through untouched)."""

    def __init__(self, app, replica: str):
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode("latin-1"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_named)


# Defaults for a bare ``serve.run(GsvServer.bind())``; the YAML configs in deploy/ray override them.
@serve.deployment(
    # The engine runs gpt_slots (16) requests at once and queues max_queue (16) more; Ray keeps the
    # rest in its own queue (or sends them to another replica) rather than letting the engine 429.
    max_ongoing_requests=32,
    health_check_period_s=10,
    health_check_timeout_s=30,
    # A replica being stopped (downscale, redeploy) gets no new requests and this long to finish the
    # ones it has; long answers on CPU take tens of seconds.
    graceful_shutdown_wait_loop_s=2,
    graceful_shutdown_timeout_s=120,
)
@serve.ingress()
class GsvServer:
    """One replica of the service. ``bind(**settings)``: settings on top of the ``GSV_*`` environment."""

    def __init__(self, **settings: Any):
        self._settings = settings
        self.replica = serve.get_replica_context().replica_id.unique_id

    def __serve_build_asgi_app__(self):
        app = create_app(Settings(**self._settings))
        app.add_middleware(ReplicaHeaderMiddleware, replica=self.replica)
        return app

    async def check_health(self) -> None:
        """Ray's health check: the engine's readiness, as ``GET /readyz`` reports it. Raising marks the
        replica unhealthy (Ray stops routing to it and starts a replacement)."""
        status = await asyncio.to_thread(self.app.state.engine.status)
        if not status.ready:
            raise RuntimeError("replica not ready: " + "; ".join(status.problems))


# The application ``serve run``/``serve deploy`` import (deploy/ray/*.yaml: import_path app.serve_ray:app).
app = GsvServer.bind()
