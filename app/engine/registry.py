"""The weights root: what models exist, what version each is, and safe name → path resolution.

The root is laid out like an upstream GPT-SoVITS install, so an existing upstream folder works
unchanged (see weights/README.md). Names are the relative paths upstream's UI shows, e.g.
``SoVITS_weights_v2/voice_e8_s200.pth`` or ``GPT_SoVITS/pretrained_models/s1v3.ckpt``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.engine.checkpoints import ZIP_MAGIC, CheckpointError, load_checkpoint, weights_of
from app.engine.errors import InvalidRequest, NotFound
from app.engine.text.symbols import text_version, text_version_of_gpt, text_version_of_table

PRETRAINED = "GPT_SoVITS/pretrained_models"

# Official pretrained files per model version (upstream config.py).
PRETRAINED_SOVITS: dict[str, str] = {
    "v1": f"{PRETRAINED}/s2G488k.pth",
    "v2": f"{PRETRAINED}/gsv-v2final-pretrained/s2G2333k.pth",
    "v3": f"{PRETRAINED}/s2Gv3.pth",
    "v4": f"{PRETRAINED}/gsv-v4-pretrained/s2Gv4.pth",
    "v2Pro": f"{PRETRAINED}/v2Pro/s2Gv2Pro.pth",
    "v2ProPlus": f"{PRETRAINED}/v2Pro/s2Gv2ProPlus.pth",
}
PRETRAINED_GPT: dict[str, str] = {
    "v1": f"{PRETRAINED}/s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt",
    "v2": f"{PRETRAINED}/gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
    "v3": f"{PRETRAINED}/s1v3.ckpt",
    "v4": f"{PRETRAINED}/s1v3.ckpt",
    "v2Pro": f"{PRETRAINED}/s1v3.ckpt",
    "v2ProPlus": f"{PRETRAINED}/s1v3.ckpt",
}
# Shared models every voice needs, at upstream's paths.
HUBERT_DIR = f"{PRETRAINED}/chinese-hubert-base"
BERT_DIR = f"{PRETRAINED}/chinese-roberta-wwm-ext-large"
SV_CHECKPOINT = f"{PRETRAINED}/sv/pretrained_eres2netv2w24s4ep4.ckpt"
BIGVGAN_V3_DIR = f"{PRETRAINED}/models--nvidia--bigvgan_v2_24khz_100band_256x"
VOCODER_V4 = f"{PRETRAINED}/gsv-v4-pretrained/vocoder.pth"
# v3's optional 24 -> 48 kHz upsampler (super_sampling): g_24kto48k.zip + config.json.
BANDWIDTH_EXTENSION_DIR = "tools/AP_BWE_main/24kto48k"
G2PW_DIR = "GPT_SoVITS/text/G2PWModel"

MODEL_VERSIONS = ("v1", "v2", "v3", "v4", "v2Pro", "v2ProPlus")
# Fine-tune folders per version: SoVITS_weights (v1), SoVITS_weights_v2, ... and the same for GPT.
SOVITS_DIR_BY_VERSION = {v: "SoVITS_weights" + ("" if v == "v1" else f"_{v}") for v in MODEL_VERSIONS}
GPT_DIR_BY_VERSION = {v: "GPT_weights" + ("" if v == "v1" else f"_{v}") for v in MODEL_VERSIONS}
SOVITS_DIRS = tuple(SOVITS_DIR_BY_VERSION.values())
GPT_DIRS = tuple(GPT_DIR_BY_VERSION.values())

# (model version, is LoRA) by the 2-byte header upstream writes over "PK".
_BY_HEADER: dict[bytes, tuple[str, bool]] = {
    b"00": ("v1", False),
    b"01": ("v2", False),
    b"02": ("v3", False),
    b"03": ("v3", True),
    b"04": ("v4", True),
    b"05": ("v2Pro", False),
    b"06": ("v2ProPlus", False),
}
# md5 of the first 8 KiB of the official pretrained SoVITS files (upstream process_ckpt.py).
_BY_PRETRAINED_MD5: dict[str, tuple[str, bool]] = {
    "dc3c97e17592963677a4a1681f30c653": ("v2", False),  # s2G488k.pth
    "43797be674a37c1c83ee81081941ed0f": ("v3", False),  # s2Gv3.pth
    "6642b37f3dbb1f76882b69937c95a5f3": ("v2", False),  # s2G2333k.pth
    "4f26b9476d0c5033e04162c486074374": ("v4", False),  # s2Gv4.pth
    "c7e9fce2223f3db685cdfa1e6368728a": ("v2Pro", False),  # s2Gv2Pro.pth
    "66b313e39455b57ab1b0bc0b239c9d0a": ("v2ProPlus", False),  # s2Gv2ProPlus.pth
}
# Old headerless files: upstream tells v1 from v2 from v3 by size alone.
_V1_MAX_BYTES = 82978 * 1024
_V2_MAX_BYTES = 700 * 1024 * 1024


@dataclass(frozen=True)
class ModelVersion:
    model: str  # v1, v2, v3, v4, v2Pro, v2ProPlus
    is_lora: bool = False

    @property
    def symbols(self) -> str:
        """ "v1" or "v2": which symbol table and language modules the text frontend uses."""
        return text_version(self.model)

    @property
    def uses_vocoder(self) -> bool:
        return self.model in ("v3", "v4")


def natural_key(name: str) -> list:
    """Upstream's sort key: digit runs compare as numbers, the rest as text."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _md5_first_8k(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read(8192)).hexdigest()


