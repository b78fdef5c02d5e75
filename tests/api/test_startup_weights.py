"""``make run`` on an empty weights root with no hub in reach: demo weights within seconds, and
``/readyz`` says why (the fetch path itself is tested in tests/unit/test_fetch_weights.py)."""

from __future__ import annotations

import socket
import time


def test_unreachable_hub_falls_back_to_demo_weights_and_readyz_says_so(make_client, weights_root, monkeypatch):
    closed = socket.socket()  # bound, never listening: connections are refused at once
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    monkeypatch.setenv("HF_HOME", str(weights_root.parent / "hf-home"))
    started = time.monotonic()
    with closed:
        client = make_client(demo_if_empty=True)
    took = time.monotonic() - started
    body = client.get("/readyz").json()
    assert body["status"] == "ready", body
    assert "did not answer" in body["startup_weights"] and "demo weights written" in body["startup_weights"]
    assert any("DEMO WEIGHTS" in w for w in body["warnings"])
    assert (weights_root / "DEMO_WEIGHTS.txt").is_file()
    assert took < 60, took  # the hub check fails at once; the rest is writing the demo weights


def test_readyz_has_no_startup_note_when_the_root_needed_nothing(client):
    assert client.get("/readyz").json()["startup_weights"] is None
