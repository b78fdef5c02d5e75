"""Untrusted reference clips → samples, in memory that a client cannot choose.

A clip's cost is set by numbers in its header (rate, channels, frame count) that the client writes,
and a compressed file can claim hours in a few kilobytes. So a clip is read in three steps, each
bounded before the next allocates:

1. :func:`read_header`: the container's rate, channels and frame count (libsndfile's open; no samples).
2. :func:`check_header` against :class:`ClipRules`: a rate in ``[min_rate, max_rate]`` and a claimed
   length within the rule's maximum; :func:`processing_bytes` is what decoding and feature extraction
   of that clip take at most, which a :class:`ReferenceBudget` charges per request before decoding.
3. :func:`decode_clip`: samples read block by block (each block averaged to mono at once, so channels
   never multiply the memory) and never more than the rule allows, whatever the header said: a file
   that holds more than it claimed is refused once it passes the maximum.

Every refusal is an engine error with a stable code (422, or 413 for the budget), never a 500.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile

from app.engine.errors import InvalidRequest, TooLarge

AudioSource = str | Path | bytes | bytearray | memoryview | BinaryIO

MIN_REFERENCE_SECONDS, MAX_REFERENCE_SECONDS = 3.0, 10.0  # upstream refuses main references outside
MIN_REFERENCE_RATE = 8000  # below this a clip holds no usable speech band (HuBERT reads 16 kHz)
MAX_REFERENCE_RATE = 192_000  # the highest rate studio recorders write
# Samples decoded per block, across channels: a block of a 255-channel file is still this small.
DECODE_BLOCK_SAMPLES = 1 << 20
# libsndfile reports a length it does not know (a FLAC written as a stream) as about 2**63 frames.
UNKNOWN_FRAMES = 1 << 60
# The highest rate any model conditions on (v4's mel input and v2's 32 kHz stay below it).
LARGEST_MODEL_RATE = 48_000


class ReferenceAudioError(InvalidRequest, ValueError):
    """A reference clip that cannot be decoded (not audio, or a format libsndfile cannot read)."""

    code = "invalid_reference_audio"


@dataclass(frozen=True)
class ClipRules:
    """What a reference clip must be. Upstream's rule for the main clip is 3–10 s; auxiliary clips
    follow the same one here (upstream sets none, and their cost grows with their length)."""

    min_seconds: float = MIN_REFERENCE_SECONDS
    max_seconds: float = MAX_REFERENCE_SECONDS
    min_rate: int = MIN_REFERENCE_RATE
    max_rate: int = MAX_REFERENCE_RATE

    def max_frames(self, rate: int) -> int:
        """Frames a clip at ``rate`` may hold: the longest allowed clip, rounded up."""
        return math.ceil(self.max_seconds * rate) + 1

    def describe_length(self) -> str:
        return f"{self.min_seconds:g}–{self.max_seconds:g} s"


REFERENCE_RULES = ClipRules()


@dataclass(frozen=True)
class ClipHeader:
    """What a clip's container says of it, before any sample is decoded."""

    sample_rate: int
    channels: int
    frames: int  # as claimed; UNKNOWN_FRAMES or more when the container does not say
    format: str

    @property
    def length_known(self) -> bool:
        return self.frames < UNKNOWN_FRAMES

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _open(source: AudioSource) -> soundfile.SoundFile:
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    try:
        return soundfile.SoundFile(source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError):
        raise ReferenceAudioError(
            "reference audio cannot be decoded (not a WAV, FLAC, OGG or MP3 file that can be read)"
        ) from None


def read_header(source: AudioSource) -> ClipHeader:
    """The clip's rate, channels and claimed frame count; ``ReferenceAudioError`` if unreadable."""
    with _open(source) as clip:
        return _header(clip)


def _header(clip: soundfile.SoundFile) -> ClipHeader:
    return ClipHeader(int(clip.samplerate), int(clip.channels), max(0, int(clip.frames)), str(clip.format))


