"""Reference audio → the three inputs the models need from it.

A GPT-SoVITS reference clip feeds three consumers, and upstream prepares the audio differently for each;
every difference below changes the numbers, so it is kept on purpose:

- HuBERT (prompt semantic codes): the clip resampled to 16 kHz with soxr "HQ" (what ``librosa.load`` does),
  followed by a stretch of zeros.                                           → :func:`hubert_input`
- SoVITS timbre encoder: a linear magnitude spectrogram of the clip at the model's sampling rate,
  resampled with torchaudio's windowed-sinc ``Resample`` and tamed if it clips. → :func:`spectrogram`
- Speaker verification (v2Pro/v2ProPlus): that same model-rate audio, resampled again to 16 kHz with
  torchaudio.                                                               → :func:`sv_input`

Clips are decoded (within their rules) by :mod:`app.engine.reference_clips`; resampling with
torchaudio's kernel, in bounded memory, is :mod:`app.engine.resampling`. All arithmetic is float32;
tensors are created on the CPU unless a ``device`` is given (the caller casts to half precision
afterwards if it wants to).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr
import torch

from app.engine.resampling import resample_sinc

__all__ = ["resample_sinc"]  # re-exported: the v3/v4 mel input resamples with it too

HUBERT_SAMPLE_RATE = 16000
SV_SAMPLE_RATE = 16000

# Seconds of silence appended to the HuBERT input.
HUBERT_PADDING_SECONDS = 0.3


# --------------------------------------------------------------------------------------------- HuBERT


def resample_soxr_hq(samples: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample like ``librosa.load(..., sr=target_sr)`` (librosa 0.10, default ``soxr_hq``).

    librosa then forces the length to ``ceil(len * target_sr / sr)`` (trimming or zero-padding), so we do too.
    """
    if sr == target_sr:
        return samples
    resampled = soxr.resample(samples, sr, target_sr, quality="HQ")
    expected = int(np.ceil(samples.shape[-1] * target_sr / sr))
    if resampled.shape[-1] > expected:
        resampled = resampled[:expected]
    elif resampled.shape[-1] < expected:
        resampled = np.pad(resampled, (0, expected - resampled.shape[-1]))
    return resampled.astype(np.float32, copy=False)


def hubert_input(
    samples: np.ndarray,
    sr: int,
    model_sampling_rate: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The HuBERT input for a reference: ``[1, n]`` float32 at 16 kHz, silence appended.

    ``model_sampling_rate`` is the SoVITS model's rate. Upstream quirk, reproduced on purpose: the
    appended silence is ``int(model_sampling_rate * 0.3)`` samples, i.e. 0.3 s counted at the *model*
    rate although the audio is at 16 kHz (0.6 s of zeros for a 32 kHz model). The prompt codes depend on it.
    The 3-10 s rule is checked before (``app.engine.planning.check_reference``).
    """
    wav16k = resample_soxr_hq(np.asarray(samples, dtype=np.float32), sr, HUBERT_SAMPLE_RATE)
    padding = np.zeros(int(model_sampling_rate * HUBERT_PADDING_SECONDS), dtype=np.float32)
    return torch.from_numpy(np.concatenate([wav16k, padding]))[None].to(device)


# -------------------------------------------------------------------------- spectrogram and SV input


def model_rate_audio(
    samples: np.ndarray | torch.Tensor,
    sr: int,
    model_sampling_rate: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The reference at the model's rate, ``[1, n]`` float32, as the spectrogram and SV input start from.

    Resampling can overshoot ±1; upstream then divides by the peak, but never by more than 2
    (``audio / min(2, peak)`` when peak > 1).
    """
    audio = torch.as_tensor(samples, dtype=torch.float32, device=device).reshape(1, -1)
    audio = resample_sinc(audio, sr, model_sampling_rate)
    peak = audio.abs().max()
    if peak > 1:
        audio = audio / torch.clamp(peak, max=2.0)
    return audio


@dataclass(frozen=True)
class SpectrogramConfig:
    """The SoVITS ``data`` settings the linear spectrogram uses."""

    sampling_rate: int
    filter_length: int  # FFT size; the spectrogram has filter_length // 2 + 1 bins
    hop_length: int
    win_length: int

    @classmethod
    def from_sovits_config(cls, config: Mapping[str, Any]) -> SpectrogramConfig:
        """From a SoVITS checkpoint config (its ``data`` section) or the ``data`` section itself."""
        data = config.get("data", config)
        return cls(
            sampling_rate=int(data["sampling_rate"]),
            filter_length=int(data["filter_length"]),
            hop_length=int(data["hop_length"]),
            win_length=int(data["win_length"]),
        )


def linear_spectrogram(audio: torch.Tensor, n_fft: int, hop_length: int, win_length: int) -> torch.Tensor:
    """Magnitude STFT ``[batch, n_fft // 2 + 1, frames]`` of ``audio`` ``[batch, samples]``.

    Same framing as upstream's ``spectrogram_torch(center=False)``: reflect-pad (n_fft - hop) / 2 on both
    sides, Hann window, no normalisation, and sqrt(re² + im² + 1e-8) so silence stays differentiable.
    """
    pad = (n_fft - hop_length) // 2
    padded = torch.nn.functional.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(win_length, dtype=audio.dtype, device=audio.device)
    stft = torch.stft(
        padded,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return torch.sqrt(stft.real.pow(2) + stft.imag.pow(2) + 1e-8)


def _spectrogram_config(config: SpectrogramConfig | Mapping[str, Any]) -> SpectrogramConfig:
    return config if isinstance(config, SpectrogramConfig) else SpectrogramConfig.from_sovits_config(config)


def spectrogram(
    samples: np.ndarray | torch.Tensor,
    sr: int,
    sovits_config: SpectrogramConfig | Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The reference spectrogram SoVITS conditions on: ``[1, filter_length // 2 + 1, frames]``."""
    cfg = _spectrogram_config(sovits_config)
    audio = model_rate_audio(samples, sr, cfg.sampling_rate, device=device)
    return linear_spectrogram(audio, cfg.filter_length, cfg.hop_length, cfg.win_length)


def sv_input(
    samples: np.ndarray | torch.Tensor,
    sr: int,
    model_sampling_rate: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The speaker-verification input: ``[1, n]`` float32 at 16 kHz.

    Upstream quirk, reproduced on purpose: it is derived from the *model-rate* audio (resampled and
    peak-limited as for the spectrogram) and resampled once more, never straight from the file; a 16 kHz
    file therefore goes 16k → model rate → 16k.
    """
    audio = model_rate_audio(samples, sr, model_sampling_rate, device=device)
    return resample_sinc(audio, model_sampling_rate, SV_SAMPLE_RATE)


def reference_spec_and_sv_input(
    samples: np.ndarray | torch.Tensor,
    sr: int,
    sovits_config: SpectrogramConfig | Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both :func:`spectrogram` and :func:`sv_input` from one model-rate resampling (v2Pro/v2ProPlus)."""
    cfg = _spectrogram_config(sovits_config)
    audio = model_rate_audio(samples, sr, cfg.sampling_rate, device=device)
    spec = linear_spectrogram(audio, cfg.filter_length, cfg.hop_length, cfg.win_length)
    return spec, resample_sinc(audio, cfg.sampling_rate, SV_SAMPLE_RATE)
