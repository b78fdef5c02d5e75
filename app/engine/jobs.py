"""What one synthesis request needs, as plain data: :class:`SynthesisJob` and :class:`ReferenceAudio`.

A job is built by the service side (routers/scheduler) and read by :func:`app.engine.pipeline.synthesize`.
It holds no models and no tensors, only the request: texts, language and cut-method codes, the reference
audio and every upstream parameter.

Defaults are those of upstream's synthesis UI (``inference_webui_fast.py``; its ``inference`` function
takes the 21 parameters listed on :class:`SynthesisJob`), plus ``batch_threshold`` from upstream's API
and the SoVITS ``noise_scale`` that upstream hard-codes to 0.5.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from app.engine.audio_features import AudioSource, load_reference

# Cut methods by code (upstream's text_split_method values).
CUT_METHODS: tuple[str, ...] = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")


class SynthesisCancelled(Exception):
    """The job was stopped (``should_stop`` returned True) before its audio was complete."""


@dataclass(frozen=True, eq=False)
class ReferenceAudio:
    """A decoded reference clip: mono float32 samples (int16 PCM read as int16 / 32768) and their rate."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.ascontiguousarray(np.asarray(self.samples, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "samples", samples)
        if samples.size == 0:
            raise ValueError("reference audio is empty")
        if self.sample_rate <= 0:
            raise ValueError(f"invalid sample rate {self.sample_rate}")

    @classmethod
    def decode(cls, source: AudioSource) -> ReferenceAudio:
        """From a path, raw file bytes (WAV, FLAC, OGG ...) or a binary file object.

        Raises ``audio_features.ReferenceAudioError`` when it cannot be decoded."""
        samples, sample_rate = load_reference(source)
        return cls(samples, sample_rate)

    @cached_property
    def digest(self) -> str:
        """Identity of the clip's content, for caching what is computed from it."""
        h = hashlib.sha256(str(self.sample_rate).encode())
        h.update(self.samples.tobytes())
        return h.hexdigest()


def as_reference(source: ReferenceAudio | AudioSource) -> ReferenceAudio:
    return source if isinstance(source, ReferenceAudio) else ReferenceAudio.decode(source)


@dataclass
class SynthesisJob:
    """One request. Languages are API codes (``all_zh``, ``en``, ``zh``, ``auto`` ...), cut methods ``cut0``..``cut5``.

    The 21 parameters of upstream's ``inference`` (UI defaults): text, text_lang, ref_audio,
    aux_ref_audios, prompt_text, prompt_lang, top_k, top_p, temperature, text_split_method, batch_size,
    speed_factor, ref_text_free, split_bucket, fragment_interval, seed, keep_random, parallel_infer,
    repetition_penalty, sample_steps, super_sampling.
    """

    text: str
    text_lang: str
    ref_audio: ReferenceAudio | bytes
    prompt_text: str = ""
    prompt_lang: str = "all_zh"
    aux_ref_audios: list[ReferenceAudio | bytes] = field(default_factory=list)
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    text_split_method: str = "cut1"
    batch_size: int = 20
    speed_factor: float = 1.0
    # Ignore the prompt text: decode without the reference's phones and semantic codes.
    ref_text_free: bool = False
    split_bucket: bool = True
    fragment_interval: float = 0.3  # seconds of silence after every fragment
    seed: int = -1  # -1: draw a random seed (the result reports the one used)
    keep_random: bool = True  # upstream's UI checkbox: True ignores ``seed`` and draws a random one
    parallel_infer: bool = True
    repetition_penalty: float = 1.35
    sample_steps: int = 32  # v3/v4 only
    super_sampling: bool = False  # v3 only
    # Not in the UI: upstream's API parameter for bucketing, and the SoVITS sampling noise.
    batch_threshold: float = 0.75
    noise_scale: float = 0.5

    def __post_init__(self) -> None:
        if self.text_split_method not in CUT_METHODS:
            raise ValueError(f"unknown cut method {self.text_split_method!r}; expected one of {CUT_METHODS}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.speed_factor <= 0:
            raise ValueError("speed_factor must be positive")
        if self.fragment_interval < 0:
            raise ValueError("fragment_interval cannot be negative")
        if self.noise_scale < 0:
            raise ValueError("noise_scale cannot be negative")

    @property
    def uses_prompt_text(self) -> bool:
        """Whether the prompt text (and with it the reference's semantic codes) conditions the GPT."""
        return not self.ref_text_free and bool(self.prompt_text.strip("\n"))

    @property
    def requested_seed(self) -> int:
        """The seed asked for; -1 means "draw one" (keep_random forces that, as upstream's UI does)."""
        return -1 if self.keep_random else int(self.seed)
