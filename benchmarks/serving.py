"""Serving throughput and latency under concurrent clients: continuous batching vs one request at a time.

    python benchmarks/serving.py                                  # CPU, both modes, 1/4/16/32 clients
    python benchmarks/serving.py --clients 1,16 --requests 2      # fewer rows
    python benchmarks/serving.py --device cuda --half             # the same on a GPU
    python benchmarks/serving.py --save base.json                 # keep the numbers
    python benchmarks/serving.py --compare benchmarks/baselines/serving-cpu-2cores.json
    python benchmarks/serving.py --prepare                        # print the weights root, for a server
    python benchmarks/serving.py --url http://127.0.0.1:8000 --clients 16   # a running server, over HTTP

The engine runs in-process exactly as the service runs it (model manager, planning, scheduler, GPT
stage, pipeline), once per mode (``continuous_batching`` on, then off), on a weights root of
**full-size** random weights in upstream's layout, written once by the conformance corpus's own
``weights.py`` into ``.cache/bench-weights`` (a few GB): the v2 GPT (s1_v2_full), SoVITS v2ProPlus and
v2 (two voices), BERT, HuBERT and the speaker-verification model. Random GPT weights rarely say EOS,
so every piece decodes until the early stop: the GPT checkpoint's ``max_sec`` is set to
``--max-sec`` (upstream stops a piece at 50 * max_sec tokens), which fixes each piece's length.

Per mode and N clients, each client sends ``--requests`` requests one after another (texts from a fixed
mix: short and long, zh / en / mixed, the two voices alternating, every request seeded). Printed:
throughput (seconds of audio per wall second), p50/p95 latency, GPT tokens/s (tokens kept per wall
second), mean live rows per GPT decode step, and peak memory (CUDA: allocated; CPU: the process's RSS
sampled every 50 ms). ``--compare`` adds each number's ratio to a saved run; the last table compares
the two modes of this run (the goal on CPU: continuous >= 2x the throughput of one-at-a-time at 16
clients, with a lower p95).

``--url``: the same clients and requests sent to a running server's ``POST /inference`` instead (one
replica under ``gsv-server``, or many behind Ray Serve's proxy), started on the ``--prepare`` weights
root. Throughput and latencies then include HTTP (and any proxy); GPT tokens, rows and memory are the
server's and are not measured (0). The answers' ``X-Replica`` headers are counted when present.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine import pipeline  # noqa: E402
from app.engine.checkpoints import load_checkpoint  # noqa: E402
from app.engine.engine import Engine, EngineConfig  # noqa: E402
from app.engine.jobs import ReferenceAudio, SynthesisJob  # noqa: E402
from app.engine.models import t2s_decode  # noqa: E402
from app.engine.registry import BERT_DIR, HUBERT_DIR, SV_CHECKPOINT  # noqa: E402

CACHE = ROOT / ".cache" / "bench-weights"
GPT_NAME = "GPT_weights_v2/bench.ckpt"
VOICES = {"v2ProPlus": "SoVITS_weights_v2/bench-v2ProPlus.pth", "v2": "SoVITS_weights_v2/bench-v2.pth"}
PLACES = {  # relative path in the weights root -> corpus layout (the GPT is written apart: see weights_root)
    VOICES["v2ProPlus"]: "sovits_v2ProPlus_full",
    VOICES["v2"]: "sovits_v2_full",
    BERT_DIR: "bert_full",
    HUBERT_DIR: "hubert_full",
    SV_CHECKPOINT: "sv_eres2netv2_full",
}
TEXTS = [  # (text, language): short and long, zh / en / mixed
    ("今天天气很好。", "all_zh"),
    ("The quick brown fox jumps over the lazy dog.", "en"),
    ("我们明天去公园散步，然后一起吃午饭。", "all_zh"),
    ("这个模型叫 GPT SoVITS，它可以克隆声音。", "zh"),
    ("Streaming speech makes voice agents feel fast. It starts talking before the answer is done.", "en"),
    ("春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", "all_zh"),
]
PROMPT = ("这是一段参考音频。", "all_zh")


def conformance_dir() -> Path:
    return Path(os.environ.get("GSV_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance")).resolve()


def generated(layout: str, seed: int = 7) -> Path:
    """The corpus's weights.py output for ``layout`` (a file or a folder), made once."""
    spec = json.loads((conformance_dir() / "layouts" / f"{layout}.json").read_text(encoding="utf-8"))
    target = CACHE / f"{layout}-{seed}" / (spec.get("file_name") or layout)
    if not target.exists():
        print(f"writing full-size {layout} (once) ...", file=sys.stderr, flush=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(conformance_dir() / "weights.py"), layout, str(seed), str(target)],
            check=True,
        )
    return target


