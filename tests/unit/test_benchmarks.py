"""benchmarks/synthesis.py: row selection (--cases), the --compare table, and a v3/v4 row on tiny models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from app.engine.decoders import VocoderDecoder
from app.engine.models.dit import DiTConfig
from app.engine.models.sovits_v3 import SoVITSV3, SoVITSV3Config
from app.engine.models.vocoders import HiFiGANV4Config, HiFiGANVocoderV4

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "synthesis.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_synthesis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- --cases


def test_all_cases_lists_every_family(bench):
    assert bench.all_cases([1, 8], [8, 32]) == [
        "v2/batch1", "v2/batch8", "v2ProPlus/batch1", "v2ProPlus/batch8",
        "v3/steps8", "v3/steps32", "v4/steps8", "v4/steps32",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (None, ["v2/batch1", "v2ProPlus/batch1", "v3/steps8", "v3/steps32", "v4/steps8", "v4/steps32"]),
        ("  ", ["v2/batch1", "v2ProPlus/batch1", "v3/steps8", "v3/steps32", "v4/steps8", "v4/steps32"]),
        # A version selects all its rows, and only its own: "v2" is not a prefix match for v2ProPlus.
        ("v2", ["v2/batch1"]),
        ("v4", ["v4/steps8", "v4/steps32"]),
        # Row names and versions mix; the run order is the plan's, not the argument's.
        ("v4/steps8, v2ProPlus,v3/steps32", ["v2ProPlus/batch1", "v3/steps32", "v4/steps8"]),
        ("v3,v3/steps8", ["v3/steps8", "v3/steps32"]),
    ],
)
def test_select_cases(bench, selectors, expected):
    available = bench.all_cases([1], [8, 32])
    assert bench.select_cases(available, selectors) == expected


def test_unknown_case_is_refused(bench):
    available = bench.all_cases([1, 8], [8, 32])
    with pytest.raises(ValueError, match="v5, v9/steps8"):
        bench.select_cases(available, "v4,v9/steps8,v5")
    with pytest.raises(ValueError, match="v3/steps16"):  # a step count not in --steps
        bench.select_cases(available, "v3/steps16")


def test_main_rejects_unknown_case_before_building_models(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--cases", "v7"])
    assert "unknown case(s) v7" in capsys.readouterr().err


# --------------------------------------------------------------------------- --compare table


def _row(gpt_tokens_per_s: float, rtf: float, **extra) -> dict:
    return {"tokens": 150, "gpt_s": 1.0, "gpt_tokens_per_s": gpt_tokens_per_s, "sovits_s": 2.0,
            "audio_s": 6.0, "rtf": rtf, **extra}  # fmt: skip


def test_compare_against_an_old_file_marks_new_rows(bench, tmp_path):
    old = tmp_path / "old.json"  # the format saved before v3/v4 rows existed
    old.write_text(json.dumps({"meta": {"device": "cpu"}, "results": {"v2/batch1": _row(100.0, 0.5)}}))
    baseline = json.loads(old.read_text())["results"]
    results = {
        "v2/batch1": _row(150.0, 0.25),
        "v4/steps8": _row(50.0, 4.0, cfm_s=30.5, vocoder_s=4.25, sample_steps=8),
    }
    header, v2_line, v4_line = bench.format_table(results, baseline)
    assert header.split()[-4:] == ["tok/s", "vs", "RTF", "vs"]
    assert v2_line.split()[-2:] == ["1.50x", "2.00x"]  # 1.5x the tokens/s, half the RTF
    assert v2_line.split()[5:7] == ["-", "-"]  # no CFM / vocoder stage in a v2 row
    assert v4_line.split()[5:7] == ["30.50", "4.25"]
    assert v4_line.split()[-1] == "new"


def test_table_without_baseline_has_no_ratio_columns(bench):
    header, line = bench.format_table({"v3/steps32": _row(40.0, 9.0, cfm_s=1.0, vocoder_s=2.0)})
    assert "vs" not in header and "new" not in line
    assert line.split()[0] == "v3/steps32" and line.split()[-1] == "9.000"


# --------------------------------------------------------------------------- a v3/v4 row, tiny models


def _tiny_decoder() -> VocoderDecoder:
    torch.manual_seed(0)
    config = SoVITSV3Config(
        version="v4", n_symbols=732, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=2,
        kernel_size=3, inter_channels=16, gin_channels=512,  # MRTE adds ge to its 512-wide hidden state
        dit=DiTConfig(dim=32, depth=1, heads=2, head_dim=16, text_conv_layers=1),
    )  # fmt: skip
    vocoder = HiFiGANVocoderV4(HiFiGANV4Config(upsample_initial_channel=64, resblock_kernel_sizes=(3,),
                                               resblock_dilation_sizes=((1,),)))  # fmt: skip
    return VocoderDecoder(SoVITSV3(config).eval(), vocoder.eval())


def test_vocoder_row_times_the_service_decoder(bench, conformance, monkeypatch):
    monkeypatch.setenv("GSV_CONFORMANCE_DIR", str(conformance))
    t2s = bench.build_t2s("cpu", torch.float32, layout_name="s1_v2_tiny")
    decoder = _tiny_decoder()
    data = {"filter_length": 2048, "sampling_rate": 32000, "hop_length": 640}
    with torch.inference_mode():
        row = bench.run_vocoder_case(t2s, decoder, 2, 20, "cpu", data, prompt_tokens=50)

    assert row["tokens"] == 20  # EOS disabled: exactly the tokens asked for
    assert row["audio_s"] == pytest.approx(20 / 25)  # v4: 4 mel frames of 480 samples at 48 kHz per code
    assert row["sample_steps"] == 2
    assert row["cfm_s"] > 0 and row["vocoder_s"] > 0
    assert row["cfm_s"] + row["vocoder_s"] <= row["sovits_s"]
    assert row["rtf"] == pytest.approx((row["gpt_s"] + row["sovits_s"]) / row["audio_s"])
    # The stage timers are gone afterwards: the models are left as built.
    assert "inference" not in vars(decoder.model.cfm) and "forward" not in vars(decoder.vocoder)


def test_responsiveness_benchmark_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("bench_responsiveness", SCRIPT.parent / "responsiveness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--digits", "50", "300"])
    rows = [line for line in capsys.readouterr().out.splitlines() if "digits" in line]
    assert len(rows) == 2
    for row in rows:
        seconds, status, worst = (cell.strip() for cell in row.split("|")[1:])
        assert float(seconds) >= 0 and status in ("200", "422") and float(worst) < 5


# --------------------------------------------------------------------------- serving.py


@pytest.fixture(scope="module")
def serving():
    spec = importlib.util.spec_from_file_location("bench_serving", SCRIPT.parent / "serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _serving_row(clients: int, throughput: float, p95: float) -> dict:
    return {
        "clients": clients, "requests": clients, "wall_s": 10.0, "audio_s": 10 * throughput,
        "throughput": throughput, "p50_s": p95 / 2, "p95_s": p95, "gpt_tokens_per_s": 50.0,
        "mean_rows": 3.0, "peak_mem_gb": 4.0,
    }  # fmt: skip


def test_serving_compares_the_modes_and_a_baseline(serving):
    results = {
        "continuous/16": _serving_row(16, 1.5, 40.0),
        "one-at-a-time/16": _serving_row(16, 0.75, 80.0),
    }
    comparison = serving.mode_comparison(results)
    assert comparison[1].split() == ["16", "2.00", "0.50"]
    table = serving.format_table(results, {"continuous/16": _serving_row(16, 3.0, 20.0)})
    ratios = table[2].split()
    assert ratios[:2] == ["x", "baseline"] and ratios[4] == "0.50"  # throughput halved vs the baseline


def test_serving_jobs_are_seeded_and_alternate_voices(serving):
    (a, voice_a), (b, voice_b) = serving.make_job(0, 0), serving.make_job(1, 0)
    assert voice_a != voice_b and a.seed != b.seed and not a.keep_random
    again, _ = serving.make_job(0, 0)
    assert again.seed == a.seed and again.text == a.text


# --------------------------------------------------------------------------- streaming.py


@pytest.fixture(scope="module")
def streaming():
    spec = importlib.util.spec_from_file_location("bench_streaming", SCRIPT.parent / "streaming.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _streaming_row(ttfa: float, total: float) -> dict:
    return {"clients": 1, "ttfa_p50_s": ttfa, "ttfa_p95_s": ttfa, "total_p50_s": total, "total_p95_s": total,
            "audio_s": 26.0}  # fmt: skip


def test_streaming_shares_are_ttfa_over_the_whole_answers_time(streaming):
    results = {"mode0/1": _streaming_row(30.0, 30.0), "mode3/1": _streaming_row(3.0, 35.0)}
    assert streaming.ttfa_shares(results) == ["mode3/1          TTFA p50 = 10.0 % of mode 0's total"]
    table = streaming.format_table(results, {"mode3/1": _streaming_row(6.0, 35.0)})
    assert table[-1].split()[2] == "0.50x"  # TTFA halved against the baseline


def test_streaming_requests_use_batch_1_except_the_whole_answer(streaming):
    assert "batch_size" not in streaming.form(0, 1)
    assert streaming.form(2, 1)["batch_size"] == "1" and streaming.form(2, 1)["streaming_mode"] == "2"
    assert streaming.TEXT.count("。") == streaming.SENTENCES
