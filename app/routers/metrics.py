"""``GET /metrics``: the service's Prometheus metrics (see ``app/metrics.py`` for what is measured)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

router = APIRouter(tags=["operations"])

EXAMPLE = """\
# HELP gsv_http_requests_total HTTP requests answered, by route template and status.
# TYPE gsv_http_requests_total counter
gsv_http_requests_total{method="POST",route="/inference",status="200"} 3.0
# HELP gsv_synthesis_queue_length Synthesis requests waiting in the queue.
# TYPE gsv_synthesis_queue_length gauge
gsv_synthesis_queue_length 0.0
# HELP gsv_audio_produced_seconds_total Seconds of audio handed out (streams: as sent).
# TYPE gsv_audio_produced_seconds_total counter
gsv_audio_produced_seconds_total 12.48
"""


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Requests by route and status, synthesis stage durations, GPT tokens, queue and slots, "
    "model caches, audio produced, rejections and cancellations, in Prometheus' text format (OpenMetrics "
    "when the Accept header asks for it). With PROMETHEUS_MULTIPROC_DIR set: summed over every process.",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The metrics.",
            "content": {
                "text/plain": {"schema": {"type": "string", "example": EXAMPLE}},
                "application/openmetrics-text": {"schema": {"type": "string", "example": EXAMPLE + "# EOF\n"}},
            },
        }
    },
)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
