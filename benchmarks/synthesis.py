"""Synthesis speed with full-size random weights: GPT tokens/s and real-time factor (RTF).

    python benchmarks/synthesis.py                        # CPU, every row (v3/v4 take minutes)
    python benchmarks/synthesis.py --cases v2,v4/steps8   # only some rows: versions or row names
    python benchmarks/synthesis.py --device cuda --half   # the same on a GPU
    python benchmarks/synthesis.py --save base.json       # keep the numbers
    python benchmarks/synthesis.py --compare base.json    # ratios against a saved run

Rows:

- ``v2/batchN``, ``v2ProPlus/batchN`` (``--batches``): GPT on N rows at once, then SoVITS decodes
  each row to audio.
- ``v3/stepsS``, ``v4/stepsS`` (``--steps``): GPT on one row, then the service's own v3/v4 decoder,
  ``app.engine.decoders.VocoderDecoder``, in its default batched (``parallel_infer``) mode: SoVITS v3/v4
  content features, the flow-matching sampler (a 22-block DiT, ``S`` Euler steps) continuing a
  reference mel in chunks, the vocoder (v3: BigVGAN 24 kHz, v4: HiFi-GAN 48 kHz), the chunks
  cross-faded. The reference is synthetic (random spectrogram and normalised mel of a 6 s clip), so
  no Voice is needed. The sampler and vocoder seconds are measured by wrapping
  ``cfm.inference`` and the vocoder's ``forward`` for the timed call only.

Models are built at the official sizes from the configs recorded in the conformance layouts
(``$GSV_CONFORMANCE_DIR/layouts/*_full.json``) with random weights, one SoVITS family at a time
(freed before the next). Token counts are fixed: the EOS logit is disabled, so every row decodes
exactly ``--tokens`` tokens. "decode s" is everything after GPT (v2: SoVITS; v3/v4: features +
sampler + vocoder + cross-fade). RTF = (GPT + decode seconds) / seconds of audio produced; below 1
is faster than real time. Every row is run once untimed first (v3/v4: with one Euler step).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.decoders import (  # noqa: E402
    DecodeSettings,
    ReferenceConditioning,
    Vocoder,
    VocoderDecoder,
)
from app.engine.models.sovits import SPEAKER_EMBEDDING_DIM, SoVITSConfig, SoVITSSynthesizer  # noqa: E402
from app.engine.models.sovits_v3 import MEL_BINS, SoVITSV3, SoVITSV3Config  # noqa: E402
from app.engine.models.t2s import T2SConfig, T2SModel  # noqa: E402
from app.engine.models.vocoders import (  # noqa: E402
    BigVGANConfig,
    BigVGANVocoder,
    HiFiGANV4Config,
    HiFiGANVocoderV4,
)

CODES_PER_SECOND = 25
PROMPT_TOKENS = 150  # a 6 s reference clip
PHONES_PER_ROW = 80
PROMPT_PHONES = 30  # phones of the reference text (v3/v4 decode them with the prompt codes)
PHONE_ID_LIMIT = 700  # random phone ids below this fit every symbol table

SOVITS_VERSIONS = ("v2", "v2ProPlus")  # SoVITS decodes audio itself: one row per GPT batch size
VOCODER_VERSIONS = ("v3", "v4")  # sampler + vocoder: one row per sample_steps


def layout(name: str) -> dict:
    folder = Path(os.environ.get("GSV_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance")) / "layouts"
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- which rows


def all_cases(batches: Sequence[int], steps: Sequence[int]) -> list[str]:
    """Every row name, in the order they run."""
    rows = [f"{version}/batch{b}" for version in SOVITS_VERSIONS for b in batches]
    rows += [f"{version}/steps{s}" for version in VOCODER_VERSIONS for s in steps]
    return rows


def select_cases(available: Sequence[str], selectors: str | None) -> list[str]:
    """The rows ``--cases`` asks for: comma-separated versions (all their rows) or row names.

    None or empty: every row. Rows keep the order of ``available``. Raises ValueError naming any
    selector that matches nothing (a typo must not silently measure nothing).
    """
    if not selectors or not selectors.strip():
        return list(available)
    wanted = {s.strip() for s in selectors.split(",") if s.strip()}

    def chosen(row: str, selector: str) -> bool:
        return row == selector or row.split("/")[0] == selector

    unknown = sorted(s for s in wanted if not any(chosen(row, s) for row in available))
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; rows are: {', '.join(available)}")
    return [row for row in available if any(chosen(row, s) for s in wanted)]


def version_of(case: str) -> str:
    return case.split("/")[0]


# --------------------------------------------------------------------------- models


def build_t2s(device: str, dtype: torch.dtype, layout_name: str = "s1_v2_full") -> T2SModel:
    torch.manual_seed(0)
    model = T2SModel(T2SConfig.from_checkpoint_config(layout(layout_name)["config"]))
    with torch.no_grad():  # never stop early: a bias of -1e4 on EOS keeps every row decoding
        head = torch.nn.Linear(model.config.dim, model.config.vocab_size, bias=True)
        head.weight.copy_(model.to_logits.weight)
        head.bias.zero_()
        head.bias[model.config.eos_id] = -1e4
        model.to_logits = head
    return model.to(device=device, dtype=dtype).eval()


def _text_embedding_shape(spec: dict) -> dict[str, torch.Tensor]:
    """The configs read the symbol count off the text embedding; a meta tensor gives its shape for free."""
    shapes = {key: shape for key, shape, _ in spec["tensors"]}
    key = "enc_p.text_embedding.weight"
    return {key: torch.empty(shapes[key], device="meta")}


def build_sovits(version: str, device: str, dtype: torch.dtype) -> SoVITSSynthesizer:
    spec = layout(f"sovits_{version}_full")
    header = (spec.get("header") or "PK").encode()
    torch.manual_seed(0)
    model = SoVITSSynthesizer(SoVITSConfig.from_checkpoint(spec["config"], _text_embedding_shape(spec), header))
    return model.to(device=device, dtype=dtype).eval()


def build_vocoder(version: str) -> Vocoder:
    if version == "v3":
        return BigVGANVocoder(BigVGANConfig.from_json(layout("bigvgan_v3_full")["config"]))
    args = layout("vocoder_v4_full")["config"]["generator_args"]
    return HiFiGANVocoderV4(
        HiFiGANV4Config(
            num_mels=int(args["initial_channel"]),
            upsample_rates=tuple(args["upsample_rates"]),
            upsample_kernel_sizes=tuple(args["upsample_kernel_sizes"]),
            upsample_initial_channel=int(args["upsample_initial_channel"]),
            resblock_kernel_sizes=tuple(args["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(d) for d in args["resblock_dilation_sizes"]),
        )
    )


def build_vocoder_decoder(version: str, device: str, dtype: torch.dtype) -> VocoderDecoder:
    """The service's v3/v4 decoder around a full-size SoVITS v3/v4 (its DiT included) and vocoder."""
    spec = layout(f"sovits_{version}_base_full")
    torch.manual_seed(0)
    sovits = SoVITSV3(SoVITSV3Config.from_checkpoint(spec["config"], _text_embedding_shape(spec), version))
    vocoder = build_vocoder(version)
    return VocoderDecoder(
        sovits.to(device=device, dtype=dtype).eval(), vocoder.to(device=device, dtype=dtype).eval()
    )


