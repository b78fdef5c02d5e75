"""The v3/v4 vocoders against upstream on every vocoder call of the v3, v3lora and v4lora cases.

Each call recorded the denormalised mel fed to the vocoder (``vocoder_i_mel``) and the waveform it
returned (``vocoder_i_wav``).

Every call of both vocoders (v3: BigVGAN, v4: upstream's 48 kHz HiFi-GAN) runs whole and must match at
the README's float tolerance. For BigVGAN that is a demanding check: the corpus's random weights fill its
anti-aliasing filter buffers with random taps instead of unit-gain low-passes, and the resulting network
amplifies input changes enormously (one ulp of change in the mel moves the waveform by ~20 % of its
RMS; so does running it on a cropped mel, whose shorter convolutions round differently). It matches
because our generator computes what upstream's does, op for op, on the same shapes, on a CPU that rounds
like the corpus's; on one that does not (an AVX2-only EPYC misses by 0.16 with upstream's code too) the
check falls back to the measured one-ulp sensitivity (``assert_matches_corpus_up_to_rounding``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.engine.models.vocoders import BigVGANVocoder, HiFiGANVocoderV4
from tests.conftest import (
    assert_matches_corpus_up_to_rounding,
    conformance_dir,
    corpus_case_arrays,
    corpus_weights_layout,
)

pytestmark = [pytest.mark.conformance, pytest.mark.fullsize]

VERSIONS = ("v3", "v3lora", "v4lora")  # the versions that use a vocoder
# Layout kinds (``layouts/*.json`` -> ``kind``) of the two vocoders.
BIGVGAN, VOCODER_V4 = "bigvgan", "vocoder_v4"


def _cases() -> list[dict]:
    folder = conformance_dir() / "models" / "cases"
    if not folder.is_dir():
        return []
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if c.get("version") in VERSIONS]


def _kind(weights_name: str) -> str:
    """The layout kind of a vocoder named in ``models/index.json`` (its entry's layout says which)."""
    return corpus_weights_layout(weights_name)["kind"]


def _vocoder_calls(kind: str) -> list:
    calls = []
    for case in _cases():
        if _kind(case["weights"]["vocoder"]) != kind:
            continue
        n_calls = sum(1 for key in corpus_case_arrays(case["id"]) if key.endswith("_mel"))
        calls += [pytest.param(case, i, id=f"{case['id']}-call{i}") for i in range(n_calls)]
    return calls


def _golden(case: dict, i: int) -> tuple[torch.Tensor, np.ndarray]:
    arrays = corpus_case_arrays(case["id"])
    return torch.from_numpy(arrays[f"vocoder_{i}_mel"]), arrays[f"vocoder_{i}_wav"]


@pytest.fixture(scope="module")
def vocoder(corpus_weights):
    """corpus vocoder name -> the loaded model (one in memory at a time)."""
    loaded: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in loaded:
            loaded.clear()
            path = corpus_weights(name)
            kind = _kind(name)
            assert kind in (BIGVGAN, VOCODER_V4), f"{name}: unknown vocoder layout kind {kind!r}"
            if kind == BIGVGAN:
                loaded[name] = BigVGANVocoder.from_pretrained(path)
            else:
                loaded[name] = HiFiGANVocoderV4.from_checkpoint(path)
        return loaded[name]

    return get


def test_the_corpus_has_vocoder_calls_of_both_kinds():
    assert _vocoder_calls(BIGVGAN) and _vocoder_calls(VOCODER_V4)
    # Every vocoder call of the corpus is one of them, so the parametrised list below holds them all.
    every_call = _vocoder_calls(BIGVGAN) + _vocoder_calls(VOCODER_V4)
    recorded = [
        key for case in _cases() for key in corpus_case_arrays(case["id"]) if key.startswith("vocoder_")
    ]
    assert len(every_call) == sum(1 for key in recorded if key.endswith("_mel"))


@pytest.mark.slow
@pytest.mark.parametrize(("case", "i"), _vocoder_calls(VOCODER_V4) + _vocoder_calls(BIGVGAN))
def test_vocoder_matches_upstream(vocoder, case, i):
    model = vocoder(case["weights"]["vocoder"])
    mel, golden = _golden(case, i)
    wav = model(mel).numpy()
    assert wav.shape == golden.shape  # frames * samples per frame
    assert model.sample_rate == case["sample_rate"]
    assert_matches_corpus_up_to_rounding(wav, golden, f"{case['id']} vocoder_{i}_wav", model, [mel])
