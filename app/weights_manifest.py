"""What ``gsv-fetch-weights`` downloads: upstream's pretrained files per model version, where each
lands in the weights root, and what each can be checked against.

Facts, from upstream GPT-SoVITS (README "Pretrained Models" and the release notes of each version,
``config.py``'s pretrained paths, ``install.sh``):

- every pretrained model is in the Hugging Face repository ``lj1995/GPT-SoVITS``; a file's path in it
  is its path under ``GPT_SoVITS/pretrained_models/`` (so the local paths are the registry's);
- the g2pW polyphone model is ``G2PWModel.zip`` of ``XXXXRT/GPT-SoVITS-Pretrained``, unzipped into
  ``GPT_SoVITS/text`` (it holds a ``G2PWModel/`` folder);
- the English dictionaries and g2pW's word dictionary are files of upstream's git repository, taken
  at a pinned commit and checked against their git blob ids.

The discriminators (``s2D*.pth``) are for training only and are not fetched. The AP-BWE model for v3
super-sampling is not fetched either: upstream distributes it from a Google Drive folder only
(``tools/AP_BWE_main/24kto48k/readme.txt``), not from a hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.engine.registry import (
    BERT_DIR,
    BIGVGAN_V3_DIR,
    HUBERT_DIR,
    MODEL_VERSIONS,
    PRETRAINED,
    PRETRAINED_GPT,
    PRETRAINED_SOVITS,
    SV_CHECKPOINT,
    VOCODER_V4,
)
from app.engine.text.en.lexicon import (
    UPSTREAM_CMUDICT,
    UPSTREAM_DICT_DIR,
    UPSTREAM_FAST_DICT,
    UPSTREAM_HOT_DICT,
)
from app.engine.text.zh.g2pw import (
    BOPOMOFO_FILE,
    CONFIG_FILE,
    MODEL_DIR,
    MONOPHONIC_FILE,
    ONNX_FILE_NAMES,
    POLYPHONIC_FILE,
    WORD_DICTIONARY_DIR,
    WORD_DICTIONARY_FILES,
)

HUB_REPO = "lj1995/GPT-SoVITS"
G2PW_REPO = "XXXXRT/GPT-SoVITS-Pretrained"
G2PW_ZIP = "G2PWModel.zip"

# Upstream's own recommendation: the v2Pro series "surpasses v4's performance, with v2's hardware cost
# and speed" (README, V2Pro release notes); ProPlus is the larger of the two and the one upstream's
# online demo and speed figures use.
DEFAULT_VERSIONS = ("v2ProPlus",)

# Upstream's repository at the commit this service was checked against (its files are read from there).
UPSTREAM_COMMIT = "48b1a0169a28582a8984402f82cf438d3bfa6aca"
UPSTREAM_RAW_BASE = "https://raw.githubusercontent.com/RVC-Boss/GPT-SoVITS"
RAW_BASE_ENV = "GSV_UPSTREAM_RAW_URL"  # overrides UPSTREAM_RAW_BASE (a mirror; tests)

# md5 of the first 8 KiB of the official SoVITS files: how upstream (process_ckpt.py) and this
# service's registry recognise them. Other files have no published identity.
PRETRAINED_MD5_8K: dict[str, str] = {
    PRETRAINED_SOVITS["v1"]: "dc3c97e17592963677a4a1681f30c653",
    PRETRAINED_SOVITS["v2"]: "6642b37f3dbb1f76882b69937c95a5f3",
    PRETRAINED_SOVITS["v3"]: "43797be674a37c1c83ee81081941ed0f",
    PRETRAINED_SOVITS["v4"]: "4f26b9476d0c5033e04162c486074374",
    PRETRAINED_SOVITS["v2Pro"]: "c7e9fce2223f3db685cdfa1e6368728a",
    PRETRAINED_SOVITS["v2ProPlus"]: "66b313e39455b57ab1b0bc0b239c9d0a",
}


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repository and its place under the weights root."""

    repo_id: str
    filename: str  # path in the repository
    local_path: str  # path under the weights root

    @property
    def is_json(self) -> bool:
        return self.filename.endswith(".json")


@dataclass(frozen=True)
class GitFile:
    """One file of upstream's git repository at UPSTREAM_COMMIT, with its size and git blob id."""

    path: str  # in the repository, and under the weights root (the same layout)
    size: int
    blob_sha1: str


