"""The v3/v4 vocoders against upstream on every vocoder call of the v3, v3lora and v4lora cases.

Each call recorded the denormalised mel fed to the vocoder (``vocoder_i_mel``) and the waveform it
returned (``vocoder_i_wav``).

Every call of both vocoders (v3: BigVGAN, v4: upstream's 48 kHz HiFi-GAN) runs whole and must match at
the README's float tolerance. For BigVGAN that is a demanding check: the corpus's random weights fill its
anti-aliasing filter buffers with random taps instead of unit-gain low-passes, and the resulting network
amplifies input changes enormously (a random 1e-7 change of the mel moves the waveform by ~10 % of its
RMS; so does running it on a cropped mel, whose shorter convolutions round differently). It matches
because our generator computes what upstream's does, op for op, on the same shapes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.engine.models.vocoders import BigVGANVocoder, HiFiGANVocoderV4
from tests.conftest import assert_matches_corpus, conformance_dir, corpus_case_arrays

pytestmark = [pytest.mark.conformance, pytest.mark.fullsize]

VERSIONS = ("v3", "v3lora", "v4lora")  # the versions that use a vocoder


def _cases() -> list[dict]:
    folder = conformance_dir() / "models" / "cases"
    if not folder.is_dir():
        return []
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if c.get("version") in VERSIONS]


def _vocoder_calls(vocoder: str) -> list:
    calls = []
    for case in _cases():
        if case["weights"]["vocoder"] != vocoder:
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
            is_bigvgan = name == "bigvgan_v3_full"
            loaded[name] = (
                BigVGANVocoder.from_pretrained(path) if is_bigvgan else HiFiGANVocoderV4.from_checkpoint(path)
            )
        return loaded[name]

    return get


def test_the_corpus_has_vocoder_calls_of_both_kinds():
    assert _vocoder_calls("bigvgan_v3_full") and _vocoder_calls("vocoder_v4_full")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "i"), _vocoder_calls("vocoder_v4_full") + _vocoder_calls("bigvgan_v3_full")
)
def test_vocoder_matches_upstream(vocoder, case, i):
    model = vocoder(case["weights"]["vocoder"])
    mel, golden = _golden(case, i)
    wav = model(mel).numpy()
    assert wav.shape == golden.shape  # frames * samples per frame
    assert model.sample_rate == case["sample_rate"]
    assert_matches_corpus(wav, golden, f"{case['id']} vocoder_{i}_wav")
