"""The SoVITS synthesizer equals upstream on every v1/v2/v2Pro/v2ProPlus case of the model corpus.

Two stages, each compared on its own:
- ``decode``: every ``SynthesizerTrn.decode`` call of a case (``vits_i_*``), fed the recorded codes,
  phones, reference spectrograms (and speaker embeddings for Pro models), at noise_scale 0;
- ``encode_prompt``: HuBERT features -> prompt semantic codes, where the case recorded the features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.models.sovits import SoVITSSynthesizer
from tests.conftest import assert_matches_corpus, conformance_dir, corpus_case_arrays

pytestmark = pytest.mark.conformance

VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")  # v3/v4 use another synthesizer


def _cases() -> list[dict]:
    folder = conformance_dir() / "models" / "cases"
    if not folder.is_dir():
        return []
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if c.get("version") in VERSIONS]


def _decode_calls() -> list[tuple[dict, int]]:
    return [(case, i) for case in _cases() for i in range(len(case["vits_calls"]))]


@pytest.fixture(scope="module")
def synthesizer(corpus_weights):
    models: dict[str, SoVITSSynthesizer] = {}

    def get(name: str) -> SoVITSSynthesizer:
        if name not in models:
            models[name] = SoVITSSynthesizer.from_checkpoint(Path(corpus_weights(name)))
        return models[name]

    return get


def _speaker_embeddings(case: dict, arrays: dict[str, np.ndarray], n_refer: int) -> list[torch.Tensor]:
    """The ``sv_k_emb`` of each reference, in reference order (main first, then aux refs).

    Upstream recomputes the embeddings (one per reference, in order) for every GPT batch, so the
    corpus holds whole blocks of ``n_refer`` arrays; they must all repeat the first block.
    """
    recorded = [arrays[f"sv_{k}_emb"] for k in range(len(case["arrays"])) if f"sv_{k}_emb" in arrays]
    assert recorded and len(recorded) % n_refer == 0, "speaker embeddings do not come in blocks of n_refer"
    for start in range(n_refer, len(recorded), n_refer):
        for k in range(n_refer):
            np.testing.assert_array_equal(recorded[start + k], recorded[k])
    return [torch.from_numpy(recorded[k]) for k in range(n_refer)]


@pytest.mark.parametrize(
    ("case", "call"), _decode_calls(), ids=[f"{c['id']}-vits{i}" for c, i in _decode_calls()]
)
def test_decode_matches_upstream(case, call, synthesizer):
    arrays = corpus_case_arrays(case["id"])
    model = synthesizer(case["weights"]["sovits"])
    spec = case["vits_calls"][call]
    refer_specs = [torch.from_numpy(arrays[f"refer_spec_{k}"]) for k in range(spec["n_refer"])]
    sv_embs = None
    if case["version"] in ("v2Pro", "v2ProPlus"):
        sv_embs = _speaker_embeddings(case, arrays, spec["n_refer"])

    audio = model.decode(
        torch.from_numpy(arrays[f"vits_{call}_codes"]),
        torch.from_numpy(arrays[f"vits_{call}_text"]),
        refer_specs,
        speed=spec["speed"],
        sv_embs=sv_embs,
        noise_scale=0.0,
    )
    assert_matches_corpus(audio.numpy(), arrays[f"vits_{call}_audio"], f"vits_{call}_audio")


_PROMPT_CASES = [c for c in _cases() if "hubert_last_hidden" in c["arrays"]]


@pytest.mark.parametrize("case", _PROMPT_CASES, ids=[c["id"] for c in _PROMPT_CASES])
def test_encode_prompt_matches_upstream(case, synthesizer):
    arrays = corpus_case_arrays(case["id"])
    model = synthesizer(case["weights"]["sovits"])
    # The corpus stores HuBERT's last_hidden_state as [batch, frames, 768]; upstream transposes it.
    features = torch.from_numpy(arrays["hubert_last_hidden"]).transpose(1, 2)
    codes = model.encode_prompt(features)
    np.testing.assert_array_equal(codes[0, 0].numpy(), arrays["prompt_semantic"])


def test_corpus_covers_every_version(conformance):
    versions = {c["version"] for c in _cases()}
    assert versions == set(VERSIONS)
    assert {c["version"] for c in _PROMPT_CASES} == set(VERSIONS)
    assert any(call["n_refer"] > 1 for c in _cases() for call in c["vits_calls"])
    assert any(call["speed"] != 1 for c in _cases() for call in c["vits_calls"])
