"""Writing the demo weights: which files a set of voices needs (``demo_files``), each written
atomically from its own derived seed, existing files kept unless forced (``write_demo_weights``), and
the ``DEMO_WEIGHTS.txt`` listing the service takes as the sign that it runs on demo weights."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.demo.gpt import build_gpt_checkpoint
from app.demo.randomize import derived_seed
from app.demo.shared import build_speaker_state, write_bert, write_hubert
from app.demo.sovits import build_sovits_checkpoint
from app.demo.v4 import build_v4_base_checkpoint, build_v4_lora_checkpoint, build_vocoder_v4_state
from app.demo.voices import DEMO_LORA_RANK, DEMO_VERSIONS, LORA_VERSIONS, demo_voice
from app.engine.registry import BERT_DIR, HUBERT_DIR, PRETRAINED_SOVITS, SV_CHECKPOINT, VOCODER_V4

README_NAME = "DEMO_WEIGHTS.txt"


def _torch_bytes(obj: Any) -> bytes:
    # Saving to a buffer names the archive's inner folder "archive" whatever the file is called,
    # so identical content gives identical bytes (and a header can replace the first two).
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_file_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a server running as another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_folder_atomically(path: Path, fill: Callable[[Path], None]) -> None:
    """Build the folder next to its target, then swap it in (the old one is removed only after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    old = path.parent / f".{path.name}.old"
    try:
        fill(staging)
        staging.chmod(0o755)  # mkdtemp makes it owner-only
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class DemoFile:
    """One file or folder the generator produces."""

    path: str  # relative to the weights root
    what: str
    write: Callable[[Path, int], None]  # (absolute path, derived seed)
    is_folder: bool = False
    # The name the seed is derived from (default: the path). Files that must agree, a LoRA and the
    # base it was trained from, share one.
    seed_name: str | None = None


def _gpt_file(version: str) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_gpt_checkpoint(version, seed)))

    return DemoFile(demo_voice(version).gpt, f"GPT {version}", write)


def _sovits_file(version: str) -> DemoFile:
    if version in LORA_VERSIONS:
        return _sovits_lora_file(version)

    def write(path: Path, seed: int) -> None:
        checkpoint, header = build_sovits_checkpoint(version, seed)
        _write_file_atomically(path, header + _torch_bytes(checkpoint)[2:])

    return DemoFile(demo_voice(version).sovits, f"SoVITS {version}", write)


def _lora_seed_name(version: str) -> str:
    return f"{version} base and LoRA"


def _sovits_lora_file(version: str) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        checkpoint, header = build_v4_lora_checkpoint(seed)
        _write_file_atomically(path, header + _torch_bytes(checkpoint)[2:])

    what = f"SoVITS {version} LoRA fine-tune, rank {DEMO_LORA_RANK}, on the {version} base"
    return DemoFile(demo_voice(version).sovits, what, write, seed_name=_lora_seed_name(version))


def _sovits_base_file(version: str) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_v4_base_checkpoint(seed)))

    what = f"SoVITS {version} pretrained base, which LoRA fine-tunes are merged into"
    return DemoFile(PRETRAINED_SOVITS[version], what, write, seed_name=_lora_seed_name(version))


def _vocoder_v4_file() -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_vocoder_v4_state(seed)))

    return DemoFile(VOCODER_V4, "v4 vocoder, 48 kHz HiFi-GAN", write)


def _speaker_file() -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_speaker_state(seed)))

    return DemoFile(SV_CHECKPOINT, "speaker verification (v2Pro, v2ProPlus)", write)


def _folder(relative: str, what: str, fill: Callable[[Path, int], None]) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_folder_atomically(path, lambda staging: fill(staging, seed))

    return DemoFile(relative, what, write, is_folder=True)


def _shared_files(version: str) -> list[DemoFile]:
    """The shared models a voice of ``version`` needs, including a LoRA's base and a vocoder."""
    files = [
        _folder(HUBERT_DIR, "HuBERT", write_hubert),
        _folder(BERT_DIR, "Chinese BERT", write_bert),
    ]
    if version in ("v2Pro", "v2ProPlus"):
        files.append(_speaker_file())
    if version == "v4":
        files += [_sovits_base_file(version), _vocoder_v4_file()]
    return files


def demo_files(versions: Iterable[str] = DEMO_VERSIONS) -> list[DemoFile]:
    """Everything needed to run the demo voices of ``versions``: shared models first, each once."""
    versions = list(dict.fromkeys(versions))
    for version in versions:
        demo_voice(version)  # raises for versions without a demo voice
    shared: dict[str, DemoFile] = {}
    for version in versions:
        for item in _shared_files(version):
            shared.setdefault(item.path, item)
    voices = [item for version in versions for item in (_sovits_file(version), _gpt_file(version))]
    return [*shared.values(), *voices]


README_TEXT = """\
These are DEMO weights written by gsv-demo-weights: small random models in GPT-SoVITS's folder
layout. They produce noise, not speech. They only let you try the service end to end.

Real weights go in the same layout (an upstream GPT-SoVITS install works as is):
  GPT_SoVITS/pretrained_models/   chinese-hubert-base/, chinese-roberta-wwm-ext-large/,
                                  sv/pretrained_eres2netv2w24s4ep4.ckpt, the pretrained GPT/SoVITS files,
                                  gsv-v4-pretrained/ (the v4 base s2Gv4.pth and vocoder.pth)
  SoVITS_weights*/                your SoVITS fine-tunes (*.pth), one folder per version; v3/v4
                                  LoRA fine-tunes load on top of their pretrained base
  GPT_weights*/                   your GPT fine-tunes (*.ckpt), one folder per version
Replace the demo files (or delete them) once you have real ones; see weights/README.md.

Demo files written here:
"""
_LISTED = re.compile(r"^  (\S+)  \((.*)\)$")


@dataclass(frozen=True)
class WriteResult:
    path: str  # relative to the root
    what: str
    written: bool  # False: it existed and was kept


def write_demo_weights(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    versions: Iterable[str] = DEMO_VERSIONS,
    force: bool = False,
    on_progress: Callable[[WriteResult], None] | None = None,
) -> list[WriteResult]:
    """Write the demo weights of ``versions`` under ``root``; existing files are kept unless ``force``.

    Returns what happened to each file, in order; ``on_progress`` is told as each one is done.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for item in demo_files(versions):
        target = root / item.path
        exists = target.is_dir() if item.is_folder else target.is_file()
        if force or not exists:
            item.write(target, derived_seed(seed, item.seed_name or item.path))
        result = WriteResult(item.path, item.what, written=force or not exists)
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    _update_readme(root, [r for r in results if r.written])
    return results


def _update_readme(root: Path, written: list[WriteResult]) -> None:
    """List every demo file written here so far in ``README_NAME``; the service takes that file as
    the sign that it runs on demo weights. A run that wrote nothing (every file already there, e.g.
    a real install) does not create it."""
    path = root / README_NAME
    listed: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := _LISTED.match(line):
                listed[match.group(1)] = match.group(2)
    if not written and not listed:
        return
    listed.update({r.path: r.what for r in written})
    listing = "".join(f"  {name}  ({what})\n" for name, what in listed.items())
    _write_file_atomically(path, (README_TEXT + listing).encode("utf-8"))
