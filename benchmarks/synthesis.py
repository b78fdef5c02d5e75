"""Synthesis speed with full-size random weights: GPT tokens/s and real-time factor (RTF).

    python benchmarks/synthesis.py                       # CPU, batch 1 and 8, v2 and v2ProPlus
    python benchmarks/synthesis.py --device cuda --half  # the same on a GPU
    python benchmarks/synthesis.py --save base.json      # keep the numbers
    python benchmarks/synthesis.py --compare base.json   # ratios against a saved run

Models are built at the official sizes from the configs recorded in the conformance layouts
(``$GSV_CONFORMANCE_DIR/layouts/*_full.json``) with random weights. Token counts are fixed: the EOS
logit is disabled, so every row decodes exactly ``--tokens`` tokens. RTF = (GPT + SoVITS seconds) /
seconds of audio produced; below 1 is faster than real time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.models.sovits import SPEAKER_EMBEDDING_DIM, SoVITSConfig, SoVITSSynthesizer  # noqa: E402
from app.engine.models.t2s import T2SConfig, T2SModel  # noqa: E402

CODES_PER_SECOND = 25
PROMPT_TOKENS = 150  # a 6 s reference clip
PHONES_PER_ROW = 80


def layout(name: str) -> dict:
    folder = Path(os.environ.get("GSV_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance")) / "layouts"
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


def build_t2s(device: str, dtype: torch.dtype) -> T2SModel:
    torch.manual_seed(0)
    model = T2SModel(T2SConfig.from_checkpoint_config(layout("s1_v2_full")["config"]))
    with torch.no_grad():  # never stop early: a bias of -1e4 on EOS keeps every row decoding
        head = torch.nn.Linear(model.config.dim, model.config.vocab_size, bias=True)
        head.weight.copy_(model.to_logits.weight)
        head.bias.zero_()
        head.bias[model.config.eos_id] = -1e4
        model.to_logits = head
    return model.to(device=device, dtype=dtype).eval()


def build_sovits(version: str, device: str, dtype: torch.dtype) -> SoVITSSynthesizer:
    spec = layout(f"sovits_{version}_full")
    header = (spec.get("header") or "PK").encode()
    shapes = {key: shape for key, shape, _ in spec["tensors"]}
    fake_state = {"enc_p.text_embedding.weight": torch.empty(shapes["enc_p.text_embedding.weight"], device="meta")}
    torch.manual_seed(0)
    model = SoVITSSynthesizer(SoVITSConfig.from_checkpoint(spec["config"], fake_state, header))
    return model.to(device=device, dtype=dtype).eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_case(t2s, sovits, batch: int, tokens: int, device: str, dtype: torch.dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    phones = [torch.randint(0, 700, (PHONES_PER_ROW,), generator=g) for _ in range(batch)]
    berts = [torch.zeros(1024, PHONES_PER_ROW) for _ in range(batch)]
    prompt = torch.randint(0, 1024, (PROMPT_TOKENS,), generator=g)
    cfg = sovits.config
    refer = torch.rand(1, cfg.spec_channels, 200, generator=g).to(device=device, dtype=dtype)
    sv = [torch.randn(1, SPEAKER_EMBEDDING_DIM, generator=g).to(device=device, dtype=dtype)] if cfg.uses_speaker_embedding else None

    def gpt():
        return t2s.generate(phones, berts, prompt, top_k=5, early_stop_num=tokens, parallel=True,
                            generator=torch.Generator(device=device).manual_seed(1))

    def vits(rows):
        for row in rows:
            codes = row[-tokens:].view(1, 1, -1)
            sovits.decode(codes, phones[0].view(1, -1), [refer], sv_embs=sv, noise_scale=0.5)

    rows = gpt()  # warm-up (allocations, lazy init)
    vits(rows[:1])
    sync(device)
    start = time.perf_counter()
    rows = gpt()
    sync(device)
    gpt_s = time.perf_counter() - start
    start = time.perf_counter()
    vits(rows)
    sync(device)
    vits_s = time.perf_counter() - start
    audio_s = sum(len(r) for r in rows) / CODES_PER_SECOND
    return {
        "tokens": int(sum(len(r) for r in rows)),
        "gpt_s": gpt_s,
        "gpt_tokens_per_s": sum(len(r) for r in rows) / gpt_s,
        "sovits_s": vits_s,
        "audio_s": audio_s,
        "rtf": (gpt_s + vits_s) / audio_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true", help="float16 on CUDA")
    parser.add_argument("--tokens", type=int, default=150, help="semantic tokens per row (25 per second)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--versions", default="v2,v2ProPlus")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float16 if args.half and args.device.startswith("cuda") else torch.float32

    t2s = build_t2s(args.device, dtype)
    results = {}
    for version in args.versions.split(","):
        sovits = build_sovits(version, args.device, dtype)
        for batch in (int(b) for b in args.batches.split(",")):
            key = f"{version}/batch{batch}"
            with torch.inference_mode():
                results[key] = run_case(t2s, sovits, batch, args.tokens, args.device, dtype)
            print(f"  measured {key}", file=sys.stderr)
    baseline = json.loads(args.compare.read_text())["results"] if args.compare else {}

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {args.device} ({device_name}), dtype: {str(dtype).removeprefix('torch.')}, "
          f"threads: {torch.get_num_threads()}, tokens/row: {args.tokens}, load average: {load:.1f}")
    header = f"{'case':<18}{'tokens':>7}{'GPT s':>8}{'GPT tok/s':>11}{'SoVITS s':>10}{'audio s':>9}{'RTF':>7}"
    print(header + (f"{'tok/s vs':>10}{'RTF vs':>8}" if baseline else ""))
    for key, r in results.items():
        line = (f"{key:<18}{r['tokens']:>7}{r['gpt_s']:>8.2f}{r['gpt_tokens_per_s']:>11.1f}"
                f"{r['sovits_s']:>10.2f}{r['audio_s']:>9.1f}{r['rtf']:>7.3f}")
        if key in baseline:
            b = baseline[key]
            line += f"{r['gpt_tokens_per_s'] / b['gpt_tokens_per_s']:>9.2f}x{b['rtf'] / r['rtf']:>7.2f}x"
        print(line)
    if args.save:
        meta = {"device": args.device, "dtype": str(dtype), "tokens": args.tokens, "threads": torch.get_num_threads()}
        args.save.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
