"""GET /metrics: scraped after real requests on demo weights and read with prometheus-client's own
text parser: names, types, bounded labels, and values that moved by what the requests did."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.engine.telemetry import CACHE_KINDS, CANCEL_REASONS, STAGES
from app.main import create_app
from app.metrics import METHODS, UNMATCHED_ROUTE
from app.settings import Settings
from tests.api.test_inference import QUEUE_TEXT, REF, V2_GPT, _in_background, form, sovits_name

ROOT = Path(__file__).resolve().parents[2]

TYPES = {
    "gsv_http_requests": "counter",
    "gsv_http_request_duration_seconds": "histogram",
    "gsv_synthesis_stage_duration_seconds": "histogram",
    "gsv_gpt_tokens": "counter",
    "gsv_gpt_decode_steps": "counter",
    "gsv_gpt_decode_seconds": "counter",
    "gsv_gpt_live_rows": "gauge",
    "gsv_gpt_slots": "gauge",
    "gsv_synthesis_queue_length": "gauge",
    "gsv_synthesis_running": "gauge",
    "gsv_synthesis_rejected": "counter",
    "gsv_synthesis_cancelled": "counter",
    "gsv_stream_first_audio_seconds": "histogram",
    "gsv_audio_produced_seconds": "counter",
    "gsv_model_cache_loads": "counter",
    "gsv_model_cache_hits": "counter",
    "gsv_model_cache_evictions": "counter",
}


@pytest.fixture(scope="module")
def client(demo_root):
    # One request runs at a time and one may wait (a 429 is cheap to provoke); one model of a kind
    # stays loaded (a weight switch evicts).
    settings = Settings(
        weights_root=demo_root, max_queue=1, gpt_slots=1, max_loaded_models=1, max_body_bytes=1_000_000
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def pick(names):
    return {"gpt_weights": V2_GPT, "sovits_weights": sovits_name(names, "v2")}


def scrape(client) -> dict[str, dict]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: {"type": f.type, "samples": f.samples} for f in text_string_to_metric_families(r.text)}


def value(families, sample: str, **labels) -> float:
    """The sum of the samples called ``sample`` whose labels include ``labels`` (0 when none)."""
    return sum(
        s.value
        for family in families.values()
        for s in family["samples"]
        if s.name == sample and labels.items() <= s.labels.items()
    )


def moved(before, after, sample: str, **labels) -> float:
    return value(after, sample, **labels) - value(before, sample, **labels)


def inference(client, pick, **fields):
    return client.post(
        "/inference", data=form(**pick, **fields), files={"ref_audio_path": ("ref.wav", REF, "audio/wav")}
    )


def settle(client) -> None:
    """Wait for the workers to be idle: a request is answered just before its worker is free."""
    scheduler = client.app.state.engine.scheduler
    deadline = time.monotonic() + 30
    while scheduler.pending() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(scope="module")
def first_synthesis(client, pick):
    """The module's first synthesis (its models load), with a scrape before and after it."""
    before = scrape(client)
    r = inference(client, pick, seed=3, keep_random="false")
    assert r.status_code == 200, r.text
    settle(client)
    return before, r, scrape(client)


def test_every_metric_has_its_name_and_type(client, first_synthesis):
    _, _, families = first_synthesis
    for name, kind in TYPES.items():
        assert families.get(name, {}).get("type") == kind, name
    # (prometheus-client also writes a *_created gauge per counter and histogram series)
    ours = [n for n in families if n.startswith("gsv_") and not n.endswith("_created")]
    assert sorted(ours) == sorted(TYPES)
    assert "process_resident_memory_bytes" in families  # the process collector of prometheus-client


