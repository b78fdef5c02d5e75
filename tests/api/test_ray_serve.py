"""Scale-out on Ray Serve (app/serve_ray.py): two CPU replicas behind Ray's HTTP proxy, on demo weights
in one weights root and one throwaway PostgreSQL database for their voices.

A local Ray instance (2 CPUs, no dashboard) runs the deployment with the options of
deploy/ray/serve-cpu.yaml (its autoscaling keeps exactly 2 replicas). Requests go through the proxy
over real HTTP; ``X-Replica`` says which replica answered. The replica-killing and redeploying tests run
last, in that order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import ray
import yaml
from ray import serve

from tests.api.test_inference import REF
from tests.postgres import create_database, free_port, postgres_server

ROOT = Path(__file__).resolve().parents[2]
APP = "gsv"
TEXT = {"text": "你好。", "text_lang": "all_zh", "prompt_text": "这是参考音频。", "prompt_lang": "all_zh"}
SEEDED = {"seed": "5", "keep_random": "false", "media_type": "raw"}


def cpu_config() -> tuple[dict, dict]:
    """(the gsv application, its deployment's options) of deploy/ray/serve-cpu.yaml."""
    config = yaml.safe_load((ROOT / "deploy/ray/serve-cpu.yaml").read_text())
    app = next(a for a in config["applications"] if a["name"] == APP)
    return app, {k: v for k, v in app["deployments"][0].items() if k != "name"}


def deploy(**options) -> None:
    """(Re)deploy the application with serve-cpu.yaml's options, ``options`` on top."""
    from app.serve_ray import GsvServer  # imported once Ray runs: its module builds a Serve application

    serve.run(GsvServer.options(**{**cpu_config()[1], **options}).bind(), name=APP, route_prefix="/")


@pytest.fixture(scope="module")
def proxy(demo_root):
    """The Serve proxy's base URL, two replicas behind it, on the HTTP tests' demo weights."""
    app, _ = cpu_config()
    with postgres_server() as pg:
        env = {
            **app["runtime_env"]["env_vars"],
            "GSV_WEIGHTS_ROOT": str(demo_root),  # the same weights root for every replica
            "GSV_DATABASE_URL": create_database(pg, "gsv_ray"),
            "GSV_LOG_LEVEL": "warning",
        }
        if "NLTK_DATA" in os.environ:
            env["NLTK_DATA"] = os.environ["NLTK_DATA"]
        temp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's unix sockets live under it
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp,
                 runtime_env={"env_vars": env})  # fmt: skip
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            deploy()
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def synthesize(client: httpx.Client, **fields) -> httpx.Response:
    files = None if "voice" in fields else {"ref_audio_path": ("ref.wav", REF, "audio/wav")}
    return client.post("/inference", data={**TEXT, **SEEDED, **fields}, files=files)


def concurrently(base: str, count: int, **fields) -> list[httpx.Response]:
    """``count`` requests at once, each on its own connection."""

    def one(_):
        with httpx.Client(base_url=base, timeout=120) as client:
            return synthesize(client, **fields)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def running_replicas() -> set[str]:
    """Replica ids of the deployment's live replica actors."""
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    prefix = f"SERVE_REPLICA::{APP}#GsvServer#"
    return {n[len(prefix) :] for n in names if n.startswith(prefix)}


def busy(replica: str) -> int:
    """Requests the replica has running now (from Ray's replica actor)."""
    actor = ray.get_actor(f"SERVE_REPLICA::{APP}#GsvServer#{replica}", namespace="serve")
    return ray.get(actor.get_num_ongoing_requests.remote(), timeout=10)


def test_both_replicas_answer_and_streams_pass_the_proxy(proxy):
    seen: set[str] = set()
    for _ in range(3):  # the proxy picks the less busy of two replicas: concurrent requests reach both
        answers = concurrently(proxy, 4, streaming_mode="2")
        for r in answers:
            assert r.status_code == 200, r.text
            assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
            assert r.headers["x-sample-rate"] and r.headers["x-request-id"]
        # Same seed, same weights root: every replica speaks the very same samples.
        audio = {r.content for r in answers}
        assert len(audio) == 1 and np.frombuffer(audio.pop(), "<i2").size > 0
        seen |= {r.headers["x-replica"] for r in answers}
        if len(seen) == 2:
            break
    assert seen == running_replicas() and len(seen) == 2


