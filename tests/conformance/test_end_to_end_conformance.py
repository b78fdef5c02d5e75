"""The service's synthesis equals upstream's ``TTS.run`` on every v1/v2/v2Pro/v2ProPlus case of the model corpus.

Each case's request (text, languages, cut method, references, prompt text, batching, decode mode,
speed, pause, seed, top_k=1) runs once through the production path: the engine's synthesis call
(planning, model manager, scheduler, runner, pipeline) on an upstream-layout weights root holding the
corpus weights, with the decoder noise setting at 0 (``GSV_DECODER_NOISE_SCALE``), as the corpus ran. ``test_final_audio`` compares the int16 result (same length, every sample within ±2).
To name the stage of a miss, the same run records what the pipeline handed to the models and
``test_stage_array`` compares each recorded array of the case: the GPT inputs (``t2s_i_x_r``,
``t2s_i_bert_r``, ``t2s_i_prompts``), its kept tokens (``t2s_i_tokens_r``) and every decoder call
(``vits_i_codes``, ``vits_i_text``, ``vits_i_audio``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.engine.gpt_stage import GptStage
from app.engine.jobs import SynthesisJob
from app.engine.pipeline import SynthesisResult
from app.engine.voice import Voice
from tests.conftest import assert_matches_corpus, conformance_dir, corpus_case_arrays, corpus_job
from tests.corpus_engine import case_model_names, corpus_engine, corpus_weights_root, synthesize

pytestmark = pytest.mark.conformance

VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")  # v3/v4 belong to a later issue
MODELS_DIR = conformance_dir() / "models"
STAGE_PREFIXES = ("t2s_", "vits_")
NOT_RECORDED = ("_logits_first3_row0",)  # compared by the T2S model test, not a pipeline input
PARALLEL_METHOD, SEQUENTIAL_METHOD = "infer_panel_batch_infer", "infer_panel_naive_batched"


def _cases() -> list[dict]:
    folder = MODELS_DIR / "cases"
    if not folder.is_dir():
        return []
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if c.get("version") in VERSIONS]


CASES = _cases()


def _stage_params() -> list:
    return [
        pytest.param(case, name, id=f"{case['id']}-{name}")
        for case in CASES
        for name in case["arrays"]
        if name.startswith(STAGE_PREFIXES) and not name.endswith(NOT_RECORDED)
    ]


def _our_t2s_call(case: dict) -> dict[int, int]:
    """Corpus GPT call index → index of our GPT call.

    The corpus wrapped both of upstream's decode methods, and a prompt-free parallel decode runs the
    sequential method inside itself: that one decode was recorded twice, the inner sequential call
    first, then the outer parallel call with the same arrays. Both map to our single call.
    """
    mapping: dict[int, int] = {}
    ours = -1
    for i, call in enumerate(case["t2s_calls"]):
        wraps_previous = (
            call["method"] == PARALLEL_METHOD
            and f"t2s_{i}_prompts" not in case["arrays"]
            and i > 0
            and case["t2s_calls"][i - 1]["method"] == SEQUENTIAL_METHOD
        )
        if not wraps_previous:
            ours += 1
        mapping[i] = ours
    return mapping


def _our_name(case: dict, name: str) -> str:
    """The name our recording gives to the corpus array ``name``."""
    stage, index, rest = name.split("_", 2)
    if stage != "t2s":
        return name
    return f"t2s_{_our_t2s_call(case)[int(index)]}_{rest}"


def job_for(case: dict) -> SynthesisJob:
    """The case's ``TTS.run`` request as a job."""
    return corpus_job(case)


class _Recorder:
    """Wraps the engine's GPT stage (the shared decode every request goes through) and the voice's
    SoVITS ``decode`` to keep the arrays the corpus records."""

    def __init__(self, stage: GptStage, voice: Voice):
        self.arrays: dict[str, np.ndarray] = {}
        self._t2s_calls = 0
        self._vits_calls = 0
        self._gpt = stage.decode
        self._decode = voice.sovits.decode

    def gpt(self, model, request):
        i = self._t2s_calls
        self._t2s_calls += 1
        for r, (p, b) in enumerate(zip(request.phones, request.berts, strict=True)):
            self.arrays[f"t2s_{i}_x_{r}"] = p.numpy()
            self.arrays[f"t2s_{i}_bert_{r}"] = b.numpy()
        if request.prompt is not None:
            self.arrays[f"t2s_{i}_prompts"] = request.prompt.expand(len(request.phones), -1).numpy()
        tokens = self._gpt(model, request)
        for r, t in enumerate(tokens):
            self.arrays[f"t2s_{i}_tokens_{r}"] = t.numpy()
        return tokens

    def decode(self, codes, phones, *args, **kwargs):
        i = self._vits_calls
        self._vits_calls += 1
        audio = self._decode(codes, phones, *args, **kwargs)
        self.arrays[f"vits_{i}_codes"] = codes.numpy()
        self.arrays[f"vits_{i}_text"] = phones.numpy()
        self.arrays[f"vits_{i}_audio"] = audio.numpy()
        return audio