def synthetic_reference(
    decoder: VocoderDecoder, data_config: dict, seconds: float, device: str, generator: torch.Generator
) -> ReferenceConditioning:
    """What ``Voice.conditioning`` would give for a ``seconds`` clip, with random values: the linear
    spectrogram at the SoVITS rate (the style encoder's input) and the normalised mel (the sampler's prompt)."""
    bins = int(data_config["filter_length"]) // 2 + 1
    spec_frames = int(seconds * data_config["sampling_rate"] / data_config["hop_length"])
    mel_config = decoder.variant.mel
    mel_frames = int(seconds * mel_config.sampling_rate / mel_config.hop_length)
    spectrogram = torch.rand(1, bins, spec_frames, generator=generator)
    mel = torch.rand(1, MEL_BINS, mel_frames, generator=generator) * 2 - 1
    return ReferenceConditioning(spectrogram.to(device), None, mel.to(device))


# --------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def stage_timers(decoder: VocoderDecoder, device: str) -> Iterator[dict[str, float]]:
    """Seconds spent in the sampler (``cfm``) and the vocoder while the block runs.

    Wraps the bound methods with instance attributes (the decoder calls them through the instances)
    and removes the wrappers afterwards, so the models are left as they were.
    """
    seconds = {"cfm": 0.0, "vocoder": 0.0}
    targets = [(decoder.model.cfm, "inference", "cfm"), (decoder.vocoder, "forward", "vocoder")]

    def timed(method, stage: str):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            sync(device)
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                sync(device)
                seconds[stage] += time.perf_counter() - start

        return wrapper

    for module, name, stage in targets:
        setattr(module, name, timed(getattr(module, name), stage))
    try:
        yield seconds
    finally:
        for module, name, _ in targets:
            delattr(module, name)  # the class's method shows through again


