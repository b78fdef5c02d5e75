"""What one synthesis request is, as plain data: :class:`SynthesisJob`, :class:`ReferenceAudio`, and the
one set of defaults and bounds every surface uses.

A job is built by a client surface (REST, web UI, other APIs) and read by the engine. It holds no models
and no tensors, only the request: texts, language and cut-method codes, the reference audio and every
upstream parameter. Its field defaults ARE the service's defaults: upstream's fast web UI
(``inference_webui_fast.py``: top_k 5, cut1, batch 20 ...), plus ``batch_threshold`` from upstream's
API. The HTTP schemas read them from here (:func:`job_defaults`) rather than repeating them, and
:data:`PARAMETER_BOUNDS` is the one place the accepted ranges are written down (checked by
``app.engine.planning``; published by the schemas).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from app.engine.reference_clips import AudioSource, ReferenceBudget, decode_clip

# Cut methods by code (upstream's text_split_method values).
CUT_METHODS: tuple[str, ...] = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")
# Flow-matching step counts upstream's UI offers (v3/v4).
SAMPLE_STEPS: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
MAX_SEED = 2**32 - 1  # upstream draws random seeds in [0, 2**32 - 1]


@dataclass(frozen=True)
class Bounds:
    """An accepted closed range (``low`` excluded when ``low_exclusive``)."""

    low: float
    high: float
    low_exclusive: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_exclusive else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        return f"{'(' if self.low_exclusive else '['}{self.low:g}, {self.high:g}]"


PARAMETER_BOUNDS: dict[str, Bounds] = {
    "top_k": Bounds(1, 100),
    "top_p": Bounds(0.0, 1.0),
    "temperature": Bounds(0.0, 2.0, low_exclusive=True),  # upstream divides by it
    "batch_size": Bounds(1, 200),
    "speed_factor": Bounds(0.25, 4.0),
    "fragment_interval": Bounds(0.01, 5.0),
    "seed": Bounds(-1, MAX_SEED),
    "repetition_penalty": Bounds(0.0, 2.0),
    "batch_threshold": Bounds(0.0, 1.0),
    "streaming_mode": Bounds(0, 3),
    # At least one token of overlap: upstream holds back ``overlap_length`` tokens' worth of audio per
    # chunk and would emit nothing with 0.
    "overlap_length": Bounds(1, 20),
    "min_chunk_length": Bounds(1, 200),
}


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
    def decode(
        cls,
        source: AudioSource,
        field: str = "ref_audio_path",
        budget: ReferenceBudget | None = None,
    ) -> ReferenceAudio:
        """From a path, raw file bytes (WAV, FLAC, OGG ...) or a binary file object, within the
        reference rules (``app.engine.reference_clips``): a clip that breaks them, or cannot be
        decoded, is refused before its samples are read."""
        samples, sample_rate = decode_clip(source, field=field, budget=budget)
        return cls(samples, sample_rate)

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    @cached_property
    def digest(self) -> str:
        """Identity of the clip's content, for caching what is computed from it."""
        h = hashlib.sha256(str(self.sample_rate).encode())
        h.update(self.samples.tobytes())
        return h.hexdigest()


def as_reference(
    source: ReferenceAudio | AudioSource, field: str = "ref_audio_path", budget: ReferenceBudget | None = None
) -> ReferenceAudio:
    return source if isinstance(source, ReferenceAudio) else ReferenceAudio.decode(source, field, budget)


@dataclass
class SynthesisJob:
    """One request. Languages are API codes (``all_zh``, ``en``, ``zh``, ``auto`` ...), cut methods ``cut0``..``cut5``.

    The 21 parameters of upstream's ``inference`` (UI defaults): text, text_lang, ref_audio,
    aux_ref_audios, prompt_text, prompt_lang, top_k, top_p, temperature, text_split_method, batch_size,
    speed_factor, ref_text_free, split_bucket, fragment_interval, seed, keep_random, parallel_infer,
    repetition_penalty, sample_steps, super_sampling. The rules that apply to them are in
    ``app.engine.planning``.
    """

    text: str
    ref_audio: ReferenceAudio | bytes
    text_lang: str = "all_zh"
    prompt_text: str = ""
    prompt_lang: str = "all_zh"
    aux_ref_audios: list[ReferenceAudio | bytes] = field(default_factory=list)
    top_k: int = 5
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
    # Not in the UI: upstream's API parameter for bucketing.
    batch_threshold: float = 0.75
    # Streaming (upstream api_v2's ``streaming_mode``): 0 the whole answer at once; 1 one chunk per GPT
    # batch of pieces; 2 token chunks cut after "mute-like" semantic tokens; 3 fixed-length token chunks.
    streaming_mode: int = 0
    overlap_length: int = 2  # modes 2/3: tokens of latent overlap between consecutive chunk decodes
    min_chunk_length: int = 16  # modes 2/3: tokens a chunk holds at least

    @property
    def uses_prompt_text(self) -> bool:
        """Whether the prompt text (and with it the reference's semantic codes) conditions the GPT."""
        return not self.ref_text_free and bool(self.prompt_text.strip("\n"))

    @property
    def requested_seed(self) -> int:
        """The seed asked for; -1 means "draw one" (keep_random forces that, as upstream's UI does)."""
        return -1 if self.keep_random else int(self.seed)


def job_defaults() -> dict[str, Any]:
    """Every job parameter that has a default, with it: the service's one set of defaults."""
    return {
        f.name: f.default for f in dataclasses.fields(SynthesisJob) if f.default is not dataclasses.MISSING
    }
