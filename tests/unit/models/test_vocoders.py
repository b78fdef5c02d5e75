"""Unit tests for the v3/v4 vocoders: the anti-aliased activation's pieces, BigVGAN and the v4
HiFi-GAN on tiny configurations, and their strict loaders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.checkpoints import CheckpointError
from app.engine.models.vocoders import (
    AntiAliasedSnakeBeta,
    BigVGANConfig,
    BigVGANVocoder,
    HiFiGANV4Config,
    HiFiGANVocoderV4,
    downsample_2x,
    fold_weight_norms,
    kaiser_sinc_lowpass,
    upsample_2x,
)

# --------------------------------------------------------------------------- kaiser-sinc filter


def _reference_lowpass(cutoff: float, half_width: float, taps: int) -> np.ndarray:
    """The filter from its textbook definition, with numpy's own Kaiser window and sinc."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    else:
        beta = 0.0
    times = np.arange(taps) - (taps - 1) / 2  # half-integers for even lengths, integers for odd
    taps_ = 2 * cutoff * np.kaiser(taps, beta) * np.sinc(2 * cutoff * times)
    return taps_ / taps_.sum()


@pytest.mark.parametrize(
    ("cutoff", "half_width", "taps"),
    [(0.25, 0.3, 12), (0.5 / 3, 0.2, 18), (0.25, 0.3, 11), (0.4, 0.05, 8), (0.2, 0.01, 5)],
)
def test_kaiser_sinc_lowpass_matches_its_definition(cutoff, half_width, taps):
    ours = kaiser_sinc_lowpass(cutoff, half_width, taps).double().numpy()
    np.testing.assert_allclose(ours, _reference_lowpass(cutoff, half_width, taps), atol=1e-6)
    assert ours.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ours, ours[::-1], atol=1e-7)  # linear phase


def test_the_2x_filter_passes_low_and_stops_high_frequencies():
    taps = kaiser_sinc_lowpass(0.25, 0.3, 12).double()
    n = torch.arange(len(taps), dtype=torch.float64)

    def gain(freq: float) -> float:
        return float((taps * torch.exp(-2j * math.pi * freq * n)).sum().abs())

    assert gain(0.0) == pytest.approx(1.0, abs=1e-6)
    assert gain(0.1) == pytest.approx(1.0, abs=0.01)
    assert gain(0.25) == pytest.approx(0.5, abs=0.01)  # the cutoff sits at half amplitude
    assert gain(0.4) < 2e-3 and gain(0.5) < 1e-6


@pytest.mark.parametrize("cutoff", [0.0, -0.1, 0.6])
def test_kaiser_sinc_lowpass_rejects_impossible_cutoffs(cutoff):
    with pytest.raises(ValueError, match="cutoff"):
        kaiser_sinc_lowpass(cutoff, 0.3, 12)


# --------------------------------------------------------------------------- 2x resampling


@pytest.fixture
def lowpass() -> torch.Tensor:
    return kaiser_sinc_lowpass(0.25, 0.3, 12).view(1, 1, -1)


@pytest.mark.parametrize("frames", [1, 2, 7, 50, 333])
def test_upsampling_doubles_and_downsampling_halves_the_length(lowpass, frames):
    x = torch.randn(2, 3, frames)
    up = upsample_2x(x, lowpass)
    assert up.shape == (2, 3, 2 * frames)
    assert downsample_2x(up, lowpass).shape == (2, 3, frames)


def test_resampling_keeps_a_constant_signal(lowpass):
    # The replicated edges plus unit-sum filters (and, for upsampling, two polyphase halves of
    # exactly 1/2 each by symmetry) leave a constant untouched, edges included.
    x = torch.full((1, 4, 30), 0.7)
    torch.testing.assert_close(upsample_2x(x, lowpass), torch.full((1, 4, 60), 0.7))
    torch.testing.assert_close(downsample_2x(x, lowpass), torch.full((1, 4, 15), 0.7))


def test_a_low_frequency_sine_survives_the_round_trip(lowpass):
    t = torch.arange(200, dtype=torch.float32)
    sine = torch.sin(2 * math.pi * 0.03 * t).view(1, 1, -1)
    back = downsample_2x(upsample_2x(sine, lowpass), lowpass)
    assert (back - sine)[..., 20:-20].abs().max() < 1e-3


def test_resampling_filters_each_channel_on_its_own(lowpass):
    x = torch.randn(1, 3, 40)
    x[:, 1] = 0.0
    up = upsample_2x(x, lowpass)
    assert up[:, 1].abs().max() == 0
    torch.testing.assert_close(up[:, 2:], upsample_2x(x[:, 2:], lowpass))