def _pretrained(local_path: str) -> HubFile:
    prefix = PRETRAINED + "/"
    assert local_path.startswith(prefix), local_path
    return HubFile(HUB_REPO, local_path.removeprefix(prefix), local_path)


def _folder(folder: str, *names: str) -> tuple[HubFile, ...]:
    return tuple(_pretrained(f"{folder}/{name}") for name in names)


# What transformers reads of each folder (the config, the weights and, for BERT, the tokenizer).
SHARED = _folder(HUBERT_DIR, "config.json", "preprocessor_config.json", "pytorch_model.bin") + _folder(
    BERT_DIR, "config.json", "tokenizer.json", "pytorch_model.bin"
)
_EXTRA: dict[str, tuple[HubFile, ...]] = {
    "v3": _folder(BIGVGAN_V3_DIR, "config.json", "bigvgan_generator.pt"),
    "v4": (_pretrained(VOCODER_V4),),
    "v2Pro": (_pretrained(SV_CHECKPOINT),),
    "v2ProPlus": (_pretrained(SV_CHECKPOINT),),
}


def hub_files(versions: Iterable[str]) -> list[HubFile]:
    """Every hub file the given versions need, each once, shared models first."""
    files: dict[str, HubFile] = {f.local_path: f for f in SHARED}
    for version in versions:
        if version not in MODEL_VERSIONS:
            raise ValueError(f"unknown version {version!r} (choose from {', '.join(MODEL_VERSIONS)})")
        for item in (_pretrained(PRETRAINED_GPT[version]), _pretrained(PRETRAINED_SOVITS[version])):
            files.setdefault(item.local_path, item)
        for item in _EXTRA.get(version, ()):
            files.setdefault(item.local_path, item)
    return list(files.values())


# The zip holds a G2PWModel/ folder; the service reads these files of it (app/engine/text/zh/g2pw.py).
G2PW_FILE = HubFile(G2PW_REPO, G2PW_ZIP, MODEL_DIR)
G2PW_REQUIRED = (CONFIG_FILE, POLYPHONIC_FILE, MONOPHONIC_FILE, BOPOMOFO_FILE)
G2PW_ONNX_NAMES = ONNX_FILE_NAMES

# Sizes and blob ids from `git ls-tree -l` of upstream at UPSTREAM_COMMIT.
ENGLISH_DICTS = (
    GitFile(f"{UPSTREAM_DICT_DIR}/{UPSTREAM_CMUDICT}", 3731285, "eb4ee9e4c837e23580593929ae04abb37c100e39"),
    GitFile(f"{UPSTREAM_DICT_DIR}/{UPSTREAM_FAST_DICT}", 3613898, "ec1564a87ea73e92c254c7883b410bcc5fca6e26"),
    GitFile(f"{UPSTREAM_DICT_DIR}/{UPSTREAM_HOT_DICT}", 75, "b926830366cad682405ff6c91f05f89792376951"),
)
# g2pW's word -> readings overrides, which upstream applies over the model's answers.
_G2PW_DICT_FACTS = {
    "polyphonic.rep": (1391, "cb4ef9790b87631d3d39af48b1500341e6a052cf"),
    "polyphonic-fix.rep": (1660967, "51ebc1452bd0d5968cd65310e91c6b2cc84270c4"),
}
G2PW_DICTS = tuple(GitFile(f"{WORD_DICTIONARY_DIR}/{n}", *_G2PW_DICT_FACTS[n]) for n in WORD_DICTIONARY_FILES)


@dataclass(frozen=True)
class Plan:
    """What one fetch gets and the identities it checks them against (tests substitute their own)."""

    hub: tuple[HubFile, ...]
    git: tuple[GitFile, ...] = ()
    g2pw: HubFile | None = None
    md5_8k: Mapping[str, str] = field(default_factory=lambda: dict(PRETRAINED_MD5_8K))

    @property
    def local_paths(self) -> list[str]:
        return [f.local_path for f in self.hub] + [f.path for f in self.git] + ([MODEL_DIR] if self.g2pw else [])


def plan_for(versions: Iterable[str] = DEFAULT_VERSIONS, *, g2pw: bool = False, english_dicts: bool = False) -> Plan:
    git = (ENGLISH_DICTS if english_dicts else ()) + (G2PW_DICTS if g2pw else ())
    return Plan(hub=tuple(hub_files(versions)), git=git, g2pw=G2PW_FILE if g2pw else None)
