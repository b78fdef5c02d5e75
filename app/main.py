"""The app factory: settings → voice store and engine (in the lifespan) → routers, with one error shape
everywhere."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.compat import api_v2, openai
from app.demo_setup import demo_warnings
from app.engine.engine import Engine
from app.errors import install_error_handlers
from app.logging_setup import configure_logging
from app.metrics import AppMetrics, HttpMetricsMiddleware
from app.middleware import RequestContextMiddleware
from app.routers import health, metrics, synthesis, text, voices, weights
from app.schemas.errors import error_responses
from app.settings import Settings, engine_config, store_url
from app.startup_weights import prepare_empty_weights_root
from app.store.voices import open_voice_store

log = logging.getLogger(__name__)

DESCRIPTION = """
GPT-SoVITS voice-cloning text-to-speech over HTTP. The endpoints mirror upstream's fast web UI
(`/change_choices`, `/to_cut`, ...). Enumerations accept both upstream's UI labels (e.g. `中文`,
`凑四句一切`) and short codes (`all_zh`, `cut1`). Every error answers
`{"error": {"code", "message", "request_id"}}`; the request id is also in the `X-Request-ID` header.
"""


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # An engine handed in is owned by the caller (started and stopped by it); otherwise the app
        # makes its own from the settings and runs it for its lifetime.
        owned = engine is None
        # The database schema is brought up to date (Alembic) before anything serves; in a thread,
        # as migrating a remote database can take a while.
        app.state.voices = await asyncio.to_thread(open_voice_store, store_url(settings))
        # The engine reports its work to the app's metrics (an engine handed in keeps its own telemetry).
        app.state.engine = engine or Engine(engine_config(settings), telemetry=app.state.metrics)
        # An empty root with --demo-if-empty: upstream's models when the hub answers, else demo weights.
        app.state.startup_weights = await asyncio.to_thread(
            prepare_empty_weights_root, settings, app.state.engine.weight_choices()
        )
        for warning in demo_warnings(settings.weights_root):
            log.warning(warning)
        if owned:
            app.state.engine.start()
        try:
            yield
        finally:
            if owned:
                app.state.engine.stop()
            app.state.voices.close()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from files shipped in that package
    # (served under /static-offline-docs), so the docs work on machines without internet access.
    app = FastAPIOffline(
        title="gsv-server",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Any request can be malformed, too large, or hit a bug: all answer the error shape.
        responses=error_responses(400, 413, 500),
    )
    app.state.settings = settings
    app.state.metrics = AppMetrics()
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s
    )
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics)  # outermost: sees every answer
    for module in (health, text, weights, synthesis, voices, api_v2, openai, metrics):
        app.include_router(module.router)
    if settings.web_ui:
        # Imported here: gradio takes seconds to import, and API-only deployments never need it.
        from app.compat.web_ui import mount_web_ui

        mount_web_ui(app, settings)  # after the routers: their paths keep precedence
    return app