def weights_root(max_sec: float) -> Path:
    """A weights root in upstream's layout (hard links into the cache); the GPT's max_sec rewritten."""
    root = CACHE / f"root-maxsec{max_sec:g}"
    gpt = root / GPT_NAME
    if not gpt.exists():
        checkpoint = load_checkpoint(generated("s1_v2_full"))
        checkpoint["config"]["data"]["max_sec"] = max_sec
        gpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, gpt)
    for rel, layout in PLACES.items():
        source, target = generated(layout), root / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            target.mkdir(exist_ok=True)
            for item in source.iterdir():
                os.link(item, target / item.name)
        else:
            os.link(source, target)
    return root


def reference(seconds: float, seed: int) -> ReferenceAudio:
    """A synthetic 'voice': a few harmonics with vibrato and noise, 32 kHz."""
    rate = 32000
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    f0 = 120 + 40 * seed + 10 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.05 * rng.standard_normal(t.size)
    return ReferenceAudio((0.3 * wave / np.abs(wave).max()).astype(np.float32), rate)


class Counters:
    """GPT tokens kept and live rows per decode step, counted in both modes by wrapping the decode
    loop's entry points (instrumentation only; the computation is the engine's own)."""

    def __init__(self):
        self.tokens = self.steps = self.rows = 0
        self._lock = threading.Lock()
        original_tokens, original_step = pipeline._decode_tokens, t2s_decode.DecodeBatch._decode
        counters = self

        def decode_tokens(*args, **kwargs):  # the pipeline's one GPT call, in either mode
            tokens = original_tokens(*args, **kwargs)
            counters.add_tokens(tokens)
            return tokens

        def step(batch, live):
            with counters._lock:
                counters.steps += 1
                counters.rows += len(live)
            return original_step(batch, live)

        pipeline._decode_tokens = decode_tokens
        t2s_decode.DecodeBatch._decode = step

    def add_tokens(self, tokens) -> None:
        with self._lock:
            self.tokens += sum(len(t) for t in tokens)

    def reset(self) -> None:
        with self._lock:
            self.tokens = self.steps = self.rows = 0


class PeakMemory:
    """Peak memory during a run: CUDA allocated bytes, else the process RSS sampled every 50 ms."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = self._rss()

            def sample():
                while not self._stop.wait(0.05):
                    self.peak = max(self.peak, self._rss())

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())


def make_job(client: int, number: int, voices: list[str] = list(VOICES)) -> tuple[SynthesisJob, str]:  # noqa: B006
    text, lang = TEXTS[(client + number) % len(TEXTS)]
    voice = voices[client % len(voices)]
    job = SynthesisJob(
        text=text,
        text_lang=lang,
        ref_audio=reference(5.0, client % len(VOICES)),
        prompt_text=PROMPT[0],
        prompt_lang=PROMPT[1],
        seed=1000 + 100 * client + number,
        keep_random=False,
        text_split_method="cut5",
    )
    return job, VOICES[voice]


async def drive(
    engine: Engine,
    clients: int,
    requests: int,
    voices: list[str] = list(VOICES),  # noqa: B006
    stages: dict[str, float] | None = None,
) -> tuple[list[float], float]:
    """``clients`` concurrent clients, ``requests`` each in turn: (latencies, seconds of audio).
    ``stages`` (when given) sums each synthesis's seconds per stage (frontend, gpt, decoder)."""
    latencies: list[float] = []
    audio = 0.0

    async def client(i: int) -> None:
        nonlocal audio
        for n in range(requests):
            job, sovits = make_job(i, n, voices)
            started = time.perf_counter()
            result = await engine.synthesize(job, GPT_NAME, sovits)
            latencies.append(time.perf_counter() - started)
            audio += result.seconds
            if stages is not None:
                for stage, seconds in result.stage_seconds.items():
                    stages[stage] = stages.get(stage, 0.0) + seconds

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, audio