@pytest.fixture(scope="module")
def engine(corpus_weights):
    engine = corpus_engine(corpus_weights_root(CASES, corpus_weights))
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def run_case(engine):
    """case → (our result, the arrays recorded on the way); each case runs once per session."""
    runs: dict[str, tuple[SynthesisResult, dict[str, np.ndarray]]] = {}

    def get(case: dict) -> tuple[SynthesisResult, dict[str, np.ndarray]]:
        if case["id"] not in runs:
            gpt, sovits = case_model_names(case)
            voice = engine.models.voice(gpt, sovits)  # the voice the engine's call will run on
            recorder = _Recorder(engine.gpt_stage, voice)
            engine.gpt_stage.decode, voice.sovits.decode = recorder.gpt, recorder.decode
            try:
                result = synthesize(engine, job_for(case), gpt, sovits)
            finally:
                del engine.gpt_stage.decode, voice.sovits.decode  # back to the class methods
            runs[case["id"]] = (result, recorder.arrays)
        return runs[case["id"]]

    return get


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_final_audio(case, run_case):
    result, _ = run_case(case)
    golden = corpus_case_arrays(case["id"])["audio"]
    assert result.sample_rate == case["sample_rate"]
    assert result.seed == case["request"]["seed"]
    assert result.audio.dtype == np.int16
    assert result.audio.shape == golden.shape, f"length {result.audio.shape[0]} != golden {golden.shape[0]}"
    worst = int(np.abs(result.audio.astype(np.int32) - golden.astype(np.int32)).max())
    assert worst <= 2, f"max sample difference {worst}"


@pytest.mark.parametrize(("case", "name"), _stage_params())
def test_stage_array(case, name, run_case):
    _, recorded = run_case(case)
    ours = _our_name(case, name)
    assert ours in recorded, f"{name} was not produced (the pipeline made different calls)"
    assert_matches_corpus(recorded[ours], corpus_case_arrays(case["id"])[name], name)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_same_calls_as_upstream(case, run_case):
    """The pipeline made exactly upstream's GPT and decoder calls (no extra batch, no missing row)."""
    _, recorded = run_case(case)
    golden = {n for n in case["arrays"] if n.startswith(STAGE_PREFIXES) and not n.endswith(NOT_RECORDED)}
    assert set(recorded) == {_our_name(case, n) for n in golden}


def test_doubly_recorded_calls_repeat_the_inner_call():
    """Where two corpus calls map to one of ours, their arrays are identical (so the mapping is sound)."""
    doubled = 0
    for case in CASES:
        by_ours: dict[str, str] = {}
        golden = corpus_case_arrays(case["id"])
        for name in case["arrays"]:
            if not name.startswith("t2s_") or name.endswith(NOT_RECORDED):
                continue
            key = _our_name(case, name)
            if key in by_ours:
                np.testing.assert_array_equal(golden[name], golden[by_ours[key]])
                doubled += 1
            else:
                by_ours[key] = name
    assert doubled > 0, "the corpus no longer records nested calls twice: drop _our_t2s_call"


def test_corpus_is_covered():
    assert {c["version"] for c in CASES} == set(VERSIONS)
    assert any(not c["request"]["prompt_text"] for c in CASES), "no prompt-free case"
    assert any(c["request"]["aux_ref_audio_paths"] for c in CASES), "no aux-reference case"


def test_weights_for_every_case_are_in_the_index():
    index = json.loads((MODELS_DIR / "index.json").read_text(encoding="utf-8"))
    for case in CASES:
        for role in ("t2s", "sovits", "bert", "hubert"):
            assert case["weights"][role] in index["weights"], (case["id"], role)
