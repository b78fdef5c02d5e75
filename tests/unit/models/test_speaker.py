"""Unit tests for the ERes2NetV2 speaker encoder on small configurations (no corpus weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from app.engine.checkpoints import CheckpointError
from app.engine.models.speaker import (
    FeatureFusion,
    Res2Block,
    SpeakerEncoder,
    SpeakerEncoderConfig,
    kaldi_fbank,
)

SMALL = SpeakerEncoderConfig(stem_channels=8, blocks_per_stage=(1, 1, 1, 1))


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give batch norms non-trivial statistics so tests exercise them; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def test_default_config_is_upstreams_w24_s4_e4_with_20480_wide_output():
    cfg = SpeakerEncoderConfig()
    assert (cfg.base_width, cfg.scale, cfg.expansion, cfg.stem_channels) == (24, 4, 4, 64)
    assert cfg.blocks_per_stage == (3, 4, 6, 3)
    assert cfg.embedding_size == 20480


def test_fbank_is_80_bins_every_10_ms_with_snipped_edges():
    wav = torch.randn(2, 16000) * 0.1
    feats = kaldi_fbank(wav)
    assert feats.shape == (2, 98, 80)  # 1 + (16000 - 400) // 160
    # each row on its own, exactly as torchaudio computes it
    expected = torchaudio.compliance.kaldi.fbank(
        wav[1:2], num_mel_bins=80, sample_frequency=16000, dither=0.0
    )
    torch.testing.assert_close(feats[1], expected, rtol=0, atol=0)


def test_feature_fusion_with_neutral_attention_is_a_plain_sum():
    fusion = FeatureFusion(channels=8).eval()
    last_norm = fusion.local_att[4]
    torch.nn.init.zeros_(last_norm.weight)
    torch.nn.init.zeros_(last_norm.bias)  # attention logits 0 -> weight 1 -> x * 1 + y * 1
    x, y = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(fusion(x, y), x + y)


def test_feature_fusion_weights_sum_to_two():
    fusion = randomised(FeatureFusion(channels=8))
    x = torch.randn(1, 8, 4, 4)
    # with y == x the blend x * w + x * (2 - w) is 2x whatever the attention says
    torch.testing.assert_close(fusion(x, x), 2 * x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fuse", [False, True])
def test_res2block_shapes_and_shortcut(fuse):
    block = randomised(Res2Block(in_ch=16, planes=16, stride=2, cfg=SMALL, fuse=fuse))
    out = block(torch.randn(2, 16, 20, 30))
    assert out.shape == (2, 64, 10, 15)  # planes * expansion channels, halved by the stride
    assert (out >= 0).all() and (out <= 20).all()  # clipped ReLU
    assert isinstance(block.shortcut, torch.nn.Sequential)  # projection because shape changes


def test_res2block_without_projection_uses_identity_shortcut():
    block = Res2Block(in_ch=32, planes=8, stride=1, cfg=SMALL, fuse=False)
    assert isinstance(block.shortcut, torch.nn.Identity)
    assert not any(k.startswith("shortcut") for k in block.state_dict())


def test_embed_shape_and_batch_independence():
    model = randomised(SpeakerEncoder(SMALL))
    wav = torch.randn(2, 16000) * 0.1
    with torch.inference_mode():
        both = model.embed(wav)
        first = model.embed(wav[0])
    assert both.shape == (2, SMALL.embedding_size) == (2, 8 * 8 * 4 * 10)
    torch.testing.assert_close(both[0:1], first, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both[0], both[1])


def test_state_dict_keys_follow_upstreams_names():
    keys = set(SpeakerEncoder(SMALL).state_dict())
    for key in (
        "conv1.weight",
        "bn1.num_batches_tracked",
        "layer1.0.convs.3.weight",
        "layer2.0.shortcut.1.running_var",
        "layer3.0.fuse_models.2.local_att.3.bias",
        "layer3_ds.weight",
        "fuse34.local_att.4.weight",
    ):
        assert key in keys
    assert not any(k.startswith("layer1.0.fuse_models") for k in keys)  # stages 1-2 add, not fuse


def test_from_checkpoint_loads_strictly_and_ignores_only_the_head(tmp_path):
    source = randomised(SpeakerEncoder(SMALL), seed=3)
    state = dict(source.state_dict())
    state["seg_1.weight"] = torch.zeros(4, 4)  # the unused embedding head, present in official files
    state["seg_1.bias"] = torch.zeros(4)
    path = tmp_path / "sv.ckpt"
    torch.save(state, path)

    loaded = SpeakerEncoder.from_checkpoint(path, cfg=SMALL)
    assert not loaded.training
    wav = torch.randn(1, 8000) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(loaded.embed(wav), source.embed(wav), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("layer2.0.bn3.weight"), "missing keys"),
        (lambda s: s.__setitem__("layer9.weight", torch.zeros(1)), "unexpected keys"),
        (lambda s: s.__setitem__("conv1.weight", torch.zeros(8, 1, 5, 5)), "wrong shapes"),
    ],
)
def test_from_checkpoint_refuses_files_that_do_not_fit(tmp_path, edit, message):
    state = dict(SpeakerEncoder(SMALL).state_dict())
    edit(state)
    path = tmp_path / "sv.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message):
        SpeakerEncoder.from_checkpoint(path, cfg=SMALL)


def test_from_checkpoint_honours_dtype(tmp_path):
    path = tmp_path / "sv.ckpt"
    torch.save(SpeakerEncoder(SMALL).state_dict(), path)
    model = SpeakerEncoder.from_checkpoint(path, cfg=SMALL, dtype=torch.float64)
    out = model.embed(torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 4000)).float())
    assert out.dtype == torch.float64