# --------------------------------------------------------------------------- SnakeBeta


def test_snake_beta_follows_its_formula_with_log_scale_parameters():
    act = AntiAliasedSnakeBeta(3, log_scale=True)
    with torch.no_grad():
        act.alpha.copy_(torch.log(torch.tensor([0.5, 1.0, 3.0])))
        act.beta.copy_(torch.log(torch.tensor([2.0, 1.0, 0.25])))
    x = torch.randn(2, 3, 10)
    a = torch.tensor([0.5, 1.0, 3.0]).view(1, 3, 1)
    b = torch.tensor([2.0, 1.0, 0.25]).view(1, 3, 1)
    torch.testing.assert_close(act.snake_beta(x), x + torch.sin(a * x) ** 2 / b)


def test_snake_beta_with_linear_parameters():
    act = AntiAliasedSnakeBeta(2, log_scale=False)
    with torch.no_grad():
        act.alpha.copy_(torch.tensor([2.0, 0.0]))
        act.beta.copy_(torch.tensor([4.0, 1.0]))
    x = torch.randn(1, 2, 7)
    expected = torch.stack([x[0, 0] + torch.sin(2 * x[0, 0]) ** 2 / 4, x[0, 1]]).unsqueeze(0)
    torch.testing.assert_close(act.snake_beta(x), expected)


def test_the_activation_runs_at_twice_the_rate():
    act = AntiAliasedSnakeBeta(2)
    x = torch.randn(1, 2, 25)
    expected = downsample_2x(act.snake_beta(upsample_2x(x, act.up_filter)), act.down_filter)
    torch.testing.assert_close(act(x), expected)
    assert act(x).shape == x.shape


# --------------------------------------------------------------------------- BigVGAN on a tiny config

TINY_BIGVGAN = {
    "resblock": "1",
    "num_mels": 6,
    "sampling_rate": 8000,
    "upsample_rates": [4, 2],
    "upsample_kernel_sizes": [8, 4],
    "upsample_initial_channel": 16,
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3], [1, 2]],
    "activation": "snakebeta",
    "snake_logscale": True,
    "use_tanh_at_final": False,
    "use_bias_at_final": False,
}


