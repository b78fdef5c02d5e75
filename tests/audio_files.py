"""Audio files for the untrusted-audio tests, including hostile ones: headers that lie, decompression
bombs, absurd rates. Each is written the way a client could make it, with soundfile or by hand."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile

FLAC_TOTAL_SAMPLES_OFFSET = 18  # "fLaC", the block header, then 10 bytes into STREAMINFO


def clip(seconds: float, rate: int = 32000, channels: int = 1, fmt: str = "WAV", subtype: str | None = None,
         seed: int = 0) -> bytes:  # fmt: skip
    """Noise of ``seconds`` at ``rate`` (a valid clip of that length)."""
    frames = int(round(seconds * rate))
    noise = 0.1 * np.random.default_rng(seed).standard_normal((frames, channels)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, noise, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def silent_flac(seconds: float, rate: int = 16000, channels: int = 8) -> bytes:
    """A long multi-channel FLAC of silence: tiny on the wire, large once decoded (a decompression bomb)."""
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros((rate * 10, channels), dtype=np.int16)
        for _ in range(int(seconds // 10)):
            out.write(block)
    return buffer.getvalue()


def flac_claiming(total_samples: int, real: bytes) -> bytes:
    """A FLAC file (``real``) whose STREAMINFO says it holds ``total_samples`` (36 bits; 0 = unknown)."""
    assert real[:4] == b"fLaC"
    head = int.from_bytes(real[FLAC_TOTAL_SAMPLES_OFFSET : FLAC_TOTAL_SAMPLES_OFFSET + 8], "big")
    head = (head & ~((1 << 36) - 1)) | (total_samples & ((1 << 36) - 1))
    return real[:FLAC_TOTAL_SAMPLES_OFFSET] + head.to_bytes(8, "big") + real[FLAC_TOTAL_SAMPLES_OFFSET + 8 :]


def wav_header(rate: int, channels: int, bits: int = 16, data_bytes: int = 0) -> bytes:
    """A PCM WAV header claiming ``data_bytes`` of samples (the file may hold fewer)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits)
    riff_size = min(0xFFFFFFFF, 4 + 8 + len(fmt) + 8 + data_bytes)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", min(0xFFFFFFFF, data_bytes))
    )  # fmt: skip
