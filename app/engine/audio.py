"""Output audio: fragments → one waveform → int16 → WAV bytes (upstream's ``audio_postprocess``).

Each synthesised fragment (one cut piece of the text) is peak-limited on its own, followed by a
stretch of silence (``fragment_interval``, also after the last fragment), and the fragments are joined
in text order. The float waveform becomes int16 by ``* 32768`` with truncation toward zero, as upstream
converts it.

Speed is not handled here: upstream changes speed inside the SoVITS decoder (its post-hoc ``atempo``
filter is disabled), so the pipeline passes ``speed_factor`` to the decoder.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence

import numpy as np
import torch

INT16_SCALE = 32768.0


def silence_samples(sample_rate: int, seconds: float) -> int:
    """Length of a pause, as upstream computes it (``int(rate * seconds)``)."""
    return int(sample_rate * seconds) if seconds > 0 else 0


def peak_limited(fragment: np.ndarray) -> np.ndarray:
    """``fragment`` divided by its peak when the peak exceeds 1 (upstream's guard against clipping)."""
    peak = float(np.abs(fragment).max()) if fragment.size else 0.0
    return fragment / np.float32(peak) if peak > 1 else fragment


def assemble_fragments(fragments: Sequence[np.ndarray | torch.Tensor], pause_samples: int) -> np.ndarray:
    """Join fragments (already in text order) into one float32 waveform, each followed by a pause."""
    pause = np.zeros(pause_samples, dtype=np.float32)
    parts: list[np.ndarray] = []
    for fragment in fragments:
        if isinstance(fragment, torch.Tensor):
            fragment = fragment.detach().to(device="cpu", dtype=torch.float32).numpy()
        parts.append(peak_limited(np.asarray(fragment, dtype=np.float32).reshape(-1)))
        if pause_samples:
            parts.append(pause)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] → int16 as upstream: ``(audio * 32768)`` truncated toward zero.

    Deliberate deviation: a sample at exactly +1.0 (every fragment whose peak was positive and
    normalised) gives 32768, which upstream's ``astype(np.int16)`` wraps to -32768, a click. We
    clip to the int16 range instead (32767); every other sample is identical.
    """
    scaled = np.asarray(audio, dtype=np.float32) * np.float32(INT16_SCALE)
    return np.clip(np.trunc(scaled), -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV file bytes for int16 ``audio``."""
    pcm = np.asarray(audio)
    if pcm.dtype != np.int16:
        raise ValueError(f"expected int16 samples, got {pcm.dtype}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()
