"""gsv-demo-weights: every file it writes loads strictly with our loaders, is found and versioned by the
registry, runs (GPT tokens, finite audible audio), and the same seed gives the same bytes."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from app.demo_cli import main
from app.engine.checkpoints import load_checkpoint, read_header
from app.engine.demo_weights import (
    CJK_UNIFIED,
    DEMO_VERSIONS,
    README_NAME,
    bert_vocab,
    build_gpt_checkpoint,
    build_sovits_checkpoint,
    demo_files,
    demo_voice,
    to_upstream_sovits_state,
)
from app.engine.models.hubert import HubertEncoder
from app.engine.models.sovits import UNUSED_CHECKPOINT_PREFIXES, SoVITSSynthesizer, convert_upstream_state
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SModel
from app.engine.registry import BERT_DIR, HUBERT_DIR, SV_CHECKPOINT, WeightRegistry, gpt_symbol_version
from app.engine.text.bert import BertFeatureExtractor

SEED = 7


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def all_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != README_NAME
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("demo") / "weights"
    return root, run_cli(str(root), "--seed", str(SEED))


@pytest.fixture(scope="module")
def demo_root(demo) -> Path:
    return demo[0]


@pytest.fixture(scope="module")
def speaker_embedding(demo_root) -> torch.Tensor:
    encoder = SpeakerEncoder.from_checkpoint(demo_root / SV_CHECKPOINT)
    wav = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(3))
    return encoder.embed(wav)


# --------------------------------------------------------------------------- what is written where


def test_cli_reports_every_file_and_says_it_is_noise(demo):
    root, output = demo
    for version in DEMO_VERSIONS:
        voice = demo_voice(version)
        assert f"wrote {voice.sovits}" in output
        assert f"wrote {voice.gpt}" in output
    for shared in (HUBERT_DIR, BERT_DIR, SV_CHECKPOINT):
        assert f"wrote {shared}" in output
    assert "noise, not speech" in output
    readme = (root / README_NAME).read_text(encoding="utf-8")
    assert "noise, not speech" in readme and "SoVITS_weights" in readme
    assert demo_voice("v2Pro").sovits in readme


def test_registry_lists_every_voice_with_the_right_version(demo_root):
    registry = WeightRegistry(demo_root)
    for version in DEMO_VERSIONS:
        voice = demo_voice(version)
        assert voice.sovits in registry.sovits_names()
        assert voice.gpt in registry.gpt_names()
        detected = registry.sovits_version(voice.sovits)
        assert (detected.model, detected.symbols, detected.is_lora) == (version, voice.symbols, False)


@pytest.mark.parametrize(
    "version, header", [("v1", b"PK"), ("v2", b"PK"), ("v2Pro", b"05"), ("v2ProPlus", b"06")]
)
def test_sovits_files_carry_upstreams_header(demo_root, version, header):
    assert read_header(demo_root / demo_voice(version).sovits) == header


def test_sovits_config_is_plain_data(demo_root):
    checkpoint = load_checkpoint(demo_root / demo_voice("v2").sovits)
    json.dumps(checkpoint["config"])  # no pickled classes anywhere in it
    assert checkpoint["config"]["model"]["version"] == "v2"
    assert checkpoint["info"] == "8epoch_200iteration"


# --------------------------------------------------------------------------- the models run


@pytest.mark.parametrize("version", DEMO_VERSIONS)
def test_gpt_loads_strictly_and_generates_bounded_tokens(demo_root, version):
    model = T2SModel.from_checkpoint(demo_root / demo_voice(version).gpt)
    assert gpt_symbol_version(model.config.phone_vocab_size) == demo_voice(version).symbols
    generator = torch.Generator().manual_seed(0)
    phones = torch.randint(0, 300, (12,), generator=generator)
    prompt = torch.randint(0, 1024, (10,), generator=generator)
    assert model.config.early_stop_num == 100  # max_sec 2 keeps demo decodes short
    bert = torch.randn(1024, 12, generator=generator)
    (tokens,) = model.generate([phones], [bert], prompt, early_stop_num=20, generator=generator)
    assert 0 < tokens.numel() <= 20
    assert int(tokens.min()) >= 0 and int(tokens.max()) < model.config.eos_id


@pytest.mark.parametrize("version", DEMO_VERSIONS)
def test_sovits_decodes_random_codes_to_finite_audible_audio(demo_root, speaker_embedding, version):
    model = SoVITSSynthesizer.from_checkpoint(demo_root / demo_voice(version).sovits)
    assert model.config.version == version
    generator = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 1024, (1, 1, 8), generator=generator)
    phones = torch.randint(1, model.config.n_symbols, (1, 15), generator=generator)
    spec = torch.rand(1, model.config.spec_channels, 80, generator=generator)
    sv_embs = [speaker_embedding] if model.config.uses_speaker_embedding else None
    audio = model.decode(codes, phones, [spec], sv_embs=sv_embs, noise_scale=0.5, generator=generator)
    assert audio.shape == (1, 1, 8 * model.config.samples_per_code)
    assert torch.isfinite(audio).all()
    assert audio.abs().max() <= 1.0
    assert audio.pow(2).mean().sqrt() > 0.01  # not silent


def test_hubert_loads_and_its_features_quantise_to_varied_prompt_codes(demo_root):
    hubert = HubertEncoder.from_pretrained(demo_root / HUBERT_DIR)
    wav = 0.1 * torch.randn(1, 32000, generator=torch.Generator().manual_seed(2))
    features = hubert(wav)
    assert features.shape == (1, 99, 768)  # 320 samples per frame
    assert torch.isfinite(features).all()
    sovits = SoVITSSynthesizer.from_checkpoint(demo_root / demo_voice("v2").sovits)
    codes = sovits.encode_prompt(features.transpose(1, 2))
    assert codes.shape == (1, 1, 49)
    assert codes.unique().numel() > 5


def test_bert_tokenises_one_token_per_chinese_character_and_gives_1024d_features(demo_root):
    bert = BertFeatureExtractor(demo_root / BERT_DIR)
    text = "你好，世界。龘"
    tokens = bert.tokenizer.tokenize(text)
    assert tokens == list(text)
    features = bert.phone_features(text, [2, 2, 1, 2, 2, 1, 3])
    assert features.shape == (1024, 13)
    assert torch.isfinite(features).all() and features.abs().sum() > 0
    # Latin letters and digits tokenize without [UNK] (mixed-language segments reach the tokenizer).
    assert "[UNK]" not in bert.tokenizer.tokenize("GPT-SoVITS v2 123!")


def test_bert_vocabulary_covers_the_whole_cjk_block_once():
    vocab = bert_vocab()
    assert len(vocab) == len(set(vocab))
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert set(map(chr, range(CJK_UNIFIED[0], CJK_UNIFIED[1] + 1))) <= set(vocab)


def test_speaker_checkpoint_loads_strictly_and_keeps_upstreams_head(demo_root, speaker_embedding):
    state = load_checkpoint(demo_root / SV_CHECKPOINT)
    assert {"seg_1.weight", "seg_1.bias"} <= set(state)  # upstream's sv.py loads strictly
    assert all(t.dtype in (torch.float32, torch.int64) for t in state.values())
    assert speaker_embedding.shape == (1, 20480)
    assert torch.isfinite(speaker_embedding).all() and speaker_embedding.abs().sum() > 0


# --------------------------------------------------------------------------- determinism and re-runs


@pytest.mark.slow
def test_same_seed_gives_identical_files_and_reruns_keep_or_force(demo_root, tmp_path):
    # v1 + v2ProPlus write every kind of file: HF folders, SV state dict, plain and headed SoVITS, GPT.
    again = tmp_path / "again"
    run_cli(str(again), "--seed", str(SEED), "--versions", "v1,v2ProPlus")
    written = all_files(again)
    first = {name: data for name, data in all_files(demo_root).items() if name in written}
    assert set(written) == set(first) and len(written) > 10
    assert written == first
    assert not (again / demo_voice("v2").sovits).exists()  # --versions limits the voices

    # A re-run keeps what exists, including a file that is not ours.
    gpt = again / demo_voice("v1").gpt
    gpt.write_bytes(b"someone else's weights")
    output = run_cli(str(again), "--seed", str(SEED), "--versions", "v1")
    assert "wrote" not in output and f"kept  {demo_voice('v1').gpt}" in output
    assert gpt.read_bytes() == b"someone else's weights"

    # --force writes it again, identically.
    output = run_cli(str(again), "--seed", str(SEED), "--versions", "v1", "--force")
    assert f"wrote {demo_voice('v1').gpt}" in output
    assert all_files(again) == first
    assert not [p for p in again.rglob(".*")]  # no staging leftovers


def test_other_seed_gives_other_weights():
    a, b = build_gpt_checkpoint("v2", 1), build_gpt_checkpoint("v2", 2)
    assert a["weight"].keys() == b["weight"].keys()
    assert not torch.equal(a["weight"]["model.bert_proj.weight"], b["weight"]["model.bert_proj.weight"])
    again = build_gpt_checkpoint("v2", 1)
    assert all(torch.equal(a["weight"][k], again["weight"][k]) for k in a["weight"])


def test_versions_choose_the_voices_and_the_shared_models_they_need():
    assert [f.path for f in demo_files(["v2"])] == [
        HUBERT_DIR,
        BERT_DIR,
        demo_voice("v2").sovits,
        demo_voice("v2").gpt,
    ]
    pro = [f.path for f in demo_files(["v2Pro", "v2ProPlus", "v2Pro"])]
    assert pro.count(SV_CHECKPOINT) == 1  # only v2Pro/v2ProPlus need it, once
    assert pro.count(demo_voice("v2Pro").sovits) == 1
    assert SV_CHECKPOINT not in [f.path for f in demo_files(["v1", "v2"])]


@pytest.mark.parametrize("bad", ["v3", "v4", "v5", ","])
def test_unavailable_versions_are_refused(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "w"), "--versions", bad])
    assert exc.value.code == 2
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- upstream key mapping


def test_upstream_sovits_state_folds_back_to_ours():
    checkpoint, header = build_sovits_checkpoint("v2", 5)
    model = SoVITSSynthesizer.from_state_dict(checkpoint["weight"], checkpoint["config"], header)
    ours = model.state_dict()
    back = convert_upstream_state(to_upstream_sovits_state(ours))
    # Upstream's codebook statistics pass through the conversion; loading ignores them.
    back = {k: v for k, v in back.items() if not k.startswith(UNUSED_CHECKPOINT_PREFIXES)}
    assert back.keys() == ours.keys()
    for key, value in ours.items():
        torch.testing.assert_close(back[key], value, rtol=1e-5, atol=1e-6)


def _layout(conformance: Path, name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    layout = json.loads((conformance / "layouts" / f"{name}.json").read_text(encoding="utf-8"))
    return {key: (tuple(shape), dtype) for key, shape, dtype in layout["tensors"]}


def _file_layout(state: dict[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in state.items()}


@pytest.mark.conformance
@pytest.mark.parametrize("version", DEMO_VERSIONS)
def test_files_hold_exactly_upstreams_keys_shapes_and_dtypes(demo_root, conformance, version):
    """Upstream's own model classes (built with the same small configs) save these tensors, so an
    upstream install loads the demo files too."""
    voice = demo_voice(version)
    sovits = load_checkpoint(demo_root / voice.sovits)["weight"]
    assert _file_layout(sovits) == _layout(conformance, f"sovits_{version}_tiny")
    gpt = load_checkpoint(demo_root / voice.gpt)["weight"]
    assert _file_layout(gpt) == _layout(conformance, f"s1_{voice.symbols}_tiny")


@pytest.mark.conformance
def test_speaker_file_holds_exactly_upstreams_keys_and_shapes(demo_root, conformance):
    state = load_checkpoint(demo_root / SV_CHECKPOINT)
    assert _file_layout(state) == _layout(conformance, "sv_eres2netv2_full")


def test_files_and_folders_are_readable_by_everyone(demo_root):
    # Atomic writes go through mkstemp/mkdtemp (owner-only); a server running as another user must
    # still be able to read the result.
    for path in [*demo_root.rglob("*.pth"), *demo_root.rglob("*.ckpt"), demo_root / README_NAME]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    for folder in (HUBERT_DIR, BERT_DIR):
        assert (demo_root / folder).stat().st_mode & 0o777 == 0o755


def test_a_run_that_writes_nothing_does_not_mark_the_folder_as_demo(tmp_path):
    # Every file already there (a real install): nothing written, no demo marker.
    root = tmp_path / "real"
    for item in demo_files(["v1"]):
        target = root / item.path
        if item.is_folder:
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"real weights")
    output = run_cli(str(root), "--versions", "v1")
    assert "wrote" not in output
    assert not (root / README_NAME).exists()


def test_the_readme_keeps_listing_files_of_earlier_runs(tmp_path, monkeypatch):
    import app.engine.demo_weights as demo_weights

    # Stand-in writers: this test is about the bookkeeping, not the weights.
    monkeypatch.setattr(demo_weights, "write_hubert", lambda folder, seed: folder.mkdir(exist_ok=True))
    monkeypatch.setattr(demo_weights, "write_bert", lambda folder, seed: folder.mkdir(exist_ok=True))
    monkeypatch.setattr(demo_weights, "build_gpt_checkpoint", lambda version, seed: {"v": version})
    monkeypatch.setattr(
        demo_weights, "build_sovits_checkpoint", lambda version, seed: ({"v": version}, b"PK")
    )
    root = tmp_path / "w"
    demo_weights.write_demo_weights(root, versions=["v1"])
    demo_weights.write_demo_weights(root, versions=["v2"])
    demo_weights.write_demo_weights(root, versions=["v1"], force=True)
    readme = (root / README_NAME).read_text(encoding="utf-8")
    for version in ("v1", "v2"):
        assert demo_voice(version).sovits in readme and demo_voice(version).gpt in readme
    assert readme.count(HUBERT_DIR) == 1