async def drive_http(url: str, clients: int, requests: int, voices: list[str]) -> tuple[list[float], float, dict]:
    """``drive`` over HTTP: (latencies, seconds of audio, answers per X-Replica)."""
    import io

    import httpx
    import soundfile as sf

    latencies: list[float] = []
    audio = 0.0
    replicas: dict[str, int] = {}
    clips = {}
    for i in range(len(VOICES)):
        buffer = io.BytesIO()
        ref = reference(5.0, i)
        sf.write(buffer, ref.samples, ref.sample_rate, format="WAV", subtype="PCM_16")
        clips[i] = buffer.getvalue()

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal audio
        for n in range(requests):
            job, sovits = make_job(i, n, voices)
            form = {"text": job.text, "text_lang": job.text_lang, "prompt_text": job.prompt_text,
                    "prompt_lang": job.prompt_lang, "seed": str(job.seed), "keep_random": "false",
                    "text_split_method": job.text_split_method, "gpt_weights": GPT_NAME,
                    "sovits_weights": sovits, "media_type": "raw"}  # fmt: skip
            clip = clips[i % len(VOICES)]
            started = time.perf_counter()
            r = await http.post("/inference", data=form, files={"ref_audio_path": ("ref.wav", clip, "audio/wav")})
            latencies.append(time.perf_counter() - started)
            r.raise_for_status()
            audio += len(r.content) / 2 / int(r.headers["x-sample-rate"])
            replica = r.headers.get("x-replica", "-")
            replicas[replica] = replicas.get(replica, 0) + 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=1800, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return latencies, audio, replicas


def result_row(clients: int, latencies: list[float], audio: float, wall: float, **measured) -> dict:
    """One table row: what every way of driving measures (throughput, latencies), plus ``measured``."""
    latencies = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "wall_s": wall,
        "audio_s": audio,
        "throughput": audio / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        **measured,
    }


def run_http(args) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    # Warm-up: load the voices (twice each, at once, so that several replicas behind a proxy load them).
    asyncio.run(drive_http(args.url, 2 * len(args.voices), 1, args.voices))
    for clients in args.clients:
        started = time.perf_counter()
        latencies, audio, replicas = asyncio.run(drive_http(args.url, clients, args.requests, args.voices))
        wall = time.perf_counter() - started
        # GPT tokens, rows and memory are the server's: not measured over HTTP
        rows[f"http/{clients}"] = result_row(
            clients, latencies, audio, wall, gpt_tokens_per_s=0.0, mean_rows=0.0, peak_mem_gb=0.0, replicas=replicas
        )
        print(format_row(f"http/{clients}", rows[f"http/{clients}"]), f" answers per replica: {replicas}", flush=True)
    return rows


