"""Runs hostile inputs in a process of its own, under an address-space limit, and reports each one's
outcome and how much the process's peak memory grew while handling it.

A regression (an allocation sized by a client's header) then fails the test that started this
process, with a MemoryError or a 500 recorded here, instead of exhausting the machine.

    python -m tests.bounded clips CASES.json OUT.json
        CASES: [{"id", "file"}]: decode each file as a reference clip, check it, and compute a v2Pro
        voice's inputs from it when accepted
    python -m tests.bounded api CASES.json OUT.json
        CASES: {"settings": {...}, "warmup": [request], "requests": [request]}; a request is
        {"id", "method", "path", "data"?, "json"?, "files"?: [[field, name, file]]}: sent to the app
        (in process, fastapi's TestClient) one after the other

OUT: [{"id", "outcome" | "status" + "body", "growth_mb"}]. ``growth_mb`` is the peak resident memory
while handling the case minus the resident memory before it (the peak is reset per case).
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import traceback
from pathlib import Path

HEADROOM_BYTES = 4 * 1024**3  # address space allowed beyond what the process has mapped after start-up


def _status(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def limit_address_space() -> None:
    limit = _status("VmSize") + HEADROOM_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def measured(run) -> tuple[dict, float]:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (the peak) to the current RSS
    before = _status("VmRSS")
    try:
        result = run()
    except MemoryError:
        result = {"outcome": "MemoryError"}
    return result, (_status("VmHWM") - before) / 2**20


def run_clips(cases: list[dict]) -> list[dict]:
    from app.engine import audio_features
    from app.engine.errors import EngineError
    from app.engine.jobs import ReferenceAudio
    from app.engine.planning import check_reference

    v2 = audio_features.SpectrogramConfig(sampling_rate=32000, filter_length=2048, hop_length=640, win_length=2048)

    def one(path: str) -> dict:
        try:
            reference = ReferenceAudio.decode(Path(path).read_bytes())
            check_reference(reference)
            # what a v2Pro voice computes from an accepted clip
            audio_features.reference_spec_and_sv_input(reference.samples, reference.sample_rate, v2)
            audio_features.hubert_input(reference.samples, reference.sample_rate, v2.sampling_rate)
            return {"outcome": "accepted", "seconds": reference.seconds}
        except EngineError as exc:
            return {"outcome": type(exc).__name__, "code": exc.code}
        except Exception:  # anything else is a bug the test reports
            return {"outcome": "crash", "error": traceback.format_exc(limit=3)}

    limit_address_space()
    results = []
    for case in cases:
        result, growth = measured(lambda case=case: one(case["file"]))
        results.append({"id": case["id"], **result, "growth_mb": growth})
    return results


def run_api(spec: dict) -> list[dict]:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    def send(client, request: dict) -> dict:
        files = [(field, (name, Path(file).read_bytes())) for field, name, file in request.get("files", [])]
        r = client.request(
            request["method"], request["path"], data=request.get("data"), json=request.get("json"),
            files=files or None, timeout=300,
        )  # fmt: skip
        try:
            body = r.json()
        except ValueError:
            body = {"bytes": len(r.content), "content_type": r.headers.get("content-type")}
        return {"status": r.status_code, "body": body}

    results = []
    with TestClient(create_app(Settings(**spec["settings"])), raise_server_exceptions=False) as client:
        for request in spec.get("warmup", []):
            assert send(client, request)["status"] == 200, request["id"]
        limit_address_space()
        for request in spec["requests"]:
            result, growth = measured(lambda request=request: send(client, request))
            results.append({"id": request["id"], **result, "growth_mb": growth})
    return results


def main() -> None:
    mode, cases, out = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])
    results = run_clips(cases) if mode == "clips" else run_api(cases)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()


def run_bounded(mode: str, cases, folder: Path, timeout_s: float = 900) -> dict[str, dict]:
    """Run ``cases`` in a child process (this module) and answer its results by case id."""
    import subprocess

    spec, out = folder / f"{mode}-cases.json", folder / f"{mode}-results.json"
    spec.write_text(json.dumps(cases))
    root = Path(__file__).resolve().parents[1]
    # Two malloc arenas: worker threads' first allocations would otherwise each reserve their own.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.bounded", mode, str(spec), str(out)],
        cwd=root, capture_output=True, text=True, timeout=timeout_s, env=env,
    )  # fmt: skip
    assert done.returncode == 0, f"the bounded child failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return {r["id"]: r for r in json.loads(out.read_text())}
