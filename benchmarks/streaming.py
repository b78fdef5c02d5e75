"""Time to first audio over HTTP: /inference with streaming_mode 0-3, one client and many.

    python benchmarks/streaming.py                          # CPU: modes 0-3, 1 and 16 clients
    python benchmarks/streaming.py --clients 1 --modes 0,2  # fewer rows
    python benchmarks/streaming.py --device cuda --half     # the same on a GPU
    python benchmarks/streaming.py --save base.json
    python benchmarks/streaming.py --compare benchmarks/baselines/streaming-cpu-2cores.json

The service runs in-process behind uvicorn on a local port (the app ``make run`` serves), on the
serving benchmark's weights root of **full-size** random weights (``benchmarks/serving.py``: the v2
GPT with ``max_sec`` fixed so every piece decodes 50 x max_sec tokens, SoVITS v2ProPlus, BERT, HuBERT,
SV). Each client posts the same 6-sentence text (cut3: one piece per sentence, at each 。) with its own seed and
reads the streamed answer; measured per request: TTFA (from sending the request to the first byte of
audio) and the total time. Mode 0 uses /inference's defaults (all pieces in one parallel batch: the
fastest way to the whole answer); modes 1-3 use batch_size 1 (api_v2's default; mode 1 would
otherwise be one chunk). The last table gives each mode's TTFA as a share of mode 0's total time at
the same client count (the goal on CPU at 1 client: modes 2/3 <= 15 %).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import soundfile as sf
import torch
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "benchmarks" / "serving.py")
serving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving)

TEXT = (
    "今天天气很好，我们一起去公园散步吧。公园里的花都开了，红的黄的白的，非常漂亮。"
    "湖边有很多人在钓鱼，也有孩子在放风筝。我们找了一张长椅坐下来，聊了很久。"
    "太阳快下山的时候，天空变成了橘红色。最后我们慢慢走回家，觉得这一天过得很愉快。"
)
SENTENCES = 6


def reference_wav(seed: int) -> bytes:
    clip = serving.reference(5.0, seed)
    buffer = io.BytesIO()
    sf.write(buffer, clip.samples, clip.sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class Server:
    """The app on a free local port, in a thread, for the block."""

    def __init__(self, settings: Settings):
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def form(mode: int, seed: int) -> dict[str, str]:
    fields = {
        "text": TEXT, "text_lang": "all_zh", "prompt_text": serving.PROMPT[0], "prompt_lang": "all_zh",
        "text_split_method": "cut3", "seed": str(seed), "keep_random": "false", "streaming_mode": str(mode),
        "gpt_weights": serving.GPT_NAME, "sovits_weights": serving.VOICES["v2ProPlus"], "media_type": "wav",
    }  # fmt: skip
    if mode:
        fields["batch_size"] = "1"
    return fields


async def one_request(client: httpx.AsyncClient, url: str, mode: int, seed: int, ref: bytes) -> tuple[float, float, int]:  # fmt: skip
    """(TTFA s, total s, audio bytes) of one streamed request."""
    started = time.perf_counter()
    first = None
    size = 0
    files = {"ref_audio_path": ("ref.wav", ref, "audio/wav")}
    async with client.stream("POST", f"{url}/inference", data=form(mode, seed), files=files) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for data in response.aiter_raw():
            if first is None and data:
                first = time.perf_counter() - started
            size += len(data)
    return first or 0.0, time.perf_counter() - started, size


async def drive(url: str, mode: int, clients: int, ref: bytes) -> list[tuple[float, float, int]]:
    async with httpx.AsyncClient(timeout=3600) as client:
        return await asyncio.gather(*(one_request(client, url, mode, 100 + i, ref) for i in range(clients)))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


COLUMNS = [  # (key, header, format)
    ("ttfa_p50_s", "TTFA p50", "{:.2f}"),
    ("ttfa_p95_s", "TTFA p95", "{:.2f}"),
    ("total_p50_s", "total p50", "{:.2f}"),
    ("total_p95_s", "total p95", "{:.2f}"),
    ("audio_s", "audio s", "{:.1f}"),
]


def format_table(results: dict[str, dict], baseline: dict[str, dict] | None = None) -> list[str]:
    lines = [f"{'row':<16}" + "".join(f"{h:>12}" for _, h, _ in COLUMNS)]
    for name, row in results.items():
        lines.append(f"{name:<16}" + "".join(f"{fmt.format(row[key]):>12}" for key, _, fmt in COLUMNS))
        if baseline and name in baseline:
            old = baseline[name]
            lines.append(
                f"{'  vs baseline':<16}"
                + "".join(f"{row[k] / old[k] if old[k] else float('nan'):>11.2f}x" for k, _, _ in COLUMNS)
            )
    return lines


def ttfa_shares(results: dict[str, dict]) -> list[str]:
    """Each row's TTFA p50 as a share of mode 0's total p50 at the same client count."""
    lines = []
    for name, row in results.items():
        mode, clients = name.split("/")
        whole = results.get(f"mode0/{clients}")
        if whole and mode != "mode0":
            lines.append(f"{name:<16} TTFA p50 = {100 * row['ttfa_p50_s'] / whole['total_p50_s']:.1f} % of mode 0's total")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--modes", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2, 3])
    parser.add_argument("--max-sec", type=float, default=2.0, help="the GPT's max_sec: 50 x this tokens a piece")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args(argv)

    root = serving.weights_root(args.max_sec)
    settings = Settings(
        weights_root=root, device=args.device, half=args.half, max_queue=max(args.clients) + 8,
        max_text_chars=10_000,
    )  # fmt: skip
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"device {args.device}{' half' if args.half else ''}, {SENTENCES} sentences, max_sec {args.max_sec:g}"
    )
    ref = reference_wav(0)
    results: dict[str, dict] = {}
    with Server(settings) as url:
        asyncio.run(drive(url, 0, 1, ref))  # warm-up: loads the voice
        for clients in args.clients:
            for mode in args.modes:
                rows = asyncio.run(drive(url, mode, clients, ref))
                ttfa, total = [r[0] for r in rows], [r[1] for r in rows]
                results[f"mode{mode}/{clients}"] = row = {
                    "clients": clients,
                    "ttfa_p50_s": statistics.median(ttfa),
                    "ttfa_p95_s": pct(ttfa, 0.95),
                    "total_p50_s": statistics.median(total),
                    "total_p95_s": pct(total, 0.95),
                    "audio_s": (statistics.median([r[2] for r in rows]) - 44) / 2 / 32000,
                }
                print(format_table({f"mode{mode}/{clients}": row})[1], flush=True)
    baseline = json.loads(args.compare.read_text())["results"] if args.compare else None
    print("\n".join(format_table(results, baseline)))
    print("\nTTFA as a share of the whole answer's time (mode 0), this run:")
    print("\n".join(ttfa_shares(results)))
    if args.save:
        meta = {"device": args.device, "half": args.half, "cores": os.cpu_count(), "torch": torch.__version__}
        args.save.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
