"""Unit tests of the v3/v4 SoVITS model: strict loading of the official layouts (LoRA merged onto its
base), the LoRA merge itself, the mel spectrograms, the masked WaveNet and decode_encp's lengths on a
small random model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from app.engine.checkpoints import CheckpointError
from app.engine.models.dit import DiTConfig
from app.engine.models.sovits_v3 import (
    MEL_V3,
    MEL_V4,
    SPEC_MAX,
    SPEC_MIN,
    MaskedWaveNetEncoder,
    SoVITSV3,
    SoVITSV3Config,
    denorm_spec,
    mel_filterbank,
    mel_spectrogram_v3,
    mel_spectrogram_v4,
    merge_lora,
    norm_spec,
)
from tests.conftest import conformance_dir


def _layout(name: str) -> dict:
    path = conformance_dir() / "layouts" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"layout {name} not found (conformance corpus missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def _meta_state(layout: dict) -> dict[str, torch.Tensor]:
    """Shape-only tensors: loading checks every key and shape without allocating 1.5 GB."""
    return {
        key: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
        for key, shape, dtype in layout["tensors"]
    }


def _load_meta(state: dict, layout: dict, version: str) -> SoVITSV3:
    with torch.device("meta"):
        return SoVITSV3.from_state_dict(state, layout["config"], version, source="test.pth")


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_official_base_layouts_load_strictly(version):
    layout = _layout(f"sovits_{version}_base_full")
    model = _load_meta(_meta_state(layout), layout, version)
    assert model.config.version == version
    assert model.config.dit.depth == 22 and model.config.dit.dim == 1024


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_official_lora_layouts_merge_onto_their_base_and_load_strictly(version):
    lora_layout = _layout(f"sovits_{version}_lora_full")
    base_layout = _layout(lora_layout["base_layout"])
    merged = merge_lora(_meta_state(base_layout), _meta_state(lora_layout), rank=lora_layout["lora_rank"])
    assert not any("lora_" in key or "base_model" in key for key in merged)
    _load_meta(merged, lora_layout, version)


def test_a_missing_and_an_unexpected_key_are_named():
    layout = _layout("sovits_v3_base_full")
    state = _meta_state(layout)
    del state["wns1.pre.bias"]
    state["cfm.estimator.extra.weight"] = torch.empty(3, device="meta")
    with pytest.raises(CheckpointError, match=r"wns1\.pre\.bias") as info:
        _load_meta(state, layout, "v3")
    assert "cfm.estimator.extra.weight" in str(info.value)


def test_a_v1_v2_file_is_refused():
    layout = _layout("sovits_v3_base_full")
    state = {k: v for k, v in _meta_state(layout).items() if not k.startswith("cfm.")}
    with pytest.raises(CheckpointError, match="no CFM"):
        _load_meta(state, layout, "v3")


def test_a_lora_file_without_its_base_or_with_a_bad_rank_is_refused(tmp_path):
    path = tmp_path / "lora.pth"
    torch.save({"weight": {"x": torch.zeros(1)}, "config": {}, "lora_rank": 4}, path)
    with pytest.raises(CheckpointError, match="base"):
        SoVITSV3.from_checkpoint(path)
    torch.save({"weight": {"x": torch.zeros(1)}, "config": {}, "lora_rank": 0}, path)
    with pytest.raises(CheckpointError, match="lora_rank"):
        SoVITSV3.from_checkpoint(path, base_path=path)


# --------------------------------------------------------------------------- LoRA merge

PEFT = "cfm.base_model.model.estimator.transformer_blocks.0.attn."


def test_merge_adds_b_times_a_scaled_by_alpha_over_rank():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 5, generator=gen)
    down, up = torch.randn(2, 5, generator=gen), torch.randn(6, 2, generator=gen)
    base = {"cfm.estimator.transformer_blocks.0.attn.to_q.weight": weight, "bridge.0.bias": torch.zeros(3)}
    lora = {f"{PEFT}to_q.lora_A.default.weight": down, f"{PEFT}to_q.lora_B.default.weight": up}

    merged = merge_lora(base, lora, rank=2)
    torch.testing.assert_close(
        merged["cfm.estimator.transformer_blocks.0.attn.to_q.weight"], weight + up @ down
    )
    merged = merge_lora(base, lora, rank=2, alpha=1.0)
    torch.testing.assert_close(
        merged["cfm.estimator.transformer_blocks.0.attn.to_q.weight"], weight + 0.5 * (up @ down)
    )
    assert base["cfm.estimator.transformer_blocks.0.attn.to_q.weight"] is weight  # base left untouched


def test_plain_tensors_of_the_lora_file_replace_the_base_and_lose_the_peft_prefix():
    base = {"bridge.0.bias": torch.zeros(3), "cfm.estimator.rotary_embed.inv_freq": torch.zeros(2)}
    lora = {
        "bridge.0.bias": torch.ones(3),
        "cfm.base_model.model.estimator.rotary_embed.inv_freq": torch.ones(2),
    }
    merged = merge_lora(base, lora, rank=4)
    assert merged.keys() == base.keys()
    assert torch.equal(merged["bridge.0.bias"], torch.ones(3))
    assert torch.equal(merged["cfm.estimator.rotary_embed.inv_freq"], torch.ones(2))


def test_incomplete_or_misdirected_adapters_are_refused():
    base = {"cfm.estimator.transformer_blocks.0.attn.to_q.weight": torch.zeros(4, 4)}
    with pytest.raises(CheckpointError, match="lora_B"):
        merge_lora(base, {f"{PEFT}to_q.lora_A.default.weight": torch.zeros(2, 4)}, rank=2)
    missing = {
        f"{PEFT}to_v.lora_A.default.weight": torch.zeros(2, 4),
        f"{PEFT}to_v.lora_B.default.weight": torch.zeros(4, 2),
    }
    with pytest.raises(CheckpointError, match="does not have"):
        merge_lora(base, missing, rank=2)
    wrong = {
        f"{PEFT}to_q.lora_A.default.weight": torch.zeros(2, 3),
        f"{PEFT}to_q.lora_B.default.weight": torch.zeros(4, 2),
    }
    with pytest.raises(CheckpointError, match="shapes"):
        merge_lora(base, wrong, rank=2)


# --------------------------------------------------------------------------- mel spectrograms


@pytest.mark.parametrize("cfg", [MEL_V3, MEL_V4], ids=["v3", "v4"])
def test_mel_filterbank_is_slaneys(cfg):
    """An independent implementation (torchaudio's) agrees."""
    ours = mel_filterbank(cfg.sampling_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    theirs = AF.melscale_fbanks(
        cfg.n_fft // 2 + 1,
        0.0,
        cfg.sampling_rate / 2,
        cfg.n_mels,
        cfg.sampling_rate,
        norm="slaney",
        mel_scale="slaney",
    ).T.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("mel_fn", "cfg"), [(mel_spectrogram_v3, MEL_V3), (mel_spectrogram_v4, MEL_V4)], ids=["v3", "v4"]
)
def test_mel_spectrogram_frames_and_peak(mel_fn, cfg):
    sr, n = cfg.sampling_rate, cfg.sampling_rate  # one second of a 1 kHz tone
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * torch.arange(n) / sr).unsqueeze(0)
    mel = mel_fn(tone)
    frames = (n + (cfg.n_fft - cfg.hop_length) - cfg.n_fft) // cfg.hop_length + 1
    assert mel.shape == (1, cfg.n_mels, frames)
    centres = (
        np.argmax(mel_filterbank(sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax), axis=1) * sr / cfg.n_fft
    )
    peak = int(mel[0, :, frames // 2].argmax())
    assert abs(centres[peak] - 1000) < 100
    # Silence: the magnitudes' sqrt(1e-8) floor is far below the 1e-5 clip taken before the log.
    silent = mel_fn(torch.zeros(1, n))
    torch.testing.assert_close(silent, torch.full((1, cfg.n_mels, frames), math.log(1e-5)))


def test_norm_spec_maps_the_log_mel_range_to_minus_one_one_and_back():
    x = torch.tensor([SPEC_MIN, SPEC_MAX, -5.0])
    torch.testing.assert_close(norm_spec(x)[:2], torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(denorm_spec(norm_spec(x)), x)


# --------------------------------------------------------------------------- WaveNet mask


def test_masked_wavenet_zeroes_the_tail_and_is_the_plain_wavenet_when_nothing_is_masked():
    torch.manual_seed(0)
    enc = MaskedWaveNetEncoder(8, kernel_size=5, n_layers=3, gin_channels=4).eval()
    x, g = torch.randn(1, 8, 20), torch.randn(1, 4, 1)
    full = enc(x, 20, g)
    plain = enc.proj(enc.enc(enc.pre(x), g))  # vits_modules.WaveNet, which has no mask
    torch.testing.assert_close(full, plain)
    torch.testing.assert_close(enc(x, 25, g), full)  # a mask longer than the input hides nothing
    cut = enc(x, 14, g)
    assert torch.count_nonzero(cut[..., 14:]) == 0
    assert not torch.allclose(cut[..., :14], full[..., :14])  # masked frames no longer feed the convolutions


# --------------------------------------------------------------------------- decode_encp on a small model


def _small_model(version: str) -> SoVITSV3:
    torch.manual_seed(0)
    cfg = SoVITSV3Config(
        version=version,
        n_symbols=20,
        hidden_channels=16,
        filter_channels=32,
        n_heads=2,
        n_layers=2,
        kernel_size=3,
        inter_channels=16,
        gin_channels=512,  # MRTE adds ge to its 512 hidden channels
        codebook_size=32,
        dit=DiTConfig(dim=32, depth=1, heads=2, head_dim=16, text_conv_layers=1),
    )
    model = SoVITSV3(cfg).eval()
    with torch.no_grad():
        model.quantizer.embed.normal_()
    return model


@pytest.mark.parametrize(
    ("version", "speed", "n_codes", "frames", "zero_tail"),
    [
        ("v3", 1.0, 10, 37, 0),  # floor(20 * 1.875)
        ("v4", 1.0, 10, 40, 0),
        (
            "v3",
            1.1,
            10,
            35,
            0,
        ),  # content int(20 / 1.1) + 1 = 19 -> floor(19 * 1.875) = 35; mask int(38.75 / 1.1) + 1 = 36
        (
            "v4",
            0.9,
            100,
            446,
            1,
        ),  # content 223 -> 446 frames; mask int(400 / 0.9) + 1 = 445: the last frame is zeroed
    ],
)
def test_decode_encp_frame_counts_and_mask(version, speed, n_codes, frames, zero_tail):
    model = _small_model(version)
    codes = torch.randint(0, 32, (1, 1, n_codes))
    phones = torch.randint(0, 20, (1, 7))
    spec = torch.rand(1, 1025, 30)
    fea, ge = model.decode_encp(codes, phones, spec, speed=speed)
    assert fea.shape == (1, 512, frames)
    assert ge.shape == (1, 512, 1)
    assert torch.count_nonzero(fea[..., frames - zero_tail :]) == 0
    assert torch.count_nonzero(fea[..., frames - zero_tail - 1]) > 0
    again, _ = model.decode_encp(
        codes, phones, spec * 0, ge=ge, speed=speed
    )  # a given ge skips the reference
    torch.testing.assert_close(again, fea)


def test_style_encoder_reads_only_the_lowest_704_bins():
    model = _small_model("v3")
    spec = torch.rand(1, 1025, 30)
    changed = spec.clone()
    changed[:, 704:] = 5.0
    torch.testing.assert_close(model.global_embedding(changed), model.global_embedding(spec))
    changed[:, 703] += 1.0
    assert not torch.allclose(model.global_embedding(changed), model.global_embedding(spec))


def test_encode_prompt_finds_the_codes_it_decodes_from():
    model = _small_model("v3")
    with torch.no_grad():
        model.ssl_proj.weight.zero_()
        model.ssl_proj.bias.zero_()
        for c in range(768):  # ssl_proj = average of the two frames of each code
            model.ssl_proj.weight[c, c, :] = 0.5
    codes = torch.randint(0, 32, (1, 1, 9))
    ssl = model.quantizer.decode(codes).repeat_interleave(2, dim=-1)
    assert torch.equal(model.encode_prompt(ssl), codes.transpose(0, 1))
