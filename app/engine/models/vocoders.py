"""The mel-to-waveform vocoders of GPT-SoVITS v3 and v4 (inference only).

v3 and v4 SoVITS models do not produce audio themselves: their CFM samples a 100-band mel
spectrogram (100 frames per second of speech) and a separate vocoder turns it into a waveform.

- v3 uses NVIDIA's BigVGAN v2 (24 kHz, 100 bands, 256 samples per frame), read from its
  pretrained folder (``config.json`` + ``bigvgan_generator.pt``). ``BigVGANVocoder`` below is our own
  implementation of its generator: transposed-conv upsampling, then "AMP" residual blocks whose
  activations are SnakeBeta functions evaluated at twice the sample rate (anti-aliased: upsample 2x
  with a kaiser-windowed sinc low-pass, apply, low-pass and downsample 2x).
- v4 uses a HiFi-GAN generator of upstream's own (``gsv-v4-pretrained/vocoder.pth``, 48 kHz, 480
  samples per frame), with hyperparameters upstream hard-codes except its width, which we read from
  the weights; see ``HiFiGANVocoderV4``.

Both take ``mel [batch, 100, frames]`` and return ``wav [batch, 1, frames * samples_per_frame]`` in
[-1, 1]. Weight norm is folded into plain weights at load time (upstream calls
``remove_weight_norm()`` before inference, which computes the same ``g * v / ||v||``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.checkpoints import CheckpointError, load_checkpoint, load_state_strictly
from app.engine.models.vits_modules import HiFiGANGenerator, fold_weight_norm, padding_for

# SnakeBeta divides by beta; this keeps the division finite for beta == 0 (value as upstream).
SNAKE_EPSILON = 1e-9

# The anti-aliased activation always resamples by 2 with 12-tap filters in BigVGAN v2.
ALIAS_FREE_RATIO = 2
ALIAS_FREE_TAPS = 12


# --------------------------------------------------------------------------- weight files


def fold_weight_norms(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every weight-normalised pair by the plain ``weight`` it stands for.

    Accepts both ways torch stores weight norm: ``weight_g``/``weight_v`` (the classic hook) and
    ``parametrizations.weight.original0``/``original1`` (the newer parametrization). A half of a pair
    whose partner is missing passes through unchanged, so the strict key check names it.
    """
    pairs = (
        (".weight_g", ".weight_v"),
        (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
    )
    folded: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()
    for key in state:
        for g_suffix, v_suffix in pairs:
            if key.endswith(g_suffix) and key[: -len(g_suffix)] + v_suffix in state:
                stem = key[: -len(g_suffix)]
                folded[stem + ".weight"] = fold_weight_norm(state[key], state[stem + v_suffix])
                consumed.update((key, stem + v_suffix))
    for key, value in state.items():
        if key not in consumed:
            folded[key] = value
    return folded


# --------------------------------------------------------------------------- anti-aliased activation


def kaiser_sinc_lowpass(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """A windowed-sinc low-pass filter ``[kernel_size]`` whose taps sum to 1.

    ``cutoff`` and ``half_width`` (of the transition band) are fractions of the sample rate. The
    Kaiser window's beta comes from Kaiser's empirical formula for the stop-band attenuation that a
    filter of this length and transition width can reach. For an even length the taps sit at
    half-integer times, so the filter is centred between two samples.
    """
    if not 0 < cutoff <= 0.5:
        raise ValueError(f"cutoff must be in (0, 0.5], got {cutoff}")
    half = kernel_size // 2
    attenuation_db = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation_db > 50.0:
        beta = 0.1102 * (attenuation_db - 8.7)
    elif attenuation_db >= 21.0:
        beta = 0.5842 * (attenuation_db - 21.0) ** 0.4 + 0.07886 * (attenuation_db - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        times = torch.arange(-half, half) + 0.5
    else:
        times = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * times)
    return taps / taps.sum()


def upsample_2x(x: torch.Tensor, lowpass: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` → ``[B, C, 2T]``: zero-stuffing followed by the low-pass ``lowpass [1, 1, K]``.

    Edges are extended by repeating the end samples, and the transposed convolution's extra output
    is cropped so that the result lines up with the input.
    """
    ratio, taps = ALIAS_FREE_RATIO, lowpass.shape[-1]
    pad = taps // ratio - 1
    crop_left = pad * ratio + (taps - ratio) // 2
    crop_right = pad * ratio + (taps - ratio + 1) // 2
    channels = x.shape[1]
    x = F.pad(x, (pad, pad), mode="replicate")
    # Zero-stuffing keeps one sample in `ratio`; the gain restores the signal's level.
    x = ratio * F.conv_transpose1d(x, lowpass.expand(channels, -1, -1), stride=ratio, groups=channels)
    return x[..., crop_left:-crop_right]


def downsample_2x(x: torch.Tensor, lowpass: torch.Tensor) -> torch.Tensor:
    """``[B, C, 2T]`` → ``[B, C, T]``: the low-pass ``lowpass [1, 1, K]`` evaluated at every other sample."""
    taps = lowpass.shape[-1]
    even = taps % 2 == 0
    channels = x.shape[1]
    x = F.pad(x, (taps // 2 - int(even), taps // 2), mode="replicate")
    return F.conv1d(x, lowpass.expand(channels, -1, -1), stride=ALIAS_FREE_RATIO, groups=channels)


class AntiAliasedSnakeBeta(nn.Module):
    """SnakeBeta, ``x + sin²(αx) / β`` with one α and β per channel, applied at twice the sample rate.

    Its periodic part creates harmonics above the Nyquist frequency; evaluating it on a 2x
    upsampled signal and low-passing before going back down keeps them from folding into the audio.

    The two 12-tap filters are buffers: upstream loads them from the weight file like any weight, so
    we do too (an official file holds what NVIDIA's code computed when it saved the model, the same
    kaiser-sinc taps as ``kaiser_sinc_lowpass``; the conformance corpus's random file does not).
    """

    def __init__(self, channels: int, log_scale: bool = True):
        super().__init__()
        self.log_scale = log_scale  # α and β are stored as logarithms (BigVGAN v2's "snake_logscale")
        self.alpha = nn.Parameter(torch.zeros(channels) if log_scale else torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels) if log_scale else torch.ones(channels))
        lowpass = kaiser_sinc_lowpass(0.5 / ALIAS_FREE_RATIO, 0.6 / ALIAS_FREE_RATIO, ALIAS_FREE_TAPS)
        self.register_buffer("up_filter", lowpass.view(1, 1, -1).clone())
        self.register_buffer("down_filter", lowpass.view(1, 1, -1).clone())

    def snake_beta(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        beta = self.beta.view(1, -1, 1)
        if self.log_scale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + (1.0 / (beta + SNAKE_EPSILON)) * torch.sin(x * alpha).pow(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_2x(self.snake_beta(upsample_2x(x, self.up_filter)), self.down_filter)


# --------------------------------------------------------------------------- BigVGAN v2 (v3)


@dataclass(frozen=True)
class BigVGANConfig:
    """The generator's sizes, read from the pretrained folder's ``config.json``."""

    num_mels: int
    sampling_rate: int
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    snake_log_scale: bool = True
    bias_at_final: bool = True
    tanh_at_final: bool = True

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> BigVGANConfig:
        """Raises ValueError for a config this generator cannot run (other block or activation types)."""
        try:
            if str(config.get("resblock", "1")) != "1":
                raise ValueError(
                    f"resblock type {config['resblock']!r} (only type '1', AMPBlock1, is supported)"
                )
            if config.get("activation") != "snakebeta":
                raise ValueError(f"activation {config.get('activation')!r} (only 'snakebeta' is supported)")
            # Both flags default to True when absent, for configs older than BigVGAN v2.
            return cls(
                num_mels=int(config["num_mels"]),
                sampling_rate=int(config["sampling_rate"]),
                upsample_rates=tuple(int(r) for r in config["upsample_rates"]),
                upsample_kernel_sizes=tuple(int(k) for k in config["upsample_kernel_sizes"]),
                upsample_initial_channel=int(config["upsample_initial_channel"]),
                resblock_kernel_sizes=tuple(int(k) for k in config["resblock_kernel_sizes"]),
                resblock_dilation_sizes=tuple(
                    tuple(int(d) for d in ds) for ds in config["resblock_dilation_sizes"]
                ),
                snake_log_scale=bool(config.get("snake_logscale", True)),
                bias_at_final=bool(config.get("use_bias_at_final", True)),
                tanh_at_final=bool(config.get("use_tanh_at_final", True)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a usable BigVGAN config ({type(exc).__name__}: {exc})") from None


class AMPBlock(nn.Module):
    """BigVGAN's residual block (AMPBlock1): like HiFi-GAN's type 1, with anti-aliased SnakeBeta
    in place of the leaky ReLUs. ``activations`` interleaves them: 2i before ``convs1[i]``, 2i+1
    before ``convs2[i]`` (upstream's order, kept so that the file's indices map one to one)."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], log_scale: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=padding_for(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=padding_for(kernel_size)) for _ in dilations
        )
        self.activations = nn.ModuleList(
            AntiAliasedSnakeBeta(channels, log_scale) for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            xt = c1(self.activations[2 * i](x))
            x = c2(self.activations[2 * i + 1](xt)) + x
        return x


# Upstream key → ours. Each upsampler sits alone in a one-element ModuleList upstream ("ups.i.0");
# the activation wrapper keeps α/β under ".act." and the down filter under ".downsample.lowpass.".
_BIGVGAN_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^ups\.(\d+)\.0\.", r"ups.\1."),
        (r"\.act\.(alpha|beta)$", r".\1"),
        (r"\.upsample\.filter$", ".up_filter"),
        (r"\.downsample\.lowpass\.filter$", ".down_filter"),
    )
)


def convert_bigvgan_state(upstream: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVIDIA's generator state dict → ours: weight norm folded, keys renamed (unknown keys kept)."""
    state = {}
    for key, value in fold_weight_norms(upstream).items():
        for pattern, replacement in _BIGVGAN_RENAMES:
            key = pattern.sub(replacement, key)
        state[key] = value
    return state


class BigVGANVocoder(nn.Module):
    """BigVGAN v2 generator: mel ``[B, num_mels, frames]`` → waveform ``[B, 1, frames * prod(upsample_rates)]``."""

    def __init__(self, cfg: BigVGANConfig):
        super().__init__()
        self.cfg = cfg
        self.sample_rate = cfg.sampling_rate
        self.samples_per_frame = math.prod(cfg.upsample_rates)
        self.n_kernels = len(cfg.resblock_kernel_sizes)
        channels = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.num_mels, channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            self.ups.append(
                nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
            )
            channels //= 2
            for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(AMPBlock(channels, k, dilations, cfg.snake_log_scale))
        self.activation_post = AntiAliasedSnakeBeta(channels, cfg.snake_log_scale)
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=cfg.bias_at_final)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> BigVGANVocoder:
        """Load NVIDIA's pretrained folder (``config.json`` + ``bigvgan_generator.pt``), strictly, in eval mode.

        Raises CheckpointError naming the file when the folder is incomplete or the weights do not fit.
        """
        folder = Path(folder)
        config_path, weights_path = folder / "config.json", folder / "bigvgan_generator.pt"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            cfg = BigVGANConfig.from_json(config)
        except OSError as exc:
            raise CheckpointError(config_path, f"cannot be read ({exc.strerror or exc})") from None
        except (json.JSONDecodeError, AttributeError, ValueError) as exc:
            raise CheckpointError(config_path, str(exc)) from None
        checkpoint = load_checkpoint(weights_path)
        generator = checkpoint.get("generator")
        if not isinstance(generator, Mapping):
            raise CheckpointError(
                weights_path, "has no 'generator' dictionary (not a BigVGAN generator file)"
            )
        return cls.from_state_dict(generator, cfg, source=weights_path).to(device=device, dtype=dtype)

    @classmethod
    def from_state_dict(
        cls, upstream: Mapping[str, torch.Tensor], cfg: BigVGANConfig, source: str | Path = "state dict"
    ) -> BigVGANVocoder:
        """Build from an already loaded upstream state dict (weight-normalised or not); CPU, float32, eval."""
        model = cls(cfg)
        load_state_strictly(model, convert_bigvgan_state(upstream), source)
        return model.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(x)  # no activation before upsampling, unlike HiFi-GAN
            blocks = self.resblocks[i * self.n_kernels : (i + 1) * self.n_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.n_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.cfg.tanh_at_final else x.clamp(-1.0, 1.0)


# --------------------------------------------------------------------------- HiFi-GAN 48 kHz (v4)


@dataclass(frozen=True)
class HiFiGANV4Config:
    """The sizes upstream hard-codes when it builds the v4 vocoder (``TTS.init_vocoder``)."""

    num_mels: int = 100
    upsample_rates: tuple[int, ...] = (10, 6, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (20, 12, 4, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sampling_rate: int = 48000

    @classmethod
    def sized_like(cls, state: Mapping[str, torch.Tensor]) -> HiFiGANV4Config:
        """Upstream's sizes with the width (``upsample_initial_channel``) of the weights in ``state``:
        ``conv_pre``'s output channels. An official file gives 512, as upstream hard-codes; without
        ``conv_pre.weight`` the default stays and the strict load names the missing key."""
        conv_pre = state.get("conv_pre.weight")
        return cls() if conv_pre is None else cls(upsample_initial_channel=int(conv_pre.shape[0]))


class HiFiGANVocoderV4(HiFiGANGenerator):
    """Upstream's HiFi-GAN generator as v4 configures it: no speaker input, a bias on the last conv.

    mel ``[B, 100, frames]`` → waveform ``[B, 1, frames * 480]`` at 48 kHz.
    """

    def __init__(self, cfg: HiFiGANV4Config | None = None):
        cfg = cfg or HiFiGANV4Config()
        super().__init__(
            cfg.num_mels,
            cfg.resblock_kernel_sizes,
            cfg.resblock_dilation_sizes,
            cfg.upsample_rates,
            cfg.upsample_initial_channel,
            cfg.upsample_kernel_sizes,
            gin_channels=0,
            post_bias=True,
        )
        self.cfg = cfg
        self.sample_rate = cfg.sampling_rate
        self.samples_per_frame = math.prod(cfg.upsample_rates)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        *,
        cfg: HiFiGANV4Config | None = None,
    ) -> HiFiGANVocoderV4:
        """Load ``gsv-v4-pretrained/vocoder.pth`` (a bare state dict), strictly, in eval mode.

        The file carries no config: unless ``cfg`` says otherwise, the sizes are upstream's hard-coded
        ones with the width read from the weights (:meth:`HiFiGANV4Config.sized_like`). Upstream
        removes weight norm before loading, so the official file holds plain weights; a
        weight-normalised file is folded first and loads the same way.
        """
        state = fold_weight_norms(load_checkpoint(path))
        model = cls(cfg or HiFiGANV4Config.sized_like(state))
        load_state_strictly(model, state, path)
        return model.eval().requires_grad_(False).to(device=device, dtype=dtype)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return super().forward(mel)