def sovits_version_from_file(path: Path, pretrained_as: str | None = None) -> ModelVersion:
    """Upstream's fast detection: pretrained md5, then the 2-byte header, then the file size.

    ``pretrained_as`` is the version whose official pretrained path the file sits at. Upstream only
    knows official bases by md5, so any other headerless file there falls to the size rule (a v4 base
    reads as v3); we trust the path before the size, which changes nothing for official files."""
    found = _BY_PRETRAINED_MD5.get(_md5_first_8k(path))
    if found:
        return ModelVersion(*found)
    with open(path, "rb") as f:
        header = f.read(2)
    if header in _BY_HEADER:
        return ModelVersion(*_BY_HEADER[header])
    if header != ZIP_MAGIC:
        raise CheckpointError(path, "is not a SoVITS checkpoint (unknown file header)")
    if pretrained_as is not None:
        return ModelVersion(pretrained_as)
    size = path.stat().st_size
    if size < _V1_MAX_BYTES:
        return ModelVersion("v1")
    if size < _V2_MAX_BYTES:
        return ModelVersion("v2")
    return ModelVersion("v3")


def refine_with_weights(fast: ModelVersion, weight: dict) -> ModelVersion:
    """What upstream decides once the file is loaded: the text embedding's size gives the symbol
    table, and for v1/v2-class files it overrides the fast guess (a small v2 file is not v1)."""
    embedding = weight.get("enc_p.text_embedding.weight")
    if fast.model in ("v3", "v4") or "Pro" in fast.model or embedding is None:
        return fast
    return ModelVersion(text_version_of_table(embedding.shape[0]), fast.is_lora)


def pretrained_version_of(name: str) -> str | None:
    """The version whose official pretrained SoVITS path ``name`` (relative to the root) is, if any."""
    return next((v for v, rel in PRETRAINED_SOVITS.items() if rel == name), None)


def sovits_version(path: Path, pretrained_as: str | None = None) -> ModelVersion:
    """The full detection upstream performs when it loads a SoVITS file."""
    fast = sovits_version_from_file(path, pretrained_as)
    checkpoint = load_checkpoint(path)
    return refine_with_weights(fast, weights_of(checkpoint, path))


gpt_symbol_version = text_version_of_gpt  # the symbol table a GPT can read (see text.symbols)