def run_case(t2s, sovits, batch: int, tokens: int, device: str, dtype: torch.dtype) -> dict:
    """A v1/v2-family row: GPT on ``batch`` rows, then SoVITS decodes each row."""
    g = torch.Generator().manual_seed(0)
    phones = [torch.randint(0, PHONE_ID_LIMIT, (PHONES_PER_ROW,), generator=g) for _ in range(batch)]
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


def run_vocoder_case(
    t2s: T2SModel,
    decoder: VocoderDecoder,
    sample_steps: int,
    tokens: int,
    device: str,
    data_config: dict,
    prompt_tokens: int = PROMPT_TOKENS,
) -> dict:
    """A v3/v4 row: GPT on one row, then ``decoder.fragments`` as the pipeline calls it (batched mode).

    ``data_config``: the SoVITS checkpoint's ``data`` section (sizes the reference spectrogram).
    """
    g = torch.Generator().manual_seed(0)
    phones = torch.randint(0, PHONE_ID_LIMIT, (PHONES_PER_ROW,), generator=g)
    berts = [torch.zeros(1024, PHONES_PER_ROW)]
    prompt_codes = torch.randint(0, 1024, (prompt_tokens,), generator=g)
    prompt_phones = torch.randint(0, PHONE_ID_LIMIT, (PROMPT_PHONES,), generator=g).tolist()
    reference = synthetic_reference(decoder, data_config, prompt_tokens / CODES_PER_SECOND, device, g)

    def gpt() -> list[torch.Tensor]:
        return t2s.generate([phones], berts, prompt_codes, top_k=5, early_stop_num=tokens, parallel=True,
                            generator=torch.Generator(device=device).manual_seed(1))

    def decode(rows: list[torch.Tensor], steps: int) -> list[torch.Tensor]:
        settings = DecodeSettings(
            speed=1.0, noise_scale=0.5, generator=torch.Generator(device=device).manual_seed(2),
            prompt_codes=prompt_codes, prompt_phone_ids=prompt_phones, sample_steps=steps, batched=True,
        )
        return decoder.fragments([row[-tokens:] for row in rows], [phones], [reference], settings)

    rows = gpt()  # warm-up: one Euler step already runs every layer once
    decode(rows, 1)
    sync(device)
    start = time.perf_counter()
    rows = gpt()
    sync(device)
    gpt_s = time.perf_counter() - start
    with stage_timers(decoder, device) as stages:
        start = time.perf_counter()
        audio = decode(rows, sample_steps)
        sync(device)
        decode_s = time.perf_counter() - start
    n_tokens = sum(len(r) for r in rows)
    audio_s = sum(a.numel() for a in audio) / decoder.sample_rate
    return {
        "tokens": int(n_tokens),
        "gpt_s": gpt_s,
        "gpt_tokens_per_s": n_tokens / gpt_s,
        "sovits_s": decode_s,  # the same key as the v2 rows: everything after GPT
        "cfm_s": stages["cfm"],
        "vocoder_s": stages["vocoder"],
        "sample_steps": sample_steps,
        "audio_s": audio_s,
        "rtf": (gpt_s + decode_s) / audio_s,
    }