def check_header(header: ClipHeader, rules: ClipRules = REFERENCE_RULES, field: str = "ref_audio_path") -> None:
    """The rate must be in range and the claimed length not above the maximum (the minimum is checked
    on the decoded samples: a header may under-state)."""
    if not rules.min_rate <= header.sample_rate <= rules.max_rate:
        raise InvalidRequest(
            f"{field} is sampled at {header.sample_rate} Hz; reference clips must be sampled at "
            f"{rules.min_rate}–{rules.max_rate} Hz",
            code="ref_audio_sample_rate",
        )
    if header.channels < 1:
        raise ReferenceAudioError(f"{field} has no audio channel")
    if not header.length_known:
        # libsndfile cannot read such a file to its end (it fails near it), and would size a whole read
        # by the unknown length: refused rather than guessed.
        raise InvalidRequest(
            f"{field} does not say how long it is (a file written as a stream); save it again as a "
            "complete WAV or FLAC file",
            code="ref_audio_length_unknown",
        )
    if header.frames > rules.max_frames(header.sample_rate):
        raise InvalidRequest(
            f"{field} says it lasts {header.seconds:.2f} s; the reference clip must be {rules.describe_length()}",
            code="ref_audio_length",
        )


def processing_bytes(header: ClipHeader, rules: ClipRules = REFERENCE_RULES) -> int:
    """Memory that decoding this clip and computing its model inputs take at most (float32): the
    decoded mono samples, one decode block, and the clip at a model's rate a few times over
    (resampled, peak-limited, padded for the spectrogram) plus its 16 kHz HuBERT and speaker inputs."""
    frames = min(header.frames, rules.max_frames(header.sample_rate))
    seconds = frames / header.sample_rate
    block = min(frames * header.channels, _block_frames(header.channels) * header.channels)
    return 4 * (frames + block + math.ceil(seconds * (3 * LARGEST_MODEL_RATE + 2 * 16000)))


class ReferenceBudget:
    """The reference memory one request may use, charged clip by clip before each is decoded."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0

    def charge(self, header: ClipHeader, field: str, rules: ClipRules = REFERENCE_RULES) -> None:
        cost = processing_bytes(header, rules)
        if self.used + cost > self.max_bytes:
            mib = 1024 * 1024
            raise TooLarge(
                f"{field}: the reference clips of this request would take {(self.used + cost) / mib:.0f} MiB "
                f"to process; at most {self.max_bytes / mib:.0f} MiB are allowed (fewer, shorter or "
                "lower-rate clips fit)",
                code="reference_budget_exceeded",
            )
        self.used += cost


def _block_frames(channels: int) -> int:
    return max(1, DECODE_BLOCK_SAMPLES // max(1, channels))


def decode_clip(
    source: AudioSource,
    rules: ClipRules = REFERENCE_RULES,
    field: str = "ref_audio_path",
    budget: ReferenceBudget | None = None,
) -> tuple[np.ndarray, int]:
    """A clip's mono float32 samples and rate, checked against ``rules`` before and while decoding.

    Integer PCM is scaled as upstream reads it (int16 / 32768); channels are averaged to mono, as
    both of upstream's readers do for stereo."""
    with _open(source) as clip:
        header = _header(clip)
        check_header(header, rules, field)
        if budget is not None:
            budget.charge(header, field, rules)
        limit = rules.max_frames(header.sample_rate)
        block = _block_frames(header.channels)
        parts, frames = [], 0
        try:
            while True:
                data = clip.read(frames=min(block, limit + 1 - frames), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                parts.append(data[:, 0].copy() if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32))
                frames += data.shape[0]
                if frames > limit:
                    raise InvalidRequest(
                        f"{field} lasts more than {rules.max_seconds:g} s; "
                        f"the reference clip must be {rules.describe_length()}",
                        code="ref_audio_length",
                    )
        except (soundfile.LibsndfileError, RuntimeError):
            raise ReferenceAudioError(f"{field} cannot be decoded (its audio data is damaged)") from None
    if frames == 0:
        raise ReferenceAudioError(f"{field}: reference audio is empty")
    samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return np.ascontiguousarray(samples, dtype=np.float32), header.sample_rate
