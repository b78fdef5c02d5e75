"""The v3/v4 SoVITS stages equal upstream on every v3/v3lora/v4lora case of the model corpus.

Three stages, each compared on its own, from recorded inputs:
- ``encp``: every ``SynthesizerTrnV3.decode_encp`` call (codes, phones, the main reference's linear
  spectrogram, speed) -> features and global embedding;
- ``prompt mel``: the normalised reference mel that prompts the first sampler call of each synthesis,
  from the reference file (v3: 24 kHz mel, v4: 32 kHz mel);
- ``cfm``: sampler calls, fed the recorded start noise, the recorded prompt and the content features
  the pipeline builds from the recorded ``encp`` outputs (see ``_cfm_plan``).

Model tests are parametrized by model (v3, v3 LoRA, v4 LoRA), so each 1.5 GB model loads once, and
check every call of every case using it, naming each call that differs. A full-size DiT call takes a
minute or more on two CPU cores, so by default the sampler test runs only each model's cheapest call;
set GSV_ALL_CFM_CALLS=1 to run every one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.engine.audio_features import resample_sinc
from app.engine.models.sovits_v3 import VARIANTS, SoVITSV3, Variant, mel_spectrogram, norm_spec
from app.engine.reference_clips import decode_clip
from tests.conftest import conformance_dir, corpus_case_arrays, corpus_difference

pytestmark = [pytest.mark.conformance, pytest.mark.fullsize]

VERSIONS = ("v3", "v3lora", "v4lora")
RUN_ALL_CFM_CALLS = os.environ.get("GSV_ALL_CFM_CALLS") == "1"


def _cases() -> list[dict]:
    folder = conformance_dir() / "models" / "cases"
    if not folder.is_dir():
        return []
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if c.get("version") in VERSIONS]


def _variant(case: dict) -> Variant:
    return VARIANTS["v4" if case["version"].startswith("v4") else "v3"]


def _model_key(case: dict) -> tuple[str, str]:
    return case["weights"]["sovits"], case["weights"]["sovits_base"]


def _assert_no_differences(differences: list[str | None], checked: int) -> None:
    found = [d for d in differences if d]
    assert not found, f"{len(found)} of {checked} comparisons differ:\n" + "\n".join(found)


# --------------------------------------------------------------------------- what feeds each CFM call


@cache
def _reference_mel(case_id: str) -> torch.Tensor:
    """Upstream's sampler prompt before trimming: the reference file resampled to the mel rate, its
    log-mel, normalised (``using_vocoder_synthesis``)."""
    case = next(c for c in _cases() if c["id"] == case_id)
    folder = conformance_dir() / "models"
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    samples, sr = decode_clip(folder / index["refs"][case["request"]["ref_audio_path"]]["file"])
    mel_cfg = _variant(case).mel
    audio = resample_sinc(torch.from_numpy(samples).unsqueeze(0), sr, mel_cfg.sampling_rate)
    return norm_spec(mel_spectrogram(audio, mel_cfg))


@dataclass
class CfmCall:
    mu: torch.Tensor  # [batch, frames, 512], as upstream passes it
    # Our reference mel prompt where the call starts a synthesis (None: a later chunk, whose prompt
    # is the tail of the previous call's output).
    reference_prompt: torch.Tensor | None


def _trimmed_reference(case: dict, prompt_features: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt's features and the reference mel, both cut to the frames both have, then to at most
    T_ref (the last ones)."""
    fea_ref = torch.from_numpy(prompt_features)
    mel = _reference_mel(case["id"])
    t_min = min(mel.size(-1), fea_ref.size(-1))
    keep = min(t_min, _variant(case).ref_frames)
    return fea_ref[:, :, :t_min][:, :, -keep:], mel[:, :, :t_min][:, :, -keep:]


def _cfm_plan(case: dict) -> list[CfmCall]:
    """The sampler inputs of a case, in call order, built from the recorded ``encp`` features.

    Each GPT batch (``t2s_calls[k]``, ``rows`` pieces) is synthesised after one ``decode_encp`` of the
    prompt. Sequential mode (``parallel_infer`` off): per piece, a prompt call then the piece's call;
    the piece is cut into chunks of ``T_chunk - T_min`` frames, each sampled after the previous chunk's
    last ``T_min`` frames. Parallel mode: the pieces of a batch are concatenated, left-padded with
    ``overlap`` zero frames, cut into overlapping chunks (the last one zero-padded) and sampled as one
    batch, each row after the reference's features.
    """
    arrays = corpus_case_arrays(case["id"])
    variant = _variant(case)
    encp = iter(range(len(case["encp_calls"])))
    calls: list[CfmCall] = []
    for batch in case["t2s_calls"]:
        if case["request"]["parallel_infer"]:
            fea_ref, mel_ref = _trimmed_reference(case, arrays[f"encp_{next(encp)}_fea"])
            chunk_len = variant.chunk_frames - fea_ref.size(-1)
            pieces = [torch.from_numpy(arrays[f"encp_{next(encp)}_fea"]) for _ in range(batch["rows"])]
            padded = F.pad(torch.cat(pieces, 2), (variant.overlap_frames, 0))
            chunks, pos = [], 0
            while True:
                if pos:
                    pos -= variant.overlap_frames
                chunk = padded[:, :, pos : pos + chunk_len]
                pos += chunk_len
                if chunk.size(-1) == 0:
                    break
                chunks.append(F.pad(chunk, (0, chunk_len - chunk.size(-1))))
            rows = torch.cat(chunks, 0)
            mu = torch.cat([fea_ref.repeat(rows.size(0), 1, 1), rows], 2).transpose(2, 1)
            calls.append(CfmCall(mu, mel_ref))
        else:
            for _ in range(batch["rows"]):
                fea_ref, mel_ref = _trimmed_reference(case, arrays[f"encp_{next(encp)}_fea"])
                t_min = fea_ref.size(-1)
                chunk_len = variant.chunk_frames - t_min
                todo = torch.from_numpy(arrays[f"encp_{next(encp)}_fea"])
                for start in range(0, todo.size(-1), chunk_len):
                    chunk = todo[:, :, start : start + chunk_len]
                    mu = torch.cat([fea_ref, chunk], 2).transpose(2, 1)
                    calls.append(CfmCall(mu, mel_ref if start == 0 else None))
                    fea_ref = chunk[:, :, -t_min:]
    assert next(encp, None) is None, "decode_encp calls left over: the call plan does not fit this case"
    return calls


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    model: SoVITSV3
    cases: list[dict]  # the cases made with it