def test_requests_are_counted_by_route_template_and_status(client):
    before = scrape(client)
    assert client.post("/to_cut", json={"text_inp": "今天。明天。", "how_to_cut": "cut3"}).status_code == 200
    assert client.post("/to_cut", json={"text_inp": "a", "how_to_cut": "no-such-method"}).status_code == 422
    assert client.get("/voices/nobody-here").status_code == 404
    assert client.get("/no/such/path/12345").status_code == 404
    # refused by a middleware before any routing: still counted under its route
    assert client.post("/to_cut", content=b"x" * 1_000_001, headers={"content-type": "application/json"}).status_code == 413
    after = scrape(client)

    count = "gsv_http_requests_total"
    assert moved(before, after, count, method="POST", route="/to_cut", status="200") == 1
    assert moved(before, after, count, method="POST", route="/to_cut", status="422") == 1
    assert moved(before, after, count, method="GET", route="/voices/{name}", status="404") == 1
    assert moved(before, after, count, method="GET", route=UNMATCHED_ROUTE, status="404") == 1
    assert moved(before, after, count, method="POST", route="/to_cut", status="413") == 1
    latency = "gsv_http_request_duration_seconds_count"
    assert moved(before, after, latency, method="POST", route="/to_cut", status="200") == 1
    # The scrape before this one is counted too, by the time of the next.
    assert moved(before, after, count, method="GET", route="/metrics", status="200") == 1
    routes = {s.labels["route"] for s in after["gsv_http_requests"]["samples"]}
    assert not any("nobody-here" in r or "12345" in r for r in routes)


def test_a_synthesis_moves_stages_tokens_audio_and_model_loads(client, pick, first_synthesis):
    before, r, after = first_synthesis
    audio, rate = sf.read(io.BytesIO(r.content))
    seconds = len(audio) / rate
    assert moved(before, after, "gsv_audio_produced_seconds_total") == pytest.approx(seconds, abs=1e-6)
    for stage in STAGES:
        assert moved(before, after, "gsv_synthesis_stage_duration_seconds_count", stage=stage) == 1, stage
        assert moved(before, after, "gsv_synthesis_stage_duration_seconds_sum", stage=stage) > 0, stage
    tokens = moved(before, after, "gsv_gpt_tokens_total")
    steps = moved(before, after, "gsv_gpt_decode_steps_total")
    assert tokens >= steps > 0
    assert moved(before, after, "gsv_gpt_decode_seconds_total") > 0
    for kind in CACHE_KINDS:  # the voice and both its models loaded once
        assert moved(before, after, "gsv_model_cache_loads_total", kind=kind) == 1, kind
    assert value(after, "gsv_gpt_slots") == 1  # GSV_GPT_SLOTS, allocated by the first decode
    for idle in ("gsv_gpt_live_rows", "gsv_synthesis_queue_length", "gsv_synthesis_running"):
        assert value(after, idle) == 0, idle

    # The same voice again: found in memory, nothing loads.
    assert inference(client, pick).status_code == 200
    again = scrape(client)
    assert moved(after, again, "gsv_model_cache_hits_total", kind="voice") == 1
    assert moved(after, again, "gsv_model_cache_loads_total") == 0


def test_a_stream_reports_its_time_to_first_audio(client, pick, first_synthesis):
    before = scrape(client)
    r = inference(client, pick, streaming_mode=3, min_chunk_length=8, media_type="raw", seed=3, keep_random="false")
    assert r.status_code == 200, r.text
    after = scrape(client)
    seconds = len(r.content) / 2 / int(r.headers["x-sample-rate"])
    assert moved(before, after, "gsv_audio_produced_seconds_total") == pytest.approx(seconds, abs=1e-6)
    assert moved(before, after, "gsv_stream_first_audio_seconds_count") == 1
    assert 0 < moved(before, after, "gsv_stream_first_audio_seconds_sum") < 60
    assert moved(before, after, "gsv_synthesis_stage_duration_seconds_count", stage="decoder") == 1


def test_a_full_queue_and_a_stop_are_counted(client, pick, first_synthesis):
    scheduler = client.app.state.engine.scheduler
    before = scrape(client)

    def start_slow_until(state: tuple[int, int]):
        started = _in_background(lambda: inference(client, pick, text=QUEUE_TEXT, text_split_method="cut3", batch_size=1))
        deadline = time.monotonic() + 120
        while scheduler.pending() != state and time.monotonic() < deadline:
            time.sleep(0.02)
        return started

    slow = [start_slow_until((0, 1)), start_slow_until((1, 1))]  # one runs, one waits
    during = scrape(client)
    refused = inference(client, pick)
    assert client.post("/stop", json={}).json() == {"cancelled": 2}
    for thread, _ in slow:
        thread.join(60)
    settle(client)
    after = scrape(client)

    assert value(during, "gsv_synthesis_queue_length") == 1 and value(during, "gsv_synthesis_running") == 1
    assert value(during, "gsv_gpt_live_rows") <= 1
    assert refused.status_code == 429
    assert moved(before, after, "gsv_synthesis_rejected_total") == 1
    assert moved(before, after, "gsv_synthesis_cancelled_total", reason="stop") == 2
    count = "gsv_http_requests_total"
    assert moved(before, after, count, route="/inference", status="429") == 1
    assert moved(before, after, count, route="/inference", status="409") == 2  # the cancelled ones
    assert value(after, "gsv_synthesis_queue_length") == value(after, "gsv_synthesis_running") == 0


