"""The model corpus on the production path: its generated weights laid out as an upstream weights root,
and an :class:`~app.engine.engine.Engine` serving from it exactly as the service does (model manager,
planning, scheduler, runner, pipeline). End-to-end conformance tests run corpus cases through here or
over HTTP, never through a test-only assembly of models.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from pathlib import Path

from app.engine.engine import Engine, EngineConfig
from app.engine.jobs import SynthesisJob
from app.engine.pipeline import SynthesisResult
from app.engine.registry import (
    BERT_DIR,
    BIGVGAN_V3_DIR,
    HUBERT_DIR,
    PRETRAINED_SOVITS,
    SV_CHECKPOINT,
    VOCODER_V4,
)
from tests.conftest import ROOT, conformance_dir

ROOTS_CACHE = ROOT / ".cache" / "conformance-roots"


def model_version(case: dict) -> str:
    """v1 ... v4 for a case's ``version`` (``v3lora`` is a v3 model)."""
    return case["version"].removesuffix("lora")


def case_placements(case: dict) -> dict[str, str]:
    """Where each weight of a case goes in an upstream weights root: relative path -> corpus name."""
    weights, model = case["weights"], model_version(case)
    places = {
        f"GPT_weights_v2/{weights['t2s']}.ckpt": weights["t2s"],
        HUBERT_DIR: weights["hubert"],
        BERT_DIR: weights["bert"],
    }
    base = weights.get("sovits_base")
    if base:
        places[PRETRAINED_SOVITS[model]] = base
    if weights["sovits"] != base:
        places[f"SoVITS_weights_v2/{weights['sovits']}.pth"] = weights["sovits"]
    if weights.get("sv"):
        places[SV_CHECKPOINT] = weights["sv"]
    if weights.get("vocoder"):
        places[BIGVGAN_V3_DIR if model == "v3" else VOCODER_V4] = weights["vocoder"]
    return places


def case_model_names(case: dict) -> tuple[str, str]:
    """The (GPT, SoVITS) names the service lists for a case's models in its weights root."""
    weights = case["weights"]
    sovits = (
        PRETRAINED_SOVITS[model_version(case)]
        if weights["sovits"] == weights.get("sovits_base")
        else f"SoVITS_weights_v2/{weights['sovits']}.pth"
    )
    return f"GPT_weights_v2/{weights['t2s']}.ckpt", sovits


def _link(source: Path, target: Path) -> None:
    """Hard-link (copy where links cannot cross file systems) a file or a folder to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_file, dirs_exist_ok=True)
    else:
        _link_file(source, target)


def _link_file(source, target) -> None:
    if os.path.exists(target):
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_weights(root: Path, places: dict[str, str], corpus_weights) -> Path:
    """Put corpus weights (relative path -> corpus name) into ``root``; returns ``root``."""
    for rel, name in places.items():
        _link(corpus_weights(name), root / rel)
    return root


def corpus_weights_root(cases: list[dict], corpus_weights) -> Path:
    """A weights root in upstream's layout holding every weight of ``cases`` (made once, reused)."""
    places: dict[str, str] = {}
    for case in cases:
        for rel, name in case_placements(case).items():
            assert places.setdefault(rel, name) == name, f"two weights for {rel}"
    digest = hashlib.sha256(json.dumps(sorted(places.items())).encode()).hexdigest()[:12]
    return link_weights(ROOTS_CACHE / digest, places, corpus_weights)


def corpus_cases(*versions: str) -> list[dict]:
    """The model corpus's cases of these versions (all when none are named), in file order."""
    folder = conformance_dir() / "models" / "cases"
    cases = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    return [c for c in cases if not versions or c["version"] in versions]


def corpus_engine(root: Path, **config) -> Engine:
    """A started engine on ``root`` with the corpus's decoder noise (0); stop it when done."""
    engine = Engine(EngineConfig(weights_root=root, device="cpu", decoder_noise_scale=0.0, **config))
    engine.start()
    return engine


def synthesize(engine: Engine, job: SynthesisJob, gpt: str, sovits: str) -> SynthesisResult:
    """The engine's synthesis call (what ``/inference`` awaits), from synchronous test code."""
    return asyncio.run(engine.synthesize(job, gpt, sovits))
