"""AP-BWE: speech bandwidth extension, 24 kHz -> 48 kHz (upstream's ``super_sampling`` for v3 voices).

v3's BigVGAN speaks at 24 kHz, which can sound muffled; upstream optionally runs the finished waveform
through AP-BWE (Lu et al., 2024), a small all-convolutional network that predicts the wide-band
log-amplitude and phase spectra from the narrow-band ones:

    audio @24k --resample--> @48k --STFT--> log|X|, angle(X) --two ConvNeXt streams--> log|Y|, angle(Y)
                                                                                      --iSTFT--> audio @48k

The two streams (amplitude, phase) exchange features before every block. The amplitude stream predicts a
residual on the input log-amplitude; the phase stream predicts a (real, imaginary) pair whose angle is
the output phase.

Files, as upstream lays them out: ``tools/AP_BWE_main/24kto48k/g_24kto48k.zip`` (a ``torch.save`` archive
``{"generator": state_dict}``) and ``config.json`` beside it (the AP-BWE training config: STFT sizes,
rates, ConvNeXt width and depth). Parameter names follow the official checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchaudio.functional as AF
from torch import nn

from app.engine.checkpoints import CheckpointError, load_checkpoint, load_state_strictly

CHECKPOINT_NAME = "g_24kto48k.zip"
CONFIG_NAME = "config.json"
LOG_AMPLITUDE_FLOOR = 1e-4  # log(|X| + 1e-4), as the model was trained
# The network sees STFT frames through 1 + layers convolutions of width 7 (3 frames each side), so a
# frame's output depends on at most 3 * (1 + layers) frames on either side. Long audio runs through it
# in windows of CHUNK_FRAMES with that much context, which bounds memory (512 x 3 channels per frame
# inside every block: ~2 GB for 10 minutes at once) and gives the same frames as one pass.
CHUNK_FRAMES = 4096


@dataclass(frozen=True)
class BandwidthExtensionConfig:
    n_fft: int = 1024
    hop_size: int = 80
    win_size: int = 320
    input_rate: int = 24000  # ``lr_sampling_rate``
    output_rate: int = 48000  # ``hr_sampling_rate``
    channels: int = 512  # ``ConvNeXt_channels``
    layers: int = 8  # ``ConvNeXt_layers``

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> BandwidthExtensionConfig:
        """From AP-BWE's training config (``config.json``); extra training keys are ignored."""
        try:
            return cls(
                n_fft=int(config["n_fft"]),
                hop_size=int(config["hop_size"]),
                win_size=int(config["win_size"]),
                input_rate=int(config["lr_sampling_rate"]),
                output_rate=int(config["hr_sampling_rate"]),
                channels=int(config["ConvNeXt_channels"]),
                layers=int(config["ConvNeXt_layers"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an AP-BWE config ({type(exc).__name__}: {exc})") from None


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) -> LayerNorm -> 3x pointwise MLP with GELU -> layer scale, plus the input."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, dim * 3)
        self.pwconv2 = nn.Linear(dim * 3, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.gamma * self.pwconv2(nn.functional.gelu(self.pwconv1(y)))
        return x + y.transpose(1, 2)


def _channel_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of a ``[B, C, T]`` tensor."""
    return norm(x.transpose(1, 2)).transpose(1, 2)


class BandwidthExtensionNet(nn.Module):
    """Narrow-band (log-amplitude, phase) spectra ``[B, bins, frames]`` -> wide-band ones."""

    def __init__(self, cfg: BandwidthExtensionConfig):
        super().__init__()
        self.cfg = cfg
        bins, dim = cfg.bins, cfg.channels
        self.conv_pre_mag = nn.Conv1d(bins, dim, 7, padding=3)
        self.norm_pre_mag = nn.LayerNorm(dim, eps=1e-6)
        self.conv_pre_pha = nn.Conv1d(bins, dim, 7, padding=3)
        self.norm_pre_pha = nn.LayerNorm(dim, eps=1e-6)
        self.convnext_mag = nn.ModuleList(ConvNeXtBlock(dim, 1 / cfg.layers) for _ in range(cfg.layers))
        self.convnext_pha = nn.ModuleList(ConvNeXtBlock(dim, 1 / cfg.layers) for _ in range(cfg.layers))
        self.norm_post_mag = nn.LayerNorm(dim, eps=1e-6)
        self.norm_post_pha = nn.LayerNorm(dim, eps=1e-6)
        self.linear_post_mag = nn.Linear(dim, bins)
        self.linear_post_pha_r = nn.Linear(dim, bins)
        self.linear_post_pha_i = nn.Linear(dim, bins)

    def forward(self, log_amplitude: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mag = _channel_norm(self.norm_pre_mag, self.conv_pre_mag(log_amplitude))
        pha = _channel_norm(self.norm_pre_pha, self.conv_pre_pha(phase))
        for block_mag, block_pha in zip(self.convnext_mag, self.convnext_pha, strict=True):
            # The streams exchange features before each block (the phase stream sees the updated mag).
            mag = mag + pha
            pha = pha + mag
            mag, pha = block_mag(mag), block_pha(pha)
        mag = self.norm_post_mag(mag.transpose(1, 2))
        pha = self.norm_post_pha(pha.transpose(1, 2))
        wide_log_amplitude = log_amplitude + self.linear_post_mag(mag).transpose(1, 2)
        wide_phase = torch.atan2(self.linear_post_pha_i(pha), self.linear_post_pha_r(pha)).transpose(1, 2)
        return wide_log_amplitude, wide_phase


class BandwidthExtender:
    """Loaded AP-BWE model + its signal processing: ``extend(audio @ input_rate) -> audio @ output_rate``."""

    def __init__(self, net: BandwidthExtensionNet, device: torch.device | str = "cpu"):
        self.net = net.eval().requires_grad_(False).to(device)
        self.cfg = net.cfg
        self.device = torch.device(device)
        self._window = torch.hann_window(self.cfg.win_size, device=self.device)

    @classmethod
    def from_folder(cls, folder: str | Path, device: torch.device | str = "cpu") -> BandwidthExtender:
        """Load ``g_24kto48k.zip`` + ``config.json`` from ``folder`` (strictly; safe loading).

        Raises FileNotFoundError when either file is missing, CheckpointError when they are unusable.
        Runs in float32 whatever the service's dtype (upstream does not halve it either; it is small).
        """
        folder = Path(folder)
        checkpoint_path, config_path = folder / CHECKPOINT_NAME, folder / CONFIG_NAME
        for path in (checkpoint_path, config_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path.name} is missing from {folder}")
        try:
            cfg = BandwidthExtensionConfig.from_json(json.loads(config_path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(config_path, str(exc)) from None
        generator = load_checkpoint(checkpoint_path).get("generator")
        if not isinstance(generator, dict):
            raise CheckpointError(checkpoint_path, "has no 'generator' state dict (not an AP-BWE checkpoint)")
        net = BandwidthExtensionNet(cfg)
        load_state_strictly(net, generator, checkpoint_path)
        return cls(net, device)

    @torch.no_grad()
    def extend(self, audio: torch.Tensor, rate: int) -> torch.Tensor:
        """Mono ``audio`` ``[samples]`` at ``rate`` -> ``[samples']`` at ``cfg.output_rate``.

        The result is ``hop_size``-aligned (the inverse STFT drops the tail of the last hop, as
        upstream's call does: no ``length`` is passed).
        """
        cfg = self.cfg
        x = audio.to(device=self.device, dtype=torch.float32).reshape(1, -1)
        x = AF.resample(x, orig_freq=rate, new_freq=cfg.output_rate)
        spectrum = torch.stft(
            x, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size, window=self._window,
            center=True, pad_mode="reflect", return_complex=True,
        )  # fmt: skip
        log_amplitude, phase = self._run_net(
            torch.log(spectrum.abs() + LOG_AMPLITUDE_FLOOR), spectrum.angle()
        )
        wide = torch.polar(torch.exp(log_amplitude), phase)
        out = torch.istft(
            wide, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size, window=self._window
        )
        return out.reshape(-1)

    def _run_net(
        self, log_amplitude: torch.Tensor, phase: torch.Tensor, chunk: int = CHUNK_FRAMES
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The network over ``[1, bins, frames]`` spectra, in windows of ``chunk`` frames plus context."""
        frames = log_amplitude.size(-1)
        if frames <= chunk:
            return self.net(log_amplitude, phase)
        context = 3 * (1 + self.cfg.layers)
        amplitudes, phases = [], []
        for start in range(0, frames, chunk):
            lo, hi = max(0, start - context), min(frames, start + chunk + context)
            amp, pha = self.net(log_amplitude[..., lo:hi], phase[..., lo:hi])
            keep = slice(start - lo, start - lo + min(chunk, frames - start))
            amplitudes.append(amp[..., keep])
            phases.append(pha[..., keep])
        return torch.cat(amplitudes, dim=-1), torch.cat(phases, dim=-1)