MAX_NAME_CHARS = 1024


def resolve_under(root: str | os.PathLike, relative: str, what: str = "name") -> Path:
    """``relative`` resolved inside ``root``, refusing anything that leaves it: ``..``, absolute or
    drive paths, NUL bytes, and symlinks that point out. Existence is not checked here."""
    if not relative or "\x00" in relative:
        raise InvalidRequest(f"empty or invalid {what}", code="invalid_name")
    pure = PurePosixPath(relative.replace("\\", "/"))
    # Longer names cannot exist on disk (the OS would answer ENAMETOOLONG to any lookup).
    if len(relative) > MAX_NAME_CHARS or any(
        len(part.encode("utf-8", "replace")) > 255 for part in pure.parts
    ):
        raise InvalidRequest(
            f"{what} is too long (at most {MAX_NAME_CHARS} characters, 255 bytes a folder)",
            code="invalid_name",
        )
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", relative):
        raise InvalidRequest(f"{what} {relative!r} must be a relative path", code="path_outside_root")
    base = Path(root).resolve()
    candidate = (base / pure).resolve()
    if not candidate.is_relative_to(base):
        raise InvalidRequest(f"{what} {relative!r} points outside its root folder", code="path_outside_root")
    return candidate


class WeightRegistry:
    """Lists and resolves weight files under one root. Rescans the disk on every listing."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ---------------------------------------------------------------- listing
    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root.resolve())

    def _listed(self, pretrained: dict[str, str], dirs: tuple[str, ...], suffix: str) -> list[str]:
        # Files reached through symlinks that leave the root are not offered (nor loadable).
        names: set[str] = {
            rel
            for rel in pretrained.values()
            if (self.root / rel).is_file() and self._inside(self.root / rel)
        }
        for folder in dirs:
            directory = self.root / folder
            if not directory.is_dir():
                continue
            for entry in os.scandir(directory):
                if entry.name.endswith(suffix) and entry.is_file() and self._inside(Path(entry.path)):
                    names.add(f"{folder}/{entry.name}")
        # One natural sort over every name; each name once (v3 and v4 share s1v3.ckpt).
        return sorted(names, key=natural_key)

    def sovits_names(self) -> list[str]:
        return self._listed(PRETRAINED_SOVITS, SOVITS_DIRS, ".pth")

    def gpt_names(self) -> list[str]:
        return self._listed(PRETRAINED_GPT, GPT_DIRS, ".ckpt")

    # ---------------------------------------------------------------- resolution
    def path_of(self, relative: str) -> Path:
        """``relative`` under the root, refusing anything that leaves it. Existence is not checked."""
        return resolve_under(self.root, relative, "weight name")

    def _resolve_listed(self, name: str, kind: str, names: list[str]) -> Path:
        path = self.path_of(name)
        if name not in names or not path.is_file():
            raise NotFound(
                f"no {kind} weights named {name!r}; POST /change_choices lists the available names",
                code=f"{kind.lower()}_weights_not_found",
            )
        return path

    def resolve_sovits(self, name: str) -> Path:
        return self._resolve_listed(name, "SoVITS", self.sovits_names())

    def resolve_gpt(self, name: str) -> Path:
        return self._resolve_listed(name, "GPT", self.gpt_names())

    def sovits_version(self, name: str) -> ModelVersion:
        """Version of a listed SoVITS file (loads it: the weights inside settle v1 vs v2)."""
        return sovits_version(self.resolve_sovits(name), pretrained_version_of(name))

    def sovits_version_fast(self, name: str) -> ModelVersion:
        """Version of a listed SoVITS file from its md5, header, path and size (reads 8 KiB)."""
        return sovits_version_from_file(self.resolve_sovits(name), pretrained_version_of(name))

    def pretrained_sovits_path(self, model_version: str) -> Path:
        """Where the base model of a v3/v4 LoRA file must be."""
        return self.path_of(PRETRAINED_SOVITS[model_version])
