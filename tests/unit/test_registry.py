"""Weight registry: listing as upstream shows it, path confinement, version detection."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from app.engine.checkpoints import CheckpointError
from app.engine.errors import EngineError, InvalidRequest, NotFound
from app.engine.registry import (
    PRETRAINED_GPT,
    PRETRAINED_SOVITS,
    SOVITS_DIR_BY_VERSION,
    WeightRegistry,
    natural_key,
    sovits_version,
)
from tests.conftest import conformance_dir, generate_weights


def touch(root, rel, data=b"PK\x03\x04"):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_natural_sort_compares_digit_runs_as_numbers():
    names = ["a10.pth", "a2.pth", "a1.pth", "b.pth", "a2b.pth"]
    assert sorted(names, key=natural_key) == ["a1.pth", "a2.pth", "a2b.pth", "a10.pth", "b.pth"]


def test_listing_shows_pretrained_and_finetuned_names_sorted_once(tmp_path):
    for rel in set(PRETRAINED_GPT.values()) | set(PRETRAINED_SOVITS.values()):
        touch(tmp_path, rel)
    touch(tmp_path, "SoVITS_weights_v2/voice_e10_s100.pth")
    touch(tmp_path, "SoVITS_weights_v2/voice_e8_s200.pth")
    touch(tmp_path, "SoVITS_weights_v2/notes.txt")
    touch(tmp_path, "SoVITS_weights_v3/井芹仁菜V3_e100_s1800.pth")
    touch(tmp_path, "GPT_weights_v2/voice-e15.ckpt")
    touch(tmp_path, "GPT_weights_v2/voice-e5.ckpt")
    touch(tmp_path, "GPT_weights_v2/voice.pth")  # wrong suffix for GPT
    registry = WeightRegistry(tmp_path)

    sovits = registry.sovits_names()
    gpt = registry.gpt_names()
    assert sovits == sorted(sovits, key=natural_key)
    assert gpt == sorted(gpt, key=natural_key)
    assert "SoVITS_weights_v2/voice_e8_s200.pth" in sovits
    assert sovits.index("SoVITS_weights_v2/voice_e8_s200.pth") < sovits.index("SoVITS_weights_v2/voice_e10_s100.pth")
    assert "SoVITS_weights_v3/井芹仁菜V3_e100_s1800.pth" in sovits
    assert not any(n.endswith(".txt") for n in sovits)
    assert gpt.count("GPT_SoVITS/pretrained_models/s1v3.ckpt") == 1
    assert gpt.index("GPT_weights_v2/voice-e5.ckpt") < gpt.index("GPT_weights_v2/voice-e15.ckpt")
    assert "GPT_weights_v2/voice.pth" not in gpt
    assert set(PRETRAINED_SOVITS.values()) <= set(sovits)


def test_listing_is_rescanned_every_call(tmp_path):
    registry = WeightRegistry(tmp_path)
    assert registry.sovits_names() == []
    touch(tmp_path, "SoVITS_weights/new.pth")
    assert registry.sovits_names() == ["SoVITS_weights/new.pth"]


@pytest.mark.parametrize("name", ["../secret.pth", "/etc/passwd", "SoVITS_weights/../../x.pth", "C:\\x.pth", "a\x00b"])
def test_names_outside_the_root_are_refused(tmp_path, name):
    with pytest.raises(InvalidRequest) as info:
        WeightRegistry(tmp_path).resolve_sovits(name)
    assert info.value.code in ("invalid_name", "path_outside_root")


def test_symlink_pointing_out_of_the_root_is_neither_listed_nor_loaded(tmp_path):
    outside = tmp_path / "outside"
    root = tmp_path / "root"
    touch(outside, "evil.pth")
    (root / "SoVITS_weights").mkdir(parents=True)
    os.symlink(outside / "evil.pth", root / "SoVITS_weights" / "evil.pth")
    os.symlink(outside, root / "SoVITS_weights_v2")
    registry = WeightRegistry(root)
    assert registry.sovits_names() == []
    with pytest.raises(EngineError):
        registry.resolve_sovits("SoVITS_weights/evil.pth")


def test_unknown_name_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        WeightRegistry(tmp_path).resolve_gpt("GPT_weights/missing.ckpt")


def _sovits_layouts():
    """Every SoVITS layout of the corpus; the full-size v3/v4 bases (770 MB files, 3 GB to write)
    run with the other full-size tests, in a process of their own."""
    folder = conformance_dir() / "layouts"
    if not folder.is_dir():
        return []
    names = sorted(p.stem for p in folder.glob("sovits_*.json"))
    return [pytest.param(n, marks=pytest.mark.fullsize) if n.endswith("_base_full") else n for n in names]


def _corpus_seed(layout: str) -> int:
    """The seed the corpus's own models use for ``layout`` (any seed is fine for detection): a full-size
    file is then written once per suite, not once more here (770 MB each on a shared disk)."""
    index = json.loads((conformance_dir() / "models" / "index.json").read_text(encoding="utf-8"))
    return next((w["seed"] for w in index["weights"].values() if w["layout"] == layout), 7)


@pytest.mark.conformance
@pytest.mark.parametrize("layout", _sovits_layouts())
def test_every_sovits_layout_is_detected(tmp_path, layout):
    spec = json.loads((conformance_dir() / "layouts" / f"{layout}.json").read_text(encoding="utf-8"))
    generated = generate_weights(layout, _corpus_seed(layout))
    model = spec["model_version"]
    is_base = spec["header"] is None and model in ("v3", "v4")
    # Bases live at their pretrained path (that is how upstream finds them); fine-tunes in their folder.
    rel = PRETRAINED_SOVITS[model] if is_base else f"{SOVITS_DIR_BY_VERSION[model]}/{spec['file_name']}"
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    try:  # a hard link costs no disk; a symlink to the cache would leave the root
        os.link(generated, tmp_path / rel)
    except OSError:
        shutil.copyfile(generated, tmp_path / rel)

    version = WeightRegistry(tmp_path).sovits_version(rel)
    assert version.model == model
    assert version.symbols == ("v1" if model == "v1" else "v2")
    assert version.is_lora == (spec.get("lora_rank") is not None)


def test_small_v2_file_is_v2_by_its_weights_not_its_size(tmp_path):
    # Headerless files under 81 MB are "v1" by upstream's size rule; the text embedding corrects it.
    path = generate_weights("sovits_v2_tiny", 11)
    assert path.stat().st_size < 82978 * 1024
    assert sovits_version(path).model == "v2"
    assert sovits_version(generate_weights("sovits_v1_tiny", 11)).model == "v1"


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bogus = touch(tmp_path, "SoVITS_weights/bogus.pth", b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="bogus.pth"):
        sovits_version(bogus)


@pytest.mark.parametrize("version", ["v3", "v4", "v2Pro"])
def test_quick_check_trusts_the_pretrained_path_before_the_size(tmp_path, version):
    """A small headerless file at a version's pretrained path (a demo base, a re-saved official file) is
    that version; the same bytes elsewhere fall to the size rule (v1 for a small file)."""
    touch(tmp_path, PRETRAINED_SOVITS[version], b"PK\x03\x04" + b"\0" * 100)
    touch(tmp_path, "SoVITS_weights_v2/small.pth", b"PK\x03\x04" + b"\0" * 100)
    registry = WeightRegistry(tmp_path)
    assert registry.sovits_version_fast(PRETRAINED_SOVITS[version]).model == version
    assert registry.sovits_version_fast("SoVITS_weights_v2/small.pth").model == "v1"