def run_mode(root: Path, continuous: bool, args, counters: Counters) -> dict[str, dict]:
    config = EngineConfig(
        weights_root=root,
        device=args.device,
        half=args.half,
        max_queue=max(args.clients) * args.requests + 8,
        continuous_batching=continuous,
        gpt_slots=args.slots,
        gpt_context=args.context,
    )
    engine = Engine(config)
    engine.start()
    mode = "continuous" if continuous else "one-at-a-time"
    rows: dict[str, dict] = {}
    try:
        asyncio.run(drive(engine, len(args.voices), 1, args.voices))  # warm-up: load the voices
        for clients in args.clients:
            counters.reset()
            stages: dict[str, float] = {}
            with PeakMemory(engine.device) as memory:
                started = time.perf_counter()
                latencies, audio = asyncio.run(drive(engine, clients, args.requests, args.voices, stages))
                wall = time.perf_counter() - started
            rows[f"{mode}/{clients}"] = result_row(
                clients,
                latencies,
                audio,
                wall,
                gpt_tokens_per_s=counters.tokens / wall,
                mean_rows=counters.rows / counters.steps if counters.steps else 0.0,
                peak_mem_gb=memory.peak / 2**30,
                stage_s=stages,
            )
            print(format_row(f"{mode}/{clients}", rows[f"{mode}/{clients}"]), flush=True)
            # Summed over the requests; a request's GPT seconds include its wait in the shared batch.
            print(f"{'':<22}stage seconds summed: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    finally:
        engine.stop()
    return rows


COLUMNS = [  # (key, header, format)
    ("requests", "reqs", "{:.0f}"),
    ("wall_s", "wall s", "{:.1f}"),
    ("throughput", "audio s/s", "{:.3f}"),
    ("p50_s", "p50 s", "{:.2f}"),
    ("p95_s", "p95 s", "{:.2f}"),
    ("gpt_tokens_per_s", "GPT tok/s", "{:.1f}"),
    ("mean_rows", "rows/step", "{:.2f}"),
    ("peak_mem_gb", "peak GB", "{:.2f}"),
]


def format_row(name: str, row: dict) -> str:
    return f"{name:<22}" + "".join(f"{fmt.format(row[key]):>12}" for key, _, fmt in COLUMNS)


def format_table(results: dict[str, dict], baseline: dict[str, dict] | None = None) -> list[str]:
    lines = [f"{'row':<22}" + "".join(f"{header:>12}" for _, header, _ in COLUMNS)]
    for name, row in results.items():
        lines.append(format_row(name, row))
        if baseline and name in baseline:
            ratios = [
                row[key] / baseline[name][key] if baseline[name][key] else float("nan")
                for key, _, _ in COLUMNS
            ]
            lines.append(f"{'  x baseline':<22}" + "".join(f"{r:>12.2f}" for r in ratios))
    return lines


def mode_comparison(results: dict[str, dict]) -> list[str]:
    """continuous / one-at-a-time, per client count present in both."""
    lines = [f"{'clients':<22}{'throughput x':>14}{'p95 ratio':>12}"]
    for name, row in results.items():
        if not name.startswith("continuous/"):
            continue
        other = results.get(name.replace("continuous/", "one-at-a-time/"))
        if other:
            lines.append(
                f"{row['clients']:<22}{row['throughput'] / other['throughput']:>14.2f}{row['p95_s'] / other['p95_s']:>12.2f}"
            )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 32])
    parser.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    parser.add_argument("--modes", default="continuous,one-at-a-time")
    parser.add_argument(
        "--voices", type=lambda s: s.split(","), default=list(VOICES), help="v2ProPlus,v2 (clients alternate)"
    )
    parser.add_argument(
        "--max-sec", type=float, default=2.0, help="the GPT's max_sec: 50 x this tokens a piece"
    )
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--url", help="drive a running server over HTTP instead of an in-process engine")
    parser.add_argument("--prepare", action="store_true", help="write the weights root, print its path, exit")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = weights_root(args.max_sec)
    if args.prepare:
        print(root)
        return
    counters = Counters()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"device {args.device}{' half' if args.half else ''}, {args.requests} request(s) per client, "
        f"max_sec {args.max_sec:g}, {args.slots} slots, voices {','.join(args.voices)}"
    )
    results: dict[str, dict] = {}
    if args.url:
        print(f"# over HTTP: {args.url} (a server on {root}, --max-sec {args.max_sec:g})")
        results.update(run_http(args))
        modes = []
    for mode in modes:
        results.update(run_mode(root, mode == "continuous", args, counters))
    baseline = json.loads(args.compare.read_text())["results"] if args.compare else None
    print("\n".join(format_table(results, baseline)))
    print("\ncontinuous vs one-at-a-time, this run:")
    print("\n".join(mode_comparison(results)))
    if args.save:
        meta = {"device": args.device, "half": args.half, "cores": os.cpu_count(), "torch": torch.__version__}
        args.save.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
