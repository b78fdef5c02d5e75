"""A loaded voice: the GPT and decoder of one weight pair, plus the shared models they use.

- :class:`SharedModels`: HuBERT (prompt codes), the Chinese BERT (phone features) and, for v2Pro /
  v2ProPlus, the ERes2NetV2 speaker encoder. They do not depend on the voice, so one instance serves
  every voice of a process (the model manager loads it once).
- :class:`Voice`: a T2S model, a decoder (``app.engine.decoders``) and the shared models, with what the
  pipeline asks of them: the reference's prompt codes and conditioning, cached per reference (upstream
  caches its last reference).

Voices are built in one place only, ``app.engine.model_manager.ModelManager.voice``: the service,
the tests and the benchmarks all get theirs from there.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import torch

from app.engine import audio_features
from app.engine.decoders import Decoder, ReferenceConditioning, SoVITSDecoder, Vocoder, VocoderDecoder
from app.engine.jobs import ReferenceAudio
from app.engine.models.hubert import HubertEncoder
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.sovits_v3 import SoVITSV3, mel_spectrogram, norm_spec
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SModel
from app.engine.streaming import mute_similarity
from app.engine.text.bert import BertFeatureExtractor
from app.engine.text.symbols import text_version

log = logging.getLogger(__name__)

T = TypeVar("T")

# Distinct references whose features a voice keeps (upstream keeps one).
REFERENCE_CACHE_SIZE = 8


class VoiceLoadError(ValueError):
    """The weight files cannot form a voice (unsupported version, or GPT and SoVITS do not fit)."""


@dataclass
class SharedModels:
    hubert: HubertEncoder
    bert: BertFeatureExtractor
    speaker: SpeakerEncoder | None = None  # needed by v2Pro/v2ProPlus voices only


class _LRU:
    """A tiny thread-safe least-recently-used map of computed values."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: collections.OrderedDict[Hashable, object] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


class Voice:
    """One GPT + SoVITS pair ready to synthesise. Built by the model manager
    (``app.engine.model_manager.ModelManager.voice``), the one place voices are made."""

    def __init__(
        self,
        t2s: T2SModel,
        sovits: SoVITSSynthesizer | SoVITSV3,
        shared: SharedModels,
        spectrogram_config: audio_features.SpectrogramConfig,
        *,
        vocoder: Vocoder | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        name: str = "voice",
    ):
        """``vocoder``: required for (and only used by) a v3/v4 SoVITS model."""
        self.uses_speaker_embedding = (
            isinstance(sovits, SoVITSSynthesizer) and sovits.config.uses_speaker_embedding
        )
        if self.uses_speaker_embedding and shared.speaker is None:
            raise VoiceLoadError(f"{sovits.config.version} models need the speaker-verification model")
        if t2s.config.phone_vocab_size < sovits.config.n_symbols:
            raise VoiceLoadError(
                f"the GPT model knows {t2s.config.phone_vocab_size} phones but the SoVITS model's symbol "
                f"table has {sovits.config.n_symbols}: they are not from the same model version"
            )
        self.t2s = t2s
        self.sovits = sovits
        self.shared = shared
        self.spectrogram_config = spectrogram_config  # the SoVITS checkpoint's data settings
        self.decoder: Decoder
        if isinstance(sovits, SoVITSV3):
            if vocoder is None:
                raise VoiceLoadError(f"{sovits.config.version} models need their vocoder")
            self.decoder = VocoderDecoder(sovits, vocoder)
        else:
            self.decoder = SoVITSDecoder(sovits)
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = name
        self._prompt_codes = _LRU(REFERENCE_CACHE_SIZE)
        self._conditioning = _LRU(REFERENCE_CACHE_SIZE)

    # ------------------------------------------------------------------ facts

    @property
    def model_version(self) -> str:
        """v1, v2, v2Pro, v2ProPlus, v3 or v4."""
        return self.sovits.config.version

    @property
    def text_version(self) -> str:
        """The symbol table the text frontend must use."""
        return text_version(self.model_version)

    @property
    def sample_rate(self) -> int:
        return self.decoder.sample_rate

    @property
    def model_sample_rate(self) -> int:
        """The SoVITS model's rate (upstream sizes the pauses between fragments with it)."""
        return self.spectrogram_config.sampling_rate

    @functools.cached_property
    def mute_similarity(self) -> torch.Tensor:
        """How silence-like each semantic code is (streaming mode 2's cut rule), computed once."""
        return mute_similarity(self.t2s.semantic_embedding.weight)

    # ------------------------------------------------------------------ references

    def prompt_codes(self, reference: ReferenceAudio) -> torch.Tensor:
        """The reference's semantic codes ``[P]`` (HuBERT → SoVITS quantizer), cached per clip."""

        def compute() -> torch.Tensor:
            wav16k = audio_features.hubert_input(
                reference.samples, reference.sample_rate, self.model_sample_rate, device=self.device
            )
            with torch.inference_mode():
                features = self.shared.hubert(wav16k).transpose(1, 2)
                return self.sovits.encode_prompt(features)[0, 0]

        return self._prompt_codes.get_or_compute(reference.digest, compute)

    def conditioning(self, reference: ReferenceAudio) -> ReferenceConditioning:
        """Spectrogram (and speaker embedding for Pro models) of a reference, cached per clip."""

        def compute() -> ReferenceConditioning:
            spec_config = self.spectrogram_config
            if not self.uses_speaker_embedding:
                spec = audio_features.spectrogram(
                    reference.samples, reference.sample_rate, spec_config, device=self.device
                )
                mel = self._reference_mel(reference) if isinstance(self.sovits, SoVITSV3) else None
                return ReferenceConditioning(spec, None, mel)
            spec, wav16k = audio_features.reference_spec_and_sv_input(
                reference.samples, reference.sample_rate, spec_config, device=self.device
            )
            assert self.shared.speaker is not None  # checked in __init__
            with torch.inference_mode():
                embedding = self.shared.speaker.embed(wav16k)
            return ReferenceConditioning(spec, embedding)

        return self._conditioning.get_or_compute(reference.digest, compute)

    def _reference_mel(self, reference: ReferenceAudio) -> torch.Tensor:
        """v3/v4 sampler prompt: the clip as decoded (no peak limiting, unlike the spectrogram's input)
        resampled to the mel rate, its log-mel, normalised."""
        assert isinstance(self.sovits, SoVITSV3)
        mel_config = self.sovits.config.variant.mel
        audio = torch.as_tensor(reference.samples, dtype=torch.float32, device=self.device).reshape(1, -1)
        audio = audio_features.resample_sinc(audio, reference.sample_rate, mel_config.sampling_rate)
        with torch.inference_mode():
            return norm_spec(mel_spectrogram(audio, mel_config))
