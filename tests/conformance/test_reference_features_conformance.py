"""Reference-audio features against upstream's golden corpus (models/), stage by stage.

- ``hubert_last_hidden``: reference file → :func:`hubert_input` → :class:`HubertEncoder`;
- ``refer_spec_k``: reference k (0 = main, then aux refs) → :func:`spectrogram`;
- ``sv_k_wav16k``: reference → :func:`sv_input`;
- ``sv_k_emb``: the golden ``sv_k_wav16k`` → :meth:`SpeakerEncoder.embed` (fed the golden input so a miss
  names this stage, not the resampling before it).

Covers every case of versions v1, v2, v2Pro and v2ProPlus (v3/v4 belong to a later issue).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine import audio_features
from app.engine.checkpoints import CheckpointError, load_checkpoint
from app.engine.models.hubert import HubertEncoder
from app.engine.models.speaker import UNUSED_HEAD_PREFIXES, SpeakerEncoder
from app.engine.reference_clips import decode_clip
from tests.conftest import assert_matches_corpus, conformance_dir, corpus_case_arrays, corpus_weights_layout

pytestmark = pytest.mark.conformance

VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")
MODELS_DIR = conformance_dir() / "models"


def _cases() -> list[dict]:
    cases = []
    for path in sorted((MODELS_DIR / "cases").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if case["version"] in VERSIONS:
            cases.append(case)
    return cases


CASES = _cases() if MODELS_DIR.is_dir() else []


def _array_names(case: dict) -> list[str]:
    return list(case["arrays"])


def _reference_names(case: dict) -> list[str]:
    request = case["request"]
    return [request["ref_audio_path"], *(request.get("aux_ref_audio_paths") or [])]


def _sv_references(case: dict) -> list[str]:
    """Which reference each ``sv_k`` array belongs to.

    Upstream embeds every reference, in reference order (main first, then aux), each time it prepares a
    batch for decoding; the corpus numbers those calls k = 0, 1, ... so call k used reference k mod n.
    (The references have distinct lengths, so a wrong mapping would fail on shape.)
    """
    refs = _reference_names(case)
    count = sum(1 for name in _array_names(case) if name.startswith("sv_") and name.endswith("_emb"))
    return [refs[k % len(refs)] for k in range(count)]


def _params(kind: str) -> list:
    params = []
    for case in CASES:
        names = _array_names(case)
        if kind == "hubert" and "hubert_last_hidden" in names:
            params.append(pytest.param(case, None, id=case["id"]))
        elif kind == "spec":
            for k, _ in enumerate(_reference_names(case)):
                if f"refer_spec_{k}" in names:
                    params.append(pytest.param(case, k, id=f"{case['id']}-ref{k}"))
        elif kind == "sv" and case["version"] in ("v2Pro", "v2ProPlus"):
            for k, _ in enumerate(_sv_references(case)):
                params.append(pytest.param(case, k, id=f"{case['id']}-sv{k}"))
    return params


@cache
def _reference(name: str) -> tuple[np.ndarray, int]:
    index = json.loads((MODELS_DIR / "index.json").read_text(encoding="utf-8"))
    return decode_clip(MODELS_DIR / index["refs"][name]["file"])


@pytest.fixture(scope="module")
def sovits_config(corpus_weights):
    """SoVITS checkpoint config of a weights name (the spectrogram settings and model rate live there)."""
    configs: dict[str, dict] = {}

    def get(case: dict) -> dict:
        name = case["weights"]["sovits"]
        if name not in configs:
            configs[name] = load_checkpoint(corpus_weights(name))["config"]
        return configs[name]

    return get


def _weights_names(role: str) -> list[str]:
    """The ``models/index.json`` weights the cases name for ``role`` (``hubert``, ``sv``...)."""
    return sorted({case["weights"][role] for case in CASES if case["weights"].get(role)})


@pytest.fixture(scope="module")
def hubert(corpus_weights):
    """weights name -> the HuBERT written from that index entry (layout and seed), loaded once."""
    models: dict[str, HubertEncoder] = {}

    def get(case: dict) -> HubertEncoder:
        name = case["weights"]["hubert"]
        if name not in models:
            models[name] = HubertEncoder.from_pretrained(corpus_weights(name))
        return models[name]

    return get


@pytest.fixture(scope="module")
def speaker_encoder(corpus_weights):
    """weights name -> the speaker-verification model of that index entry, one in memory at a time."""
    models: dict[str, SpeakerEncoder] = {}

    def get(case: dict) -> SpeakerEncoder:
        name = case["weights"]["sv"]
        if name not in models:
            models.clear()
            models[name] = SpeakerEncoder.from_checkpoint(corpus_weights(name))
        return models[name]

    return get


# ------------------------------------------------------------------------------------------ HuBERT


_hubert_outputs: dict[str, torch.Tensor] = {}


@pytest.mark.parametrize(("case", "_"), _params("hubert"))
def test_hubert_last_hidden(case, _, hubert, sovits_config):
    golden = corpus_case_arrays(case["id"])["hubert_last_hidden"]
    samples, sr = _reference(case["request"]["ref_audio_path"])
    model_rate = sovits_config(case)["data"]["sampling_rate"]
    wav16k = audio_features.hubert_input(samples, sr, model_rate)
    # Several cases share a reference: run the model once per distinct input (2 CPU cores).
    key = case["weights"]["hubert"] + ":" + hashlib.sha256(wav16k.numpy().tobytes()).hexdigest()
    if key not in _hubert_outputs:
        with torch.inference_mode():
            _hubert_outputs[key] = hubert(case)(wav16k)
    assert_matches_corpus(_hubert_outputs[key], golden, "hubert_last_hidden")


def test_hubert_loading_refuses_a_folder_with_missing_weights(corpus_weights, tmp_path):
    names = _weights_names("hubert")
    assert names, "no case names a HuBERT"
    source = Path(corpus_weights(names[0]))
    folder = tmp_path / "hubert"
    shutil.copytree(source, folder)
    weights_file = folder / "pytorch_model.bin"
    assert weights_file.is_file(), "the generated HuBERT folder is expected to hold pytorch_model.bin"
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    del state["encoder.layers.0.attention.k_proj.weight"]
    torch.save(state, weights_file)
    with pytest.raises(CheckpointError, match="missing keys"):
        HubertEncoder.from_pretrained(folder)


# ------------------------------------------------------------------------------------- spectrogram


@pytest.mark.parametrize(("case", "k"), _params("spec"))
def test_refer_spec(case, k, sovits_config):
    golden = corpus_case_arrays(case["id"])[f"refer_spec_{k}"]
    samples, sr = _reference(_reference_names(case)[k])
    assert_matches_corpus(audio_features.spectrogram(samples, sr, sovits_config(case)), golden, f"refer_spec_{k}")


# -------------------------------------------------------------------------- speaker verification


@pytest.mark.parametrize(("case", "k"), _params("sv"))
def test_sv_wav16k(case, k, sovits_config):
    golden = corpus_case_arrays(case["id"])[f"sv_{k}_wav16k"]
    samples, sr = _reference(_sv_references(case)[k])
    model_rate = sovits_config(case)["data"]["sampling_rate"]
    assert_matches_corpus(audio_features.sv_input(samples, sr, model_rate), golden, f"sv_{k}_wav16k")


_sv_embeddings: dict[str, torch.Tensor] = {}


@pytest.mark.parametrize(("case", "k"), _params("sv"))
def test_sv_embedding(case, k, speaker_encoder):
    arrays = corpus_case_arrays(case["id"])
    wav16k = arrays[f"sv_{k}_wav16k"]
    # The full-size ERes2NetV2 takes seconds per clip on CPU; most cases reuse the same reference.
    key = case["weights"]["sv"] + ":" + hashlib.sha256(wav16k.tobytes()).hexdigest()
    if key not in _sv_embeddings:
        with torch.inference_mode():
            _sv_embeddings[key] = speaker_encoder(case).embed(torch.from_numpy(wav16k))
    assert_matches_corpus(_sv_embeddings[key], arrays[f"sv_{k}_emb"], f"sv_{k}_emb")


@pytest.mark.parametrize("name", _weights_names("sv"))
def test_speaker_encoder_expects_exactly_the_official_layout(name):
    """Every key/shape of the file the cases use (its index entry's layout, the official full size) is
    used, except the embedding head forward3 skips."""
    layout = corpus_weights_layout(name)
    official = {key: tuple(shape) for key, shape, _dtype in layout["tensors"]}
    ours = {k: tuple(v.shape) for k, v in SpeakerEncoder().state_dict().items()}
    assert ours == {k: v for k, v in official.items() if not k.startswith(UNUSED_HEAD_PREFIXES)}
    assert any(k.startswith(UNUSED_HEAD_PREFIXES) for k in official), "the head is expected in the file"


def test_corpus_selection_is_complete():
    """Guards against silently testing nothing: every targeted version contributes cases."""
    assert {case["version"] for case in CASES} == set(VERSIONS)
    assert len(_params("spec")) > len(CASES)  # aux refs add spectrograms
    assert len(_params("sv")) > 0 and len(_params("hubert")) > 0
    assert _weights_names("hubert") and _weights_names("sv")  # the models are those the cases name