def test_a_weight_switch_evicts(client, names, first_synthesis):
    before = scrape(client)
    r = client.post("/change_sovits_weights", json={"sovits_path": sovits_name(names, "v2ProPlus")})
    assert r.status_code == 200, r.text
    after = scrape(client)
    assert moved(before, after, "gsv_model_cache_loads_total", kind="sovits") == 1
    # one model of a kind stays loaded: the v2 model goes, and the voice built on it with it
    assert moved(before, after, "gsv_model_cache_evictions_total", kind="sovits") == 1
    assert moved(before, after, "gsv_model_cache_evictions_total", kind="voice") == 1


def test_label_values_are_bounded(client, first_synthesis):
    families = scrape(client)
    routes = set(client.get("/openapi.json").json()["paths"]) | {UNMATCHED_ROUTE}
    allowed = {
        "route": routes,
        "method": METHODS | {"other"},
        "stage": set(STAGES),
        "kind": set(CACHE_KINDS),
        "reason": set(CANCEL_REASONS),
    }
    for name, family in families.items():
        if not name.startswith("gsv_"):
            continue
        for sample in family["samples"]:
            for label, got in sample.labels.items():
                if label == "le":
                    continue
                if label == "status":
                    assert got.isdigit() and len(got) == 3, (name, got)
                    continue
                assert got in allowed[label], (name, label, got)


def test_openmetrics_when_asked(client):
    r = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")


def test_one_request_at_a_time_reports_its_gpt_decode_too(demo_root, pick):
    with TestClient(create_app(Settings(weights_root=demo_root, continuous_batching=False))) as alone:
        r = inference(alone, pick, seed=3, keep_random="false")
        assert r.status_code == 200, r.text
        families = scrape(alone)
    assert value(families, "gsv_gpt_tokens_total") >= value(families, "gsv_gpt_decode_steps_total") > 0
    assert value(families, "gsv_gpt_decode_seconds_total") > 0
    assert value(families, "gsv_synthesis_stage_duration_seconds_count", stage="gpt") == 1


MULTIPROCESS_WORKER = textwrap.dedent(
    """
    import sys
    from app.metrics import AppMetrics
    metrics = AppMetrics()
    assert metrics.multiprocess
    metrics.http_request("POST", "/inference", 200, 0.5)
    metrics.audio_produced(float(sys.argv[1]))
    metrics.synthesized({"frontend": 0.1, "gpt": 0.2, "decoder": 0.3})
    metrics.queue_changed(int(sys.argv[2]), 0)
    """
)

# What GET /metrics answers (the route only adds the HTTP layer, tested above), without importing the
# whole app (PyTorch) in a third process.
MULTIPROCESS_SCRAPER = textwrap.dedent(
    """
    from app.metrics import AppMetrics
    body, content_type = AppMetrics().exposition(None)
    assert content_type.startswith("text/plain")
    print(body.decode())
    """
)


def test_multiprocess_mode_sums_every_process(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, /metrics answers the sum over every process that wrote there."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(code: str, *args: str) -> str:
        done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(MULTIPROCESS_WORKER, "1.5", "2")
    run(MULTIPROCESS_WORKER, "2.0", "3")
    families = {f.name: f for f in text_string_to_metric_families(run(MULTIPROCESS_SCRAPER))}

    def sample(name: str, **labels) -> float:
        found = [s.value for f in families.values() for s in f.samples if s.name == name and labels.items() <= s.labels.items()]
        assert found, name
        return sum(found)

    assert sample("gsv_http_requests_total", route="/inference", status="200") == 2
    assert sample("gsv_audio_produced_seconds_total") == pytest.approx(3.5)
    assert sample("gsv_synthesis_stage_duration_seconds_count", stage="gpt") == 2
    assert sample("gsv_synthesis_stage_duration_seconds_sum", stage="decoder") == pytest.approx(0.6)
    # livesum: the processes' gauges add up (a supervisor marks dead workers; see the README)
    assert sample("gsv_synthesis_queue_length") == 5
    # per-process collectors make no sense summed: multi-process mode leaves them out
    assert "process_resident_memory_bytes" not in families
