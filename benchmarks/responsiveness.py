"""Responsiveness under a heavy text request: how long ``/phonemize`` takes on a long digit run, and
the worst ``/healthz`` latency while it runs (the event loop must keep answering).

    python benchmarks/responsiveness.py                  # 2,000 and 5,000 digits, English
    python benchmarks/responsiveness.py --digits 2000 5000 20000

Starts the service in this process (uvicorn on a free port, an empty weights root: the text endpoints
need no model) and talks to it over HTTP, as a client would. A regular expression that backtracks on
such input once took 30 s (2,000 digits) and 524 s (5,000), with /healthz stalled for minutes.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402


def measure(base: str, text: str, lang: str) -> tuple[float, float, int]:
    """(seconds for /phonemize, worst /healthz seconds while it ran, /phonemize's status)."""
    done = threading.Event()
    worst = 0.0

    def probe():
        nonlocal worst
        with httpx.Client(base_url=base, timeout=600) as client:
            while not done.is_set():
                began = time.perf_counter()
                client.get("/healthz")
                worst = max(worst, time.perf_counter() - began)
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    began = time.perf_counter()
    r = httpx.post(f"{base}/phonemize", json={"text": text, "text_lang": lang}, timeout=3600)
    took = time.perf_counter() - began
    done.set()
    prober.join()
    assert r.status_code < 500, r.text  # a 422 (a number too long to read) is an answer too
    return took, worst, r.status_code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--lang", default="en")
    args = parser.parse_args(argv)
    weights = tempfile.mkdtemp(prefix="gsv-responsiveness-")  # an empty root: /phonemize needs no model
    atexit.register(shutil.rmtree, weights, ignore_errors=True)
    app = create_app(Settings(weights_root=weights, log_level="warning"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    measure(base, "9" * 10, args.lang)  # warm-up: lazy dictionaries and taggers
    print(f"{'input':>22} | {'/phonemize s':>12} | {'status':>6} | {'worst /healthz s':>16}")
    for n in args.digits:
        took, worst, status = measure(base, "9" * n, args.lang)
        print(f"{f'{n:,} digits ({args.lang})':>22} | {took:12.2f} | {status:>6} | {worst:16.3f}")
    server.should_exit = True
    thread.join(10)


if __name__ == "__main__":
    main()