def _upstream_bigvgan_keys(config: dict) -> dict[str, tuple[int, ...]]:
    """NVIDIA's state-dict names and shapes (weight-normalised), spelled out from its module tree."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out_ch: int, in_ch: int, kernel: int, bias: bool = True, transposed: bool = False):
        weight = (in_ch, out_ch, kernel) if transposed else (out_ch, in_ch, kernel)
        if bias:
            shapes[f"{name}.bias"] = (out_ch,)
        shapes[f"{name}.weight_g"] = (weight[0], 1, 1)
        shapes[f"{name}.weight_v"] = weight

    def activation(name: str, ch: int):
        shapes[f"{name}.act.alpha"] = (ch,)
        shapes[f"{name}.act.beta"] = (ch,)
        shapes[f"{name}.upsample.filter"] = (1, 1, 12)
        shapes[f"{name}.downsample.lowpass.filter"] = (1, 1, 12)

    ch = config["upsample_initial_channel"]
    conv("conv_pre", ch, config["num_mels"], 7)
    block = 0
    rates_and_kernels = zip(config["upsample_rates"], config["upsample_kernel_sizes"], strict=True)
    for i, (rate, kernel) in enumerate(rates_and_kernels):
        assert rate <= kernel
        conv(f"ups.{i}.0", ch // 2, ch, kernel, transposed=True)
        ch //= 2
        for k, dilations in zip(
            config["resblock_kernel_sizes"], config["resblock_dilation_sizes"], strict=True
        ):
            for j in range(len(dilations)):
                conv(f"resblocks.{block}.convs1.{j}", ch, ch, k)
                conv(f"resblocks.{block}.convs2.{j}", ch, ch, k)
            for j in range(2 * len(dilations)):
                activation(f"resblocks.{block}.activations.{j}", ch)
            block += 1
    activation("activation_post", ch)
    conv("conv_post", 1, ch, 7, bias=config["use_bias_at_final"])
    return shapes


def _random_upstream_bigvgan(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _upstream_bigvgan_keys(config).items():
        if key.endswith("filter"):
            # As in a real file: the kaiser-sinc values (of the module's own construction).
            state[key] = kaiser_sinc_lowpass(0.25, 0.3, 12).view(shape)
        elif key.endswith(("alpha", "beta")):
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("weight_g"):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(max(1, math.prod(shape[1:])))
    return state


def _write_bigvgan_folder(folder: Path, config: dict, state: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.save({"generator": state}, folder / "bigvgan_generator.pt")
    return folder


@pytest.fixture
def tiny_bigvgan_folder(tmp_path) -> Path:
    return _write_bigvgan_folder(tmp_path / "bigvgan", TINY_BIGVGAN, _random_upstream_bigvgan(TINY_BIGVGAN))


def test_bigvgan_loads_nvidia_names_and_makes_frames_times_hop_samples(tiny_bigvgan_folder):
    vocoder = BigVGANVocoder.from_pretrained(tiny_bigvgan_folder)
    assert vocoder.sample_rate == 8000 and vocoder.samples_per_frame == 8
    assert not vocoder.training
    mel = torch.randn(2, 6, 13, generator=torch.Generator().manual_seed(0))
    wav = vocoder(mel)
    assert wav.shape == (2, 1, 13 * 8)
    assert wav.abs().max() <= 1.0  # use_tanh_at_final=False: clamped
    # Batch rows are independent: each equals its own single-row run (up to rounding, which BigVGAN's
    # random anti-aliasing taps amplify to ~1e-6).
    torch.testing.assert_close(wav[1:], vocoder(mel[1:]), rtol=1e-4, atol=1e-5)


def test_bigvgan_folds_weight_norm_as_remove_weight_norm_would(tiny_bigvgan_folder, tmp_path):
    state = _random_upstream_bigvgan(TINY_BIGVGAN)
    # The same weights as plain tensors (upstream's fallback for files saved after
    # remove_weight_norm), computed by torch's own weight_norm module.
    plain = {}
    for key, value in state.items():
        if key.endswith("weight_g"):
            stem = key[: -len(".weight_g")]
            plain[stem + ".weight"] = torch._weight_norm(state[stem + ".weight_v"], value, 0)
        elif not key.endswith("weight_v"):
            plain[key] = value
    parametrized = {}
    for key, value in state.items():
        key = key.replace(".weight_g", ".parametrizations.weight.original0")
        parametrized[key.replace(".weight_v", ".parametrizations.weight.original1")] = value
    mel = torch.randn(1, 6, 9)
    reference = BigVGANVocoder.from_pretrained(tiny_bigvgan_folder)(mel)
    for name, variant in (("plain", plain), ("parametrized", parametrized)):
        folder = _write_bigvgan_folder(tmp_path / name, TINY_BIGVGAN, variant)
        torch.testing.assert_close(BigVGANVocoder.from_pretrained(folder)(mel), reference, rtol=0, atol=0)


def test_weight_norm_folding_matches_torch_weight_norm():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 5, 3))
    g = conv.parametrizations.weight.original0.detach()
    v = conv.parametrizations.weight.original1.detach()
    with torch.no_grad():
        g.mul_(torch.rand_like(g) + 0.5)
    folded = fold_weight_norms({"c.weight_g": g, "c.weight_v": v, "c.bias": conv.bias.detach()})
    assert set(folded) == {"c.weight", "c.bias"}
    torch.testing.assert_close(folded["c.weight"], conv.weight.detach(), rtol=0, atol=0)


def test_bigvgan_uses_the_files_filters_like_upstream(tmp_path):
    # Upstream restores the filter buffers from the file; a file with other taps sounds different.
    state = _random_upstream_bigvgan(TINY_BIGVGAN)
    reference = BigVGANVocoder.from_pretrained(_write_bigvgan_folder(tmp_path / "a", TINY_BIGVGAN, state))
    state["activation_post.upsample.filter"] = torch.flip(
        state["activation_post.upsample.filter"] + 0.1, [-1]
    )
    changed = BigVGANVocoder.from_pretrained(_write_bigvgan_folder(tmp_path / "b", TINY_BIGVGAN, state))
    torch.testing.assert_close(changed.activation_post.up_filter, state["activation_post.upsample.filter"])
    mel = torch.randn(1, 6, 9)
    assert not torch.allclose(changed(mel), reference(mel))


@pytest.mark.parametrize("tanh_at_final", [False, True])
def test_bigvgan_bounds_its_output_by_clamp_or_tanh_as_configured(tiny_bigvgan_folder, tanh_at_final):
    config = {**TINY_BIGVGAN, "use_tanh_at_final": tanh_at_final}
    vocoder = BigVGANVocoder.from_pretrained(tiny_bigvgan_folder)
    vocoder.cfg = BigVGANConfig.from_json(config)
    mel = torch.randn(1, 6, 20)
    captured = []
    vocoder.conv_post.register_forward_hook(lambda module, args, out: captured.append(out))
    vocoder(mel)
    with torch.no_grad():  # scale the last conv so that the output spans about ±3
        vocoder.conv_post.weight.mul_(3 / captured[-1].abs().max())
    wav = vocoder(mel)
    pre = captured[-1]
    assert (pre.abs() > 1).any() and (pre.abs() < 0.5).any()
    expected = torch.tanh(pre) if tanh_at_final else pre.clamp(-1, 1)  # v2 24 kHz: clamp, no tanh
    torch.testing.assert_close(wav, expected, rtol=0, atol=0)


def test_bigvgan_takes_device_and_dtype_from_the_caller(tiny_bigvgan_folder):
    vocoder = BigVGANVocoder.from_pretrained(tiny_bigvgan_folder, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in vocoder.state_dict().values()} == {torch.float64}
    assert vocoder(torch.randn(1, 6, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("resblocks.1.convs2.0.bias"), "missing keys: resblocks.1.convs2.0.bias"),
        (lambda s: s.pop("ups.1.0.weight_g"), "ups.1.weight_v"),  # a lone half is named, not folded
        (lambda s: s.update({"conv_post.bias": torch.zeros(1)}), "unexpected keys: conv_post.bias"),
        (lambda s: s.update({"extra.layer": torch.zeros(1)}), "unexpected keys: extra.layer"),
        (
            lambda s: s.update({"activation_post.act.beta": torch.zeros(5)}),
            r"wrong shapes: activation_post.beta \(5,\) != \(4,\)",
        ),
    ],
)
def test_bigvgan_refuses_weights_that_do_not_fit(tmp_path, edit, message):
    state = _random_upstream_bigvgan(TINY_BIGVGAN)
    edit(state)
    folder = _write_bigvgan_folder(tmp_path / "bad", TINY_BIGVGAN, state)
    with pytest.raises(CheckpointError, match=message) as info:
        BigVGANVocoder.from_pretrained(folder)
    assert "bigvgan_generator.pt" in str(info.value)


def test_bigvgan_refuses_a_config_that_disagrees_with_the_weights(tmp_path):
    state = _random_upstream_bigvgan(TINY_BIGVGAN)
    folder = _write_bigvgan_folder(tmp_path / "bad", {**TINY_BIGVGAN, "num_mels": 80}, state)
    with pytest.raises(CheckpointError, match=r"wrong shapes: conv_pre.weight \(16, 6, 7\) != \(16, 80, 7\)"):
        BigVGANVocoder.from_pretrained(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation": "snake"}, "activation 'snake'"),
        ({"resblock": "2"}, "resblock type '2'"),
        ({"num_mels": None}, "not a usable BigVGAN config"),
    ],
)
def test_bigvgan_refuses_configs_it_cannot_run(tmp_path, change, message):
    config = {k: v for k, v in {**TINY_BIGVGAN, **change}.items() if v is not None}
    folder = _write_bigvgan_folder(tmp_path / "bad", config, _random_upstream_bigvgan(TINY_BIGVGAN))
    with pytest.raises(CheckpointError, match=message) as info:
        BigVGANVocoder.from_pretrained(folder)
    assert "config.json" in str(info.value)


def test_bigvgan_folder_problems_name_the_file(tmp_path, tiny_bigvgan_folder):
    with pytest.raises(CheckpointError, match="config.json: cannot be read"):
        BigVGANVocoder.from_pretrained(tmp_path / "nowhere")
    (tiny_bigvgan_folder / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="config.json"):
        BigVGANVocoder.from_pretrained(tiny_bigvgan_folder)
    folder = tmp_path / "no_generator"
    _write_bigvgan_folder(folder, TINY_BIGVGAN, {})
    torch.save({"discriminator": {}}, folder / "bigvgan_generator.pt")
    with pytest.raises(CheckpointError, match="has no 'generator' dictionary"):
        BigVGANVocoder.from_pretrained(folder)


def test_bigvgan_config_defaults_match_older_configs():
    old = {k: v for k, v in TINY_BIGVGAN.items() if k not in ("use_tanh_at_final", "use_bias_at_final")}
    cfg = BigVGANConfig.from_json(old)
    assert cfg.tanh_at_final and cfg.bias_at_final


# --------------------------------------------------------------------------- v4 HiFi-GAN

TINY_V4 = HiFiGANV4Config(
    num_mels=6,
    upsample_rates=(5, 2),
    upsample_kernel_sizes=(11, 4),
    upsample_initial_channel=16,
    resblock_kernel_sizes=(3, 5),
    resblock_dilation_sizes=((1, 3), (1, 2)),
)


def _upstream_v4_keys(cfg: HiFiGANV4Config) -> dict[str, tuple[int, ...]]:
    """Upstream Generator's names after remove_weight_norm (how vocoder.pth stores them)."""
    shapes = {"conv_pre.weight": (cfg.upsample_initial_channel, cfg.num_mels, 7)}
    shapes["conv_pre.bias"] = (cfg.upsample_initial_channel,)
    ch, block = cfg.upsample_initial_channel, 0
    for i, kernel in enumerate(cfg.upsample_kernel_sizes):
        shapes[f"ups.{i}.weight"] = (ch, ch // 2, kernel)
        shapes[f"ups.{i}.bias"] = (ch // 2,)
        ch //= 2
        for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
            for j in range(len(dilations)):
                for convs in ("convs1", "convs2"):
                    shapes[f"resblocks.{block}.{convs}.{j}.weight"] = (ch, ch, k)
                    shapes[f"resblocks.{block}.{convs}.{j}.bias"] = (ch,)
            block += 1
    shapes["conv_post.weight"] = (1, ch, 7)
    shapes["conv_post.bias"] = (1,)
    return shapes


def _random_v4_state(cfg: HiFiGANV4Config, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(shape, generator=gen) / math.sqrt(max(1, math.prod(shape[1:])))
        for key, shape in _upstream_v4_keys(cfg).items()
    }


def test_v4_default_sizes_are_upstreams():
    cfg = HiFiGANV4Config()
    model = HiFiGANVocoderV4()
    assert model.sample_rate == 48000 and model.samples_per_frame == 480
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == _upstream_v4_keys(cfg)


def test_v4_loads_a_plain_state_dict_and_makes_frames_times_hop_samples(tmp_path):
    path = tmp_path / "vocoder.pth"
    torch.save(_random_v4_state(TINY_V4), path)
    vocoder = HiFiGANVocoderV4.from_checkpoint(path, cfg=TINY_V4)
    assert not vocoder.training and vocoder.samples_per_frame == 10
    mel = torch.randn(2, 6, 11)
    wav = vocoder(mel)
    assert wav.shape == (2, 1, 110)
    assert wav.abs().max() < 1.0  # tanh
    torch.testing.assert_close(wav[:1], vocoder(mel[:1]), rtol=1e-5, atol=1e-6)
    as_half = HiFiGANVocoderV4.from_checkpoint(path, "cpu", torch.bfloat16, cfg=TINY_V4)
    assert as_half.conv_post.weight.dtype == torch.bfloat16


def test_v4_accepts_a_weight_normalised_file(tmp_path):
    state = _random_v4_state(TINY_V4)
    plain_path, wn_path = tmp_path / "plain.pth", tmp_path / "wn.pth"
    torch.save(state, plain_path)
    weight_normed = dict(state)
    v = weight_normed.pop("ups.0.weight")
    weight_normed["ups.0.weight_v"] = v
    weight_normed["ups.0.weight_g"] = v.flatten(1).norm(dim=1).view(-1, 1, 1)  # g = ||v||: same weight
    torch.save(weight_normed, wn_path)
    mel = torch.randn(1, 6, 8)
    torch.testing.assert_close(
        HiFiGANVocoderV4.from_checkpoint(wn_path, cfg=TINY_V4)(mel),
        HiFiGANVocoderV4.from_checkpoint(plain_path, cfg=TINY_V4)(mel),
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("resblocks.3.convs1.1.weight"), "missing keys: resblocks.3.convs1.1.weight"),
        (lambda s: s.update({"cond.weight": torch.zeros(16, 4, 1)}), "unexpected keys: cond.weight"),
        (lambda s: s.update({"conv_pre.weight": torch.zeros(16, 7, 7)}), "wrong shapes: conv_pre.weight"),
    ],
)
def test_v4_refuses_weights_that_do_not_fit(tmp_path, edit, message):
    state = _random_v4_state(TINY_V4)
    edit(state)
    path = tmp_path / "vocoder.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message):
        HiFiGANVocoderV4.from_checkpoint(path, cfg=TINY_V4)


def test_v4_refuses_a_bigvgan_file(tmp_path):
    path = tmp_path / "vocoder.pth"
    torch.save({"generator": _random_v4_state(TINY_V4)}, path)
    with pytest.raises(CheckpointError, match="unexpected keys: generator"):
        HiFiGANVocoderV4.from_checkpoint(path, cfg=TINY_V4)
