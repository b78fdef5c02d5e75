"""v3/v4 synthesis end to end: the service's synthesis equals upstream's ``TTS.run`` on every
v3/v3lora/v4lora case.

Each case's request runs once through the production path (the engine's synthesis call: planning, model
manager, scheduler, runner, pipeline) on an upstream-layout weights root holding the corpus weights,
with the sampler's start noise replayed from the corpus (``cfm_i_noise``, one per sampler call, in call
order: the recorder hands it to the sampler in place of the noise the job's generator would draw). ``test_final_audio``
compares the int16 result (same length, every sample within ±2). To name the stage of a miss, the run
records what the decoder handed to each model and ``test_stage_array`` compares it with the corpus:
``encp_i_*`` (SoVITS content features), ``cfm_i_prompt``/``cfm_i_out`` (the sampler), ``vocoder_i_mel``/
``vocoder_i_wav`` (the vocoder).

Full-size models on a CPU: the whole module takes several minutes (upstream needed 15-80 s per case).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
import torch
from fastapi.testclient import TestClient

from app.engine.jobs import SynthesisJob
from app.engine.pipeline import SynthesisResult
from app.engine.voice import Voice
from app.main import create_app
from app.settings import Settings
from tests.conformance.test_http_conformance import multipart_request
from tests.conftest import (
    ROUNDING_FACTOR,
    assert_matches_corpus,
    assert_matches_corpus_up_to_rounding,
    conformance_dir,
    corpus_case_arrays,
    corpus_job,
    one_ulp_sensitivity,
    relative_rms,
)
from tests.corpus_engine import case_model_names, corpus_engine, corpus_weights_root, synthesize

pytestmark = [pytest.mark.conformance, pytest.mark.fullsize]

VERSIONS = ("v3", "v3lora", "v4lora")
MODELS_DIR = conformance_dir() / "models"
STAGE_PREFIXES = ("encp_", "cfm_", "vocoder_")
REPLAYED = ("_noise",)  # fed in, not produced


# Every case runs by default (about 6 minutes on two idle CPU cores). GSV_V3V4_CASES=cheapest keeps
# only the cheapest case (fewest sampled mel frames) of each model version and of each sampler mode.
RUN_ALL_CASES = os.environ.get("GSV_V3V4_CASES", "all") != "cheapest"


def _sampled_frames(case: dict) -> int:
    return sum(
        int(np.prod(spec["shape"])) for name, spec in case["arrays"].items() if name.startswith("cfm_") and name.endswith("_noise")
    )


def _cases() -> list[dict]:
    folder = MODELS_DIR / "cases"
    if not folder.is_dir():
        return []
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    cases = [c for c in cases if c.get("version") in VERSIONS]
    if not RUN_ALL_CASES:
        # the cheapest case of each version, and of each sampler mode (sequential and batched)
        cheapest: dict[object, dict] = {}
        for case in sorted(cases, key=_sampled_frames):
            cheapest.setdefault(case["version"], case)
            cheapest.setdefault(case["request"]["parallel_infer"], case)
        cases = list({c["id"]: c for c in cheapest.values()}.values())
    # Grouped by model so each 1.5 GB model is loaded once.
    return sorted(cases, key=lambda c: c["version"])


CASES = _cases()


def job_for(case: dict) -> SynthesisJob:
    return corpus_job(case)


class _Recorder:
    """Replays the corpus's start noise and records the decoder's calls to SoVITS, sampler and vocoder."""

    def __init__(self, voice: Voice, golden: dict[str, np.ndarray]):
        self.arrays: dict[str, np.ndarray] = {}
        self.golden = golden
        self.model = voice.sovits
        self.counts = {"encp": 0, "cfm": 0, "noise": 0, "vocoder": 0}
        self._decode_encp = self.model.decode_encp
        self._inference = self.model.cfm.inference
        self._hook = voice.decoder.vocoder.register_forward_hook(self._vocoder_call)
        self.model.decode_encp = self.decode_encp
        self.model.cfm.inference = self.inference

    def close(self) -> None:
        del self.model.decode_encp, self.model.cfm.inference  # back to the class methods
        self._hook.remove()

    def _next(self, stage: str) -> int:
        self.counts[stage] += 1
        return self.counts[stage] - 1

    def start_noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        noise = self.golden.get(f"cfm_{self._next('noise')}_noise")
        assert noise is not None, "more sampler calls than the corpus recorded"
        assert tuple(noise.shape) == tuple(shape), f"start noise shape {tuple(shape)} != {noise.shape}"
        return torch.from_numpy(noise)

    def decode_encp(self, codes, text, refer_spec, ge=None, speed=1.0):
        i = self._next("encp")
        fea, ge_out = self._decode_encp(codes, text, refer_spec, ge, speed)
        self.arrays |= {f"encp_{i}_codes": codes.numpy(), f"encp_{i}_text": text.numpy()}
        self.arrays |= {f"encp_{i}_fea": fea.numpy(), f"encp_{i}_ge": ge_out.numpy()}
        return fea, ge_out

    def inference(self, mu, x_lens, prompt, n_timesteps, *args, **kwargs):
        i = self._next("cfm")
        kwargs["noise"] = self.start_noise((mu.size(0), self.model.cfm.mel_bins, mu.size(1)))
        out = self._inference(mu, x_lens, prompt, n_timesteps, *args, **kwargs)
        self.arrays |= {f"cfm_{i}_prompt": prompt.numpy(), f"cfm_{i}_out": out.numpy()}
        return out

    def _vocoder_call(self, module, inputs, output) -> None:
        i = self._next("vocoder")
        self.arrays |= {f"vocoder_{i}_mel": inputs[0].numpy(), f"vocoder_{i}_wav": output.numpy()}


@pytest.fixture(scope="module")
def engine(corpus_weights):
    # One SoVITS model (1.5 GB) in memory at a time: cases are grouped by model.
    engine = corpus_engine(corpus_weights_root(CASES, corpus_weights), max_loaded_models=1)
    yield engine
    engine.stop()


@dataclass
class Run:
    result: SynthesisResult
    arrays: dict[str, np.ndarray]  # what the decoder handed to each model, and got back
    vocoder: torch.nn.Module  # the vocoder it ran on (kept: it outlives the SoVITS model's eviction)

    def vocoder_inputs(self) -> list[np.ndarray]:
        return [self.arrays[k] for k in sorted(self.arrays) if k.startswith("vocoder_") and k.endswith("_mel")]


@pytest.fixture(scope="module")
def run_case(engine):
    """case → its Run; each case runs once."""
    runs: dict[str, Run] = {}

    def get(case: dict) -> Run:
        if case["id"] not in runs:
            gpt, sovits = case_model_names(case)
            voice = engine.models.voice(gpt, sovits)  # the voice the engine's call will run on
            recorder = _Recorder(voice, corpus_case_arrays(case["id"]))
            try:
                result = synthesize(engine, job_for(case), gpt, sovits)
            finally:
                recorder.close()
            runs[case["id"]] = Run(result, recorder.arrays, voice.decoder.vocoder)
        return runs[case["id"]]

    return get


def assert_final_audio(audio: np.ndarray, golden: np.ndarray, vocoder, vocoder_inputs) -> None:
    """Same length, every sample within ±2 of upstream's; or, where the vocoder is so ill-conditioned on
    this CPU that one ulp of its input breaks the tolerance (the corpus's random BigVGAN on a CPU that
    rounds unlike the corpus's), a relative RMS within ROUNDING_FACTOR x that one-ulp effect."""
    assert audio.dtype == np.int16
    assert audio.shape == golden.shape, f"length {audio.shape[0]} != golden {golden.shape[0]}"
    worst = int(np.abs(audio.astype(np.int32) - golden.astype(np.int32)).max())
    if worst <= 2:
        return
    sensitivity, ill_conditioned = one_ulp_sensitivity(vocoder, vocoder_inputs)
    assert ill_conditioned, f"max sample difference {worst}"
    error, bound = relative_rms(audio, golden), ROUNDING_FACTOR * sensitivity
    assert error <= bound, f"max sample difference {worst}; relative RMS {error:.3g} > {bound:.3g}"


def _stage_params() -> list:
    return [
        pytest.param(case, name, id=f"{case['id']}-{name}")
        for case in CASES
        for name in case["arrays"]
        if name.startswith(STAGE_PREFIXES) and not name.endswith(REPLAYED)
    ]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_final_audio(case, run_case):
    run = run_case(case)
    assert run.result.sample_rate == case["sample_rate"]
    golden = corpus_case_arrays(case["id"])["audio"]
    assert_final_audio(run.result.audio, golden, run.vocoder, run.vocoder_inputs())


@pytest.mark.parametrize(("case", "name"), _stage_params())
def test_stage_array(case, name, run_case):
    run = run_case(case)
    recorded = run.arrays
    assert name in recorded, f"{name} was not produced (the decoder made different calls)"
    golden = corpus_case_arrays(case["id"])[name]
    if name.startswith("vocoder_") and name.endswith("_wav"):
        mel = recorded[name.removesuffix("_wav") + "_mel"]
        assert_matches_corpus_up_to_rounding(recorded[name], golden, name, run.vocoder, [mel])
    else:
        assert_matches_corpus(recorded[name], golden, name)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_same_calls_as_upstream(case, run_case):
    """Exactly upstream's SoVITS, sampler and vocoder calls: none missing, none extra."""
    golden = {n for n in case["arrays"] if n.startswith(STAGE_PREFIXES) and not n.endswith(REPLAYED)}
    assert set(run_case(case).arrays) == golden


def test_corpus_is_covered():
    assert {c["version"] for c in CASES} == set(VERSIONS)
    assert any(c["request"]["parallel_infer"] for c in CASES) and any(
        not c["request"]["parallel_infer"] for c in CASES
    ), "both sampler modes are exercised"


def _one_case_per_model() -> list[dict]:
    """The cheapest case (fewest sampled frames) of each model version, for the HTTP checks."""
    chosen: dict[str, dict] = {}
    for case in sorted(CASES, key=_sampled_frames):
        chosen.setdefault(case["version"].removesuffix("lora"), case)
    return sorted(chosen.values(), key=lambda c: c["version"])


@pytest.mark.parametrize("case", _one_case_per_model(), ids=lambda c: c["id"])
def test_inference_over_http_returns_upstreams_audio(case, engine):
    """The case sent to /inference as a client would; the sampler's start noise is the corpus's."""
    gpt, sovits = case_model_names(case)
    voice = engine.models.voice(gpt, sovits)  # the voice /inference will run on
    recorder = _Recorder(voice, corpus_case_arrays(case["id"]))
    data, files = multipart_request(case)
    data["sample_steps"] = str(case["request"]["sample_steps"])
    try:
        with TestClient(create_app(Settings(weights_root=engine.config.weights_root), engine=engine)) as client:
            response = client.post("/inference", data=data, files=files)
    finally:
        recorder.close()
    assert response.status_code == 200, response.text
    audio, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    assert rate == case["sample_rate"]
    mels = [recorder.arrays[k] for k in sorted(recorder.arrays) if k.startswith("vocoder_") and k.endswith("_mel")]
    assert_final_audio(audio, corpus_case_arrays(case["id"])["audio"], voice.decoder.vocoder, mels)
