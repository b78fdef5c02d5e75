"""A loaded voice: the GPT and SoVITS models of one weight pair, plus the shared models they use.

- :class:`SharedModels`: HuBERT (prompt codes), the Chinese BERT (phone features) and, for v2Pro /
  v2ProPlus, the ERes2NetV2 speaker encoder. They do not depend on the voice, so one instance serves
  every voice of a process (the service caches it; :func:`load_shared_models` builds it).
- :class:`Voice`: a T2S model, a decoder and the shared models, with what the pipeline asks of them:
  the reference's prompt codes and conditioning (cached per reference, as upstream caches its last
  reference) and the decoding of semantic tokens into audio fragments.

The decoder sits behind :class:`FragmentDecoder` so that the v3/v4 family (CFM + vocoder, a later
issue) slots in without touching the pipeline.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import torch

from app.engine import audio_features
from app.engine.checkpoints import CheckpointError, load_checkpoint, read_header, weights_of
from app.engine.jobs import ReferenceAudio
from app.engine.models.hubert import HubertEncoder
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SModel
from app.engine.registry import BERT_DIR, HUBERT_DIR, SV_CHECKPOINT, sovits_version_from_file
from app.engine.text.bert import BertFeatureExtractor

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


def load_shared_models(
    weights_root: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    with_speaker_encoder: bool = False,
) -> SharedModels:
    """HuBERT, BERT (and the speaker encoder) from their upstream paths under ``weights_root``."""
    root = Path(weights_root)
    return SharedModels(
        hubert=HubertEncoder.from_pretrained(root / HUBERT_DIR, device=device, dtype=dtype),
        bert=BertFeatureExtractor(root / BERT_DIR, device=device, half=dtype == torch.float16),
        speaker=load_speaker_encoder(root, device, dtype) if with_speaker_encoder else None,
    )


def load_speaker_encoder(
    weights_root: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> SpeakerEncoder:
    return SpeakerEncoder.from_checkpoint(Path(weights_root) / SV_CHECKPOINT, device=device, dtype=dtype)


@dataclass(frozen=True)
class ReferenceConditioning:
    """What the decoder needs from one reference clip."""

    spectrogram: torch.Tensor  # [1, bins, frames] at the model rate, float32
    speaker_embedding: torch.Tensor | None  # [1, 20480] for v2Pro/v2ProPlus, else None


class FragmentDecoder(Protocol):
    """Semantic tokens of each text piece → one waveform per piece (float, [-1, 1]-ish)."""

    sample_rate: int  # rate of the waveforms it returns

    def fragments(
        self,
        tokens: Sequence[torch.Tensor],
        phones: Sequence[torch.Tensor],
        references: Sequence[ReferenceConditioning],
        *,
        speed: float,
        noise_scale: float,
        generator: torch.Generator | None,
    ) -> list[torch.Tensor]: ...


class SoVITSDecoder:
    """v1/v2/v2Pro/v2ProPlus: the SoVITS synthesizer decodes tokens straight to audio."""

    def __init__(self, model: SoVITSSynthesizer):
        self.model = model
        self.sample_rate = model.config.sampling_rate

    def fragments(
        self,
        tokens: Sequence[torch.Tensor],
        phones: Sequence[torch.Tensor],
        references: Sequence[ReferenceConditioning],
        *,
        speed: float,
        noise_scale: float,
        generator: torch.Generator | None,
    ) -> list[torch.Tensor]:
        specs = [r.spectrogram for r in references]
        embeddings = None
        if self.model.config.uses_speaker_embedding:
            embeddings = [r.speaker_embedding for r in references]

        def decode(codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            audio = self.model.decode(
                codes.view(1, 1, -1),
                ids.view(1, -1),
                specs,
                speed=speed,
                sv_embs=embeddings,
                noise_scale=noise_scale,
                generator=generator,
            )
            return audio[0, 0]

        if speed != 1.0:
            return [decode(t, p) for t, p in zip(tokens, phones, strict=True)]
        # Upstream quirk kept on purpose (its "parallel synthesis"): at speed 1 the pieces of a batch
        # are decoded as ONE utterance (tokens and phones concatenated) and the waveform is cut back
        # into pieces by token count. Each piece's audio therefore hears its neighbours' phones.
        audio = decode(torch.cat(list(tokens)), torch.cat(list(phones)))
        per_code = self.model.config.samples_per_code
        pieces, start = [], 0
        for t in tokens:
            end = start + t.shape[0] * per_code
            pieces.append(audio[start:end])
            start = end
        return pieces


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
    """One GPT + SoVITS pair ready to synthesise. Build with :meth:`load`."""

    def __init__(
        self,
        t2s: T2SModel,
        sovits: SoVITSSynthesizer,
        shared: SharedModels,
        spectrogram_config: audio_features.SpectrogramConfig,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        name: str = "voice",
    ):
        if sovits.config.uses_speaker_embedding and shared.speaker is None:
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
        self.decoder: FragmentDecoder = SoVITSDecoder(sovits)
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = name
        self._prompt_codes = _LRU(REFERENCE_CACHE_SIZE)
        self._conditioning = _LRU(REFERENCE_CACHE_SIZE)

    @classmethod
    def load(
        cls,
        weights_root: str | Path,
        gpt_path: str | Path,
        sovits_path: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        shared: SharedModels | None = None,
    ) -> Voice:
        """Load a voice. ``shared`` (HuBERT/BERT/speaker encoder) is reused when given, else loaded from
        ``weights_root``; a missing speaker encoder is loaded there when the SoVITS model needs one."""
        sovits_path = Path(sovits_path)
        version = sovits_version_from_file(sovits_path)
        if version.uses_vocoder:
            raise VoiceLoadError(
                f"{sovits_path.name} is a {version.model} model; v3/v4 are not supported yet"
            )
        checkpoint = load_checkpoint(sovits_path)
        hparams = checkpoint.get("config") or {}
        sovits = SoVITSSynthesizer.from_state_dict(
            weights_of(checkpoint, sovits_path), hparams, read_header(sovits_path), source=sovits_path
        ).to(device=device, dtype=dtype)
        del checkpoint
        try:
            spectrogram_config = audio_features.SpectrogramConfig.from_sovits_config(hparams)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(sovits_path, f"has no usable data config ({exc})") from None
        t2s = T2SModel.from_checkpoint(gpt_path, device=device, dtype=dtype)
        needs_speaker = sovits.config.uses_speaker_embedding
        if shared is None:
            shared = load_shared_models(weights_root, device, dtype, with_speaker_encoder=needs_speaker)
        elif needs_speaker and shared.speaker is None:
            shared = SharedModels(
                shared.hubert, shared.bert, load_speaker_encoder(weights_root, device, dtype)
            )
        name = f"{Path(gpt_path).name}+{sovits_path.name}"
        log.info("voice %s loaded (%s, %s, %s)", name, sovits.config.version, device, dtype)
        return cls(t2s, sovits, shared, spectrogram_config, device=device, dtype=dtype, name=name)

    # ------------------------------------------------------------------ facts

    @property
    def model_version(self) -> str:
        """v1, v2, v2Pro or v2ProPlus."""
        return self.sovits.config.version

    @property
    def text_version(self) -> str:
        """The symbol table the text frontend must use: v1 for v1 models, v2 for every later one."""
        return "v1" if self.model_version == "v1" else "v2"

    @property
    def sample_rate(self) -> int:
        return self.decoder.sample_rate

    @property
    def model_sample_rate(self) -> int:
        """The SoVITS model's rate (upstream sizes the pauses between fragments with it)."""
        return self.sovits.config.sampling_rate

    # ------------------------------------------------------------------ references

    def check_reference(self, reference: ReferenceAudio) -> None:
        """Refuse a main reference outside 3-10 s (ReferenceAudioError), as upstream always does."""
        audio_features.hubert_input(reference.samples, reference.sample_rate, self.model_sample_rate)

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
            if not self.sovits.config.uses_speaker_embedding:
                spec = audio_features.spectrogram(
                    reference.samples, reference.sample_rate, spec_config, device=self.device
                )
                return ReferenceConditioning(spec, None)
            spec, wav16k = audio_features.reference_spec_and_sv_input(
                reference.samples, reference.sample_rate, spec_config, device=self.device
            )
            assert self.shared.speaker is not None  # checked in __init__
            with torch.inference_mode():
                embedding = self.shared.speaker.embed(wav16k)
            return ReferenceConditioning(spec, embedding)

        return self._conditioning.get_or_compute(reference.digest, compute)
