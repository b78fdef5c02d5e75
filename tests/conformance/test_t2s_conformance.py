"""The GPT stage (T2SModel.generate) equals upstream on every v1/v2/v2Pro/v2ProPlus corpus case.

For every recorded decoder call (`t2s_calls[i]` of a case) we feed the recorded phone ids, BERT
features and prompt codes, decode in the recorded mode (parallel or sequential) with the recorded
sampling arguments, and compare, one test per golden array:
- `t2s_i_logits_first3_row0`: raw logits of row 0 at decode steps 0-2 (float tolerance);
- `t2s_i_tokens_r`: the tokens TTS.run keeps for row r (exact).
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import torch

from app.engine.models.t2s import T2SModel
from tests.conftest import conformance_dir, generate_weights

pytestmark = pytest.mark.conformance

VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")  # v3/v4 belong to a later issue
PARALLEL_METHOD = "infer_panel_batch_infer"
SEQUENTIAL_METHOD = "infer_panel_naive_batched"
# Upstream's default for infer_panel_naive_batched when the caller does not pass it.
DEFAULT_REPETITION_PENALTY = 1.35


def _cases() -> list[dict]:
    folder = conformance_dir() / "models" / "cases"
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if c["version"] in VERSIONS]


def _golden_arrays() -> list[tuple[str, int, str]]:
    """(case id, call index, array name) for every array this stage is compared on."""
    out = []
    for case in _cases():
        for i, call in enumerate(case["t2s_calls"]):
            out.append((case["id"], i, f"t2s_{i}_logits_first3_row0"))
            out.extend((case["id"], i, f"t2s_{i}_tokens_{r}") for r in range(call["rows"]))
    return out


@cache
def _case(case_id: str) -> tuple[dict, dict[str, np.ndarray]]:
    folder = conformance_dir() / "models" / "cases"
    meta = json.loads((folder / f"{case_id}.json").read_text(encoding="utf-8"))
    with np.load(folder / f"{case_id}.npz") as arrays:
        return meta, dict(arrays)


@cache
def _model(weights_name: str) -> T2SModel:
    index = json.loads((conformance_dir() / "models" / "index.json").read_text(encoding="utf-8"))
    spec = index["weights"][weights_name]
    return T2SModel.from_checkpoint(generate_weights(spec["layout"], spec["seed"]))


@cache
def _decode(case_id: str, call_index: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Our logits of row 0 at steps 0-2 and our kept tokens per row, for one recorded call."""
    meta, arrays = _case(case_id)
    call = meta["t2s_calls"][call_index]
    assert call["method"] in (PARALLEL_METHOD, SEQUENTIAL_METHOD), call["method"]
    kwargs = call["kwargs"]
    prefix = f"t2s_{call_index}_"
    phones = [torch.from_numpy(arrays[f"{prefix}x_{r}"]) for r in range(call["rows"])]
    berts = [torch.from_numpy(arrays[f"{prefix}bert_{r}"]) for r in range(call["rows"])]
    prompt = arrays.get(f"{prefix}prompts")

    first_logits: dict[int, torch.Tensor] = {}

    def keep_row0_logits(rows: list[int], step: int, logits: torch.Tensor) -> None:
        if step < 3 and rows[0] == 0:
            first_logits.setdefault(step, logits[0].clone())

    tokens = _model(meta["weights"]["t2s"]).generate(
        phones,
        berts,
        None if prompt is None else torch.from_numpy(prompt),
        top_k=kwargs["top_k"],
        top_p=kwargs["top_p"],
        temperature=kwargs["temperature"],
        repetition_penalty=kwargs.get("repetition_penalty", DEFAULT_REPETITION_PENALTY),
        early_stop_num=kwargs["early_stop_num"],
        parallel=call["method"] == PARALLEL_METHOD,
        generator=torch.Generator().manual_seed(meta["request"]["seed"]),
        on_logits=keep_row0_logits,
    )
    logits = torch.stack([first_logits[s] for s in range(3)]).numpy()
    return logits, [t.numpy() for t in tokens]


@pytest.mark.parametrize(("case_id", "call_index", "array"), _golden_arrays(), ids=lambda v: str(v))
def test_t2s_matches_upstream(case_id: str, call_index: int, array: str):
    _, arrays = _case(case_id)
    golden = arrays[array]
    logits, tokens = _decode(case_id, call_index)
    if array.endswith("logits_first3_row0"):
        tolerance = 1e-4 * max(1.0, float(np.abs(golden).max()))
        assert np.abs(logits[0] - golden[0]).max() <= tolerance, "step 0 logits differ"
        if np.array_equal(golden[0], golden[1]):
            # Two bit-identical consecutive steps cannot come out of a decode (the input changed in
            # between): the corpus recorded step 0 twice. It happens exactly where its recorded calls
            # nest (parallel prompt-free decoding falls back to the sequential method, both wrapped).
            pytest.xfail("corpus artifact: golden logits repeat step 0; only step 0 is comparable")
        assert np.abs(logits - golden).max() <= tolerance
    else:
        row = int(array.rsplit("_", 1)[1])
        assert tokens[row].dtype == np.int64
        np.testing.assert_array_equal(tokens[row], golden)


def test_corpus_has_both_modes_and_prompt_free():
    calls = [call for case in _cases() for call in case["t2s_calls"]]
    assert {c["method"] for c in calls} == {PARALLEL_METHOD, SEQUENTIAL_METHOD}
    assert any(0 in c["idx"] for c in calls), "no prompt-free call in the corpus"
    assert any(c["rows"] > 1 and c["method"] == PARALLEL_METHOD for c in calls)
