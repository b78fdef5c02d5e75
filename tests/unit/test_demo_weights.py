"""gsv-demo-weights: every file it writes loads strictly with our loaders, is found and versioned by the
registry, runs (GPT tokens, finite audible audio), and the same seed gives the same bytes. The v4 voice
(a LoRA on the pretrained base, plus the 48 kHz vocoder) is written in upstream's formats and a service
started on it answers /inference."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

from app.demo import (
    CJK_UNIFIED,
    DEMO_LORA_RANK,
    DEMO_VERSIONS,
    LORA_VERSIONS,
    README_NAME,
    bert_vocab,
    build_gpt_checkpoint,
    build_v4_base_checkpoint,
    build_v4_lora_checkpoint,
    build_vocoder_v4_state,
    demo_files,
    demo_voice,
)
from app.demo.writer import _torch_bytes
from app.demo_cli import main
from app.engine.checkpoints import load_checkpoint, read_header
from app.engine.models.dit import DiT, DiTConfig
from app.engine.models.hubert import HubertEncoder
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.sovits_v3 import PEFT_CFM_PREFIX, SoVITSV3, SoVITSV3Config
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SModel
from app.engine.models.vocoders import HiFiGANV4Config, HiFiGANVocoderV4
from app.engine.registry import (
    BERT_DIR,
    HUBERT_DIR,
    PRETRAINED_SOVITS,
    SV_CHECKPOINT,
    VOCODER_V4,
    WeightRegistry,
    gpt_symbol_version,
)
from app.engine.text.bert import BertFeatureExtractor
from app.main import create_app
from app.settings import Settings

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
        expected = (version, voice.symbols, version in LORA_VERSIONS)
        assert (detected.model, detected.symbols, detected.is_lora) == expected


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


@pytest.mark.parametrize("version", [v for v in DEMO_VERSIONS if v not in LORA_VERSIONS])  # v4: see below
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


@pytest.mark.parametrize("bad", ["v3", "v5", ","])
def test_unavailable_versions_are_refused(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "w"), "--versions", bad])
    assert exc.value.code == 2
    assert not (tmp_path / "w").exists()
    if bad == "v3":
        assert "demo weights for v3 are not available yet: its vocoder" in capsys.readouterr().err


def test_the_default_writes_every_demo_version_including_v4():
    assert "v4" in DEMO_VERSIONS
    assert [f.path for f in demo_files()] == [f.path for f in demo_files(DEMO_VERSIONS)]


# --------------------------------------------------------------------------- upstream key mapping


def _layout(conformance: Path, name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    layout = json.loads((conformance / "layouts" / f"{name}.json").read_text(encoding="utf-8"))
    return {key: (tuple(shape), dtype) for key, shape, dtype in layout["tensors"]}


def _file_layout(state: dict[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in state.items()}


@pytest.mark.conformance
@pytest.mark.parametrize("version", [v for v in DEMO_VERSIONS if v not in LORA_VERSIONS])  # v4: its own test below
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
    import app.demo.writer as writer

    # Stand-in writers: this test is about the bookkeeping, not the weights.
    monkeypatch.setattr(writer, "write_hubert", lambda folder, seed: folder.mkdir(exist_ok=True))
    monkeypatch.setattr(writer, "write_bert", lambda folder, seed: folder.mkdir(exist_ok=True))
    monkeypatch.setattr(writer, "build_gpt_checkpoint", lambda version, seed: {"v": version})
    monkeypatch.setattr(writer, "build_sovits_checkpoint", lambda version, seed: ({"v": version}, b"PK"))
    root = tmp_path / "w"
    writer.write_demo_weights(root, versions=["v1"])
    writer.write_demo_weights(root, versions=["v2"])
    writer.write_demo_weights(root, versions=["v1"], force=True)
    readme = (root / README_NAME).read_text(encoding="utf-8")
    for version in ("v1", "v2"):
        assert demo_voice(version).sovits in readme and demo_voice(version).gpt in readme
    assert readme.count(HUBERT_DIR) == 1


# --------------------------------------------------------------------------- the v4 voice

V4 = demo_voice("v4")


@pytest.fixture(scope="module")
def v4_demo(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("demo-v4") / "weights"
    return root, run_cli(str(root), "--seed", str(SEED), "--versions", "v4")


@pytest.fixture(scope="module")
def v4_root(v4_demo) -> Path:
    return v4_demo[0]


def test_v4_writes_its_lora_voice_base_vocoder_and_the_shared_models(v4_demo):
    root, output = v4_demo
    expected = [HUBERT_DIR, BERT_DIR, PRETRAINED_SOVITS["v4"], VOCODER_V4, V4.sovits, V4.gpt]
    assert [f.path for f in demo_files(["v4"])] == expected
    readme = (root / README_NAME).read_text(encoding="utf-8")
    for path in expected:
        assert f"wrote {path}" in output and path in readme
    assert V4.base == PRETRAINED_SOVITS["v4"] and V4.gpt.startswith("GPT_weights_v4/")
    assert V4.sovits.startswith("SoVITS_weights_v4/") and V4.sovits.endswith(f"_l{DEMO_LORA_RANK}.pth")
    assert SV_CHECKPOINT not in readme  # v4 needs no speaker-verification model
    # Small: a few MB per file (upstream's full-size v4 base alone is 0.7 GB).
    for path in (V4.base, VOCODER_V4, V4.sovits, V4.gpt):
        assert (root / path).stat().st_size < 20 * 2**20, path


def test_v4_files_are_in_upstreams_formats(v4_root):
    assert read_header(v4_root / V4.sovits) == b"04"  # process_ckpt.my_save2 for a v4 LoRA
    assert read_header(v4_root / V4.base) == b"PK"  # the pretrained base is a plain torch zip
    lora = load_checkpoint(v4_root / V4.sovits)
    assert lora["lora_rank"] == DEMO_LORA_RANK and lora["config"]["train"]["lora_rank"] == str(DEMO_LORA_RANK)
    assert lora["config"]["model"]["version"] == "v4" and lora["info"] == "8epoch_200iteration"
    assert all(t.dtype == torch.float16 for t in lora["weight"].values())
    # Only what upstream's LoRA training saves: its trainable modules, buffers and the peft-named LoRA.
    for key in lora["weight"]:
        if key.startswith(PEFT_CFM_PREFIX):
            assert key.endswith(
                ("lora_A.default.weight", "lora_B.default.weight", "rotary_embed.inv_freq")
            ), key
        else:
            assert key.startswith(("ref_enc.", "quantizer.vq.", "bridge.", "wns1.", "linear_mel.")), key
    base = load_checkpoint(v4_root / V4.base)
    assert "lora_rank" not in base and all(t.dtype == torch.float16 for t in base["weight"].values())
    assert not any("lora_" in key for key in base["weight"])
    # Trained from that base: the frozen buffers are the base's.
    codebook = "quantizer.vq.layers.0._codebook.embed"
    assert torch.equal(lora["weight"][codebook], base["weight"][codebook])
    vocoder = load_checkpoint(v4_root / VOCODER_V4)
    assert "weight" not in vocoder and all(
        t.dtype == torch.float32 for t in vocoder.values()
    )  # bare state dict

    registry = WeightRegistry(v4_root)
    assert registry.sovits_names() == [V4.base, V4.sovits]
    found = registry.sovits_version(V4.sovits)
    assert (found.model, found.symbols, found.is_lora) == ("v4", "v2", True)
    found = registry.sovits_version(V4.base)
    assert (found.model, found.is_lora) == ("v4", False)
    gpt = T2SModel.from_checkpoint(v4_root / V4.gpt)
    assert gpt_symbol_version(gpt.config.phone_vocab_size) == "v2"  # like upstream's s1v3.ckpt


def _key_patterns(keys) -> set[str]:
    """Keys with layer indices blanked: the same set for a model with fewer blocks or layers."""
    return {re.sub(r"\.\d+\.", ".N.", key) for key in keys}


@pytest.mark.conformance
def test_v4_files_hold_upstreams_keys(v4_root, conformance):
    """The same keys as upstream's official v4 files, minus the blocks and layers a smaller model lacks."""
    base = load_checkpoint(v4_root / V4.base)["weight"]
    lora = load_checkpoint(v4_root / V4.sovits)["weight"]
    assert _key_patterns(base) == _key_patterns(_layout(conformance, "sovits_v4_base_full"))
    assert _key_patterns(lora) == _key_patterns(_layout(conformance, "sovits_v4_lora_full"))
    # Parts whose size upstream fixes have upstream's shapes and dtypes.
    full = _layout(conformance, "sovits_v4_base_full")
    for key, tensor in base.items():
        if key.startswith(("ssl_proj.", "quantizer.", "ref_enc.", "enc_p.mrte.", "enc_p.text_embedding.")):
            assert (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")) == full[key], key
    vocoder = load_checkpoint(v4_root / VOCODER_V4)
    assert set(vocoder) == set(_layout(conformance, "vocoder_v4_full"))


def test_v4_lora_merges_into_its_base_with_the_sizes_the_weights_have(v4_root):
    model = SoVITSV3.from_checkpoint(v4_root / V4.sovits, v4_root / V4.base)
    base_only = SoVITSV3.from_checkpoint(v4_root / V4.base)
    cfg = model.config
    assert cfg.version == "v4"
    assert (cfg.dit.depth, cfg.dit.dim, cfg.dit.heads, cfg.dit.text_dim) == (2, 128, 2, 128)
    assert (cfg.feature_channels, cfg.wns1_layers) == (128, 2)
    # The LoRA changes every adapted projection of the DiT (B @ A is not zero) and nothing else there.
    merged, plain = model.cfm.estimator.state_dict(), base_only.cfm.estimator.state_dict()
    for key in merged:
        adapted = re.search(r"\.attn\.to_(q|k|v|out)\.weight$", key) is not None
        assert torch.equal(merged[key], plain[key]) != adapted, key

    generator = torch.Generator().manual_seed(4)
    codes = torch.randint(0, 1024, (1, 1, 12), generator=generator)
    phones = torch.randint(1, cfg.n_symbols, (1, 9), generator=generator)
    spec = torch.rand(1, 1025, 60, generator=generator)
    features, _ = model.decode_encp(codes, phones, spec)
    assert features.shape == (1, 128, 48)  # 12 codes -> 24 frames at 50 Hz -> x2 at v4's mel rate
    mel = model.cfm.inference(
        features.transpose(1, 2), torch.tensor([48]), torch.zeros(1, 100, 10), 4, generator=generator
    )
    assert mel.shape == (1, 100, 48) and torch.isfinite(mel).all()
    vocoder = HiFiGANVocoderV4.from_checkpoint(v4_root / VOCODER_V4)
    assert (vocoder.cfg.upsample_initial_channel, vocoder.sample_rate) == (64, 48000)
    audio = vocoder(mel[:, :, 10:])
    assert audio.shape == (1, 1, 38 * 480) and torch.isfinite(audio).all()
    assert audio.pow(2).mean().sqrt() > 0.01  # not silent


def test_v4_builders_are_deterministic_per_seed():
    for build in (
        build_v4_base_checkpoint,
        lambda seed: build_v4_lora_checkpoint(seed)[0],
        build_vocoder_v4_state,
    ):
        assert _torch_bytes(build(3)) == _torch_bytes(build(3))
        assert _torch_bytes(build(3)) != _torch_bytes(build(4))


def test_v4_base_and_lora_share_their_seed_but_not_the_other_files(tmp_path):
    """Upstream trains a LoRA from the base, so both come from one seed; the vocoder has its own."""
    paths = {f.path: f for f in demo_files(["v4"])}
    base, lora, vocoder = paths[PRETRAINED_SOVITS["v4"]], paths[V4.sovits], paths[VOCODER_V4]
    assert base.seed_name is not None and base.seed_name == lora.seed_name
    assert vocoder.seed_name is None


def test_a_service_on_the_v4_demo_answers_inference_at_48_khz(v4_root):
    rate = 32000
    t = np.arange(4 * rate) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    form = {
        "text": "今天天气很好。",
        "text_lang": "中文",
        "prompt_text": "这是参考音频。",  # v3/v4 need the reference's text
        "prompt_lang": "中文",
        "gpt_weights": V4.gpt,
        "sovits_weights": V4.sovits,
        "sample_steps": "4",
        "seed": "5",
        "keep_random": "false",
    }
    with TestClient(create_app(Settings(weights_root=v4_root)), raise_server_exceptions=False) as client:
        response = client.post(
            "/inference", data=form, files={"ref_audio_path": ("ref.wav", buffer.getvalue(), "audio/wav")}
        )
    assert response.status_code == 200, response.text
    audio, sample_rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert sample_rate == 48000
    assert audio.ndim == 1 and len(audio) > 0.1 * sample_rate
    assert np.isfinite(audio).all() and np.sqrt(np.mean(audio**2)) > 0.001


# --------------------------------------------------------------------------- sizes read from the weights


def test_full_size_weights_still_give_upstreams_hard_coded_sizes():
    with torch.device("meta"):
        dit_state = DiT(DiTConfig()).state_dict()
        vocoder_state = HiFiGANVocoderV4().state_dict()
    assert DiTConfig.sized_like(dit_state) == DiTConfig()
    assert (DiTConfig().depth, DiTConfig().dim, DiTConfig().heads) == (22, 1024, 16)
    assert HiFiGANV4Config.sized_like(vocoder_state) == HiFiGANV4Config()
    assert HiFiGANV4Config().upsample_initial_channel == 512


def test_a_dit_width_that_is_no_multiple_of_the_head_width_is_refused():
    with torch.device("meta"):
        state = DiT(DiTConfig(dim=96, heads=1, head_dim=96, depth=1)).state_dict()
    with pytest.raises(ValueError, match="not a multiple of the head width 64"):
        DiTConfig.sized_like(state)


@pytest.mark.conformance
def test_official_v4_layouts_give_the_22_x_1024_dit_and_the_512_wide_vocoder(conformance):
    def meta_state(name: str) -> dict[str, torch.Tensor]:
        return {
            key: torch.empty(shape, device="meta") for key, (shape, _) in _layout(conformance, name).items()
        }

    config = json.loads((conformance / "layouts" / "sovits_v4_base_full.json").read_text(encoding="utf-8"))
    cfg = SoVITSV3Config.from_checkpoint(config["config"], meta_state("sovits_v4_base_full"), "v4")
    assert cfg.dit == DiTConfig(dim=1024, depth=22, heads=16, head_dim=64, text_dim=512, mel_dim=100)
    assert (cfg.feature_channels, cfg.wns1_layers) == (512, 8)
    with torch.device("meta"):
        model = SoVITSV3(cfg)
    assert len(model.cfm.estimator.transformer_blocks) == 22
    assert model.cfm.estimator.transformer_blocks[0].attn.to_q.weight.shape == (1024, 1024)
    assert HiFiGANV4Config.sized_like(meta_state("vocoder_v4_full")) == HiFiGANV4Config()