MODEL_KEYS = sorted({_model_key(c) for c in _cases()})


@pytest.fixture(scope="module", params=MODEL_KEYS, ids=[sovits for sovits, _ in MODEL_KEYS])
def loaded(request, corpus_weights) -> LoadedModel:
    sovits, base = request.param
    base_path = None if base == sovits else corpus_weights(base)
    model = SoVITSV3.from_checkpoint(corpus_weights(sovits), base_path)
    return LoadedModel(model, [c for c in _cases() if _model_key(c) == request.param])


def _cfm_calls_to_run(cases: list[dict]) -> list[tuple[dict, int]]:
    """Every sampler call, or (by default) the cheapest one: batch x frames x steps."""
    calls = [(case, i) for case in cases for i in range(len(case["cfm_calls"]))]
    if RUN_ALL_CFM_CALLS or not calls:
        return calls

    def cost(call: tuple[dict, int]) -> int:
        case, i = call
        batch, _, frames = case["arrays"][f"cfm_{i}_noise"]["shape"]
        return batch * frames * case["cfm_calls"][i]["steps"]

    return [min(calls, key=cost)]


# --------------------------------------------------------------------------- tests


def test_decode_encp_calls(loaded):
    differences = []
    for case in loaded.cases:
        assert loaded.model.config.version == _variant(case).name
        arrays = corpus_case_arrays(case["id"])
        refer_spec = torch.from_numpy(arrays["refer_spec_0"])
        for i, call in enumerate(case["encp_calls"]):
            fea, ge = loaded.model.decode_encp(
                torch.from_numpy(arrays[f"encp_{i}_codes"]),
                torch.from_numpy(arrays[f"encp_{i}_text"]),
                refer_spec,
                speed=call["speed"],
            )
            where = f"{case['id']} encp {i} (speed {call['speed']})"
            differences += [
                corpus_difference(ge, arrays[f"encp_{i}_ge"], f"{where} ge"),
                corpus_difference(fea, arrays[f"encp_{i}_fea"], f"{where} features"),
            ]
    _assert_no_differences(differences, len(differences))


@pytest.mark.parametrize("case", _cases(), ids=[c["id"] for c in _cases()])
def test_prompt_mel_of_each_synthesis(case):
    """Also checks the call plan: one planned call per recorded call, with the recorded shapes."""
    arrays = corpus_case_arrays(case["id"])
    plan = _cfm_plan(case)
    assert len(plan) == len(case["cfm_calls"])
    for i, call in enumerate(plan):
        batch, _, frames = arrays[f"cfm_{i}_noise"].shape
        assert tuple(call.mu.shape) == (batch, frames, 512), f"cfm {i} planned features"
    firsts = [i for i, call in enumerate(plan) if call.reference_prompt is not None]
    assert firsts, "no sampler call starts from the reference"
    differences = [
        corpus_difference(plan[i].reference_prompt, arrays[f"cfm_{i}_prompt"], f"cfm {i} prompt mel")
        for i in firsts
    ]
    _assert_no_differences(differences, len(firsts))


def test_cfm_calls(loaded):
    calls = _cfm_calls_to_run(loaded.cases)
    assert calls, "no sampler calls recorded for this model"
    differences = []
    for case, i in calls:
        arrays = corpus_case_arrays(case["id"])
        mu = _cfm_plan(case)[i].mu
        out = loaded.model.cfm.inference(
            mu,
            torch.LongTensor([mu.size(1)]),
            torch.from_numpy(arrays[f"cfm_{i}_prompt"]),
            case["cfm_calls"][i]["steps"],
            noise=torch.from_numpy(arrays[f"cfm_{i}_noise"]),
        )
        differences.append(corpus_difference(out, arrays[f"cfm_{i}_out"], f"{case['id']} cfm {i} sampled mel"))
    _assert_no_differences(differences, len(calls))