def test_the_health_check_is_the_engines_readiness(proxy):
    handle = serve.get_app_handle(APP)
    assert handle.check_health.remote().result(timeout_s=30) is None  # ready: no exception
    r = httpx.get(f"{proxy}/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready" and r.headers["x-replica"]


def test_a_voice_made_through_one_replica_speaks_through_the_other(proxy):
    r = httpx.post(f"{proxy}/voices", data={"name": "shared", "prompt_text": TEXT["prompt_text"],
                   "prompt_lang": "all_zh"}, files={"ref_audio": ("ref.wav", REF, "audio/wav")})  # fmt: skip
    assert r.status_code == 201, r.text
    maker = r.headers["x-replica"]
    others: list[httpx.Response] = []
    for _ in range(4):
        answers = concurrently(proxy, 4, voice="shared")
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        others += [a for a in answers if a.headers["x-replica"] != maker]
        if others:
            break
    assert others, "no request reached the replica that did not make the voice"
    with httpx.Client(base_url=proxy, timeout=120) as client:  # the voice speaks as its clip uploaded
        assert others[0].content == synthesize(client, prompt_text=TEXT["prompt_text"]).content


def test_killing_a_replica_mid_run_fails_no_later_request(proxy):
    before = running_replicas()
    assert len(before) == 2
    victim = sorted(before)[0]
    results: list[tuple[float, int, str]] = []  # (sent at, status, replica)
    killed_at: list[float] = []
    stop = threading.Event()

    def client_loop():
        with httpx.Client(base_url=proxy, timeout=120) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    r = synthesize(client)
                    results.append((sent, r.status_code, r.headers.get("x-replica", "")))
                except httpx.HTTPError as exc:  # a connection cut with the replica counts as a failure
                    results.append((sent, 0, type(exc).__name__))

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while not {rep for _, s, rep in results if s == 200} >= before:  # both replicas at work
            assert time.monotonic() < deadline, results
            time.sleep(0.1)
        ray.kill(ray.get_actor(f"SERVE_REPLICA::{APP}#GsvServer#{victim}", namespace="serve"), no_restart=True)
        killed_at.append(time.monotonic())
        # Keep sending until Ray has replaced the victim and the replacement has answered too.
        deadline = time.monotonic() + 120
        while True:
            later = [(s, rep) for sent, s, rep in results if sent > killed_at[0]]
            replicas = {rep for s, rep in later if s == 200}
            if len(later) >= 8 and replicas - before:
                break
            assert time.monotonic() < deadline, (later, running_replicas())
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    later = [(s, rep) for sent, s, rep in results if sent > killed_at[0]]
    assert all(s == 200 for s, _ in later), later
    assert victim not in {rep for _, rep in later}
    assert len(running_replicas()) == 2 and victim not in running_replicas()


def test_replicas_being_stopped_answer_their_requests_first(proxy):
    """Redeploying to one replica stops both running replicas (a new code version replaces them) the way a
    downscale stops one: no new requests, the ongoing ones answered, then the app's shutdown stops the
    engine. Requests running on them when the redeploy begins all complete."""
    before = running_replicas()
    assert len(before) == 2
    long_text = {"text": "今天天气很好。我们一起去公园散步吧。然后回家吃饭。", "text_split_method": "cut0"}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(concurrently, proxy, 4, **long_text)
        deadline = time.monotonic() + 30
        while sum(busy(r) for r in before) < 4:  # all four running (on both replicas)
            assert time.monotonic() < deadline and not pending.done()
            time.sleep(0.05)
        assert not pending.done()
        deploy(num_replicas=1, autoscaling_config=None)
        answers = pending.result(timeout=180)
    assert all(r.status_code == 200 and len(r.content) > 0 for r in answers), [r.text for r in answers]
    assert {r.headers["x-replica"] for r in answers} <= before
    deadline = time.monotonic() + 60
    while running_replicas() & before:  # the old replicas go once drained
        assert time.monotonic() < deadline, running_replicas()
        time.sleep(0.5)
    assert len(running_replicas()) == 1