# --------------------------------------------------------------------------- report


def format_table(results: dict[str, dict], baseline: dict[str, dict] | None = None) -> list[str]:
    """The result table's lines; with a baseline, speed ratios (above 1: faster now) or "new"."""

    def seconds(row: dict, key: str) -> str:
        return f"{row[key]:>8.2f}" if key in row else f"{'-':>8}"

    header = (f"{'case':<18}{'tokens':>7}{'GPT s':>8}{'GPT tok/s':>11}{'decode s':>10}{'CFM s':>8}"
              f"{'voc s':>8}{'audio s':>9}{'RTF':>7}")
    lines = [header + (f"{'tok/s vs':>10}{'RTF vs':>8}" if baseline else "")]
    for key, r in results.items():
        line = (f"{key:<18}{r['tokens']:>7}{r['gpt_s']:>8.2f}{r['gpt_tokens_per_s']:>11.1f}"
                f"{r['sovits_s']:>10.2f}{seconds(r, 'cfm_s')}{seconds(r, 'vocoder_s')}"
                f"{r['audio_s']:>9.1f}{r['rtf']:>7.3f}")
        if baseline:
            if key in baseline:
                b = baseline[key]
                line += f"{r['gpt_tokens_per_s'] / b['gpt_tokens_per_s']:>9.2f}x{b['rtf'] / r['rtf']:>7.2f}x"
            else:
                line += f"{'new':>10}"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true", help="float16 on CUDA")
    parser.add_argument("--tokens", type=int, default=150, help="semantic tokens per row (25 per second)")
    parser.add_argument("--batches", default="1,8", help="GPT batch sizes of the v2/v2ProPlus rows")
    parser.add_argument("--steps", default="8,32", help="sample_steps of the v3/v4 rows")
    parser.add_argument("--cases", "--versions", dest="cases", default=None,
                        help="rows to run: versions (v2,v4) and/or row names (v3/steps8); default: all")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args(argv)
    available = all_cases([int(b) for b in args.batches.split(",")], [int(s) for s in args.steps.split(",")])
    try:
        cases = select_cases(available, args.cases)
    except ValueError as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float16 if args.half and args.device.startswith("cuda") else torch.float32
    baseline = json.loads(args.compare.read_text())["results"] if args.compare else {}

    t2s = build_t2s(args.device, dtype)
    results = {}
    for version in dict.fromkeys(version_of(case) for case in cases):  # one model family at a time
        rows = [case for case in cases if version_of(case) == version]
        if version in VOCODER_VERSIONS:
            decoder = build_vocoder_decoder(version, args.device, dtype)
            data_config = layout(f"sovits_{version}_base_full")["config"]["data"]
            for case in rows:
                steps = int(case.removeprefix(f"{version}/steps"))
                with torch.inference_mode():
                    results[case] = run_vocoder_case(t2s, decoder, steps, args.tokens, args.device, data_config)
                print(f"  measured {case}", file=sys.stderr)
            del decoder
        else:
            sovits = build_sovits(version, args.device, dtype)
            for case in rows:
                batch = int(case.removeprefix(f"{version}/batch"))
                with torch.inference_mode():
                    results[case] = run_case(t2s, sovits, batch, args.tokens, args.device, dtype)
                print(f"  measured {case}", file=sys.stderr)
            del sovits
        gc.collect()  # the next family's weights should not share memory with these
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {args.device} ({device_name}), dtype: {str(dtype).removeprefix('torch.')}, "
          f"threads: {torch.get_num_threads()}, tokens/row: {args.tokens}, load average: {load:.1f}")
    print("\n".join(format_table(results, baseline)))
    if args.save:
        meta = {"device": args.device, "dtype": str(dtype), "tokens": args.tokens, "threads": torch.get_num_threads()}
        args.save.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
