"""A loaded voice: the GPT and SoVITS models of one weight pair, plus the shared models they use.

- :class:`SharedModels`: HuBERT (prompt codes), the Chinese BERT (phone features) and, for v2Pro /
  v2ProPlus, the ERes2NetV2 speaker encoder. They do not depend on the voice, so one instance serves
  every voice of a process (the service caches it; :func:`load_shared_models` builds it).
- :class:`Voice`: a T2S model, a decoder and the shared models, with what the pipeline asks of them:
  the reference's prompt codes and conditioning (cached per reference, as upstream caches its last
  reference) and the decoding of semantic tokens into audio fragments.

The decoder sits behind :class:`FragmentDecoder`: :class:`SoVITSDecoder` for v1-v2ProPlus (SoVITS decodes
audio itself) and :class:`VocoderDecoder` for v3/v4 (SoVITS content features -> flow-matching sampler ->
mel -> vocoder), so both families go through the same pipeline.
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
import torch.nn.functional as F

from app.engine import audio_features
from app.engine.checkpoints import CheckpointError, load_checkpoint, read_header, weights_of
from app.engine.jobs import ReferenceAudio
from app.engine.models.hubert import HubertEncoder
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.sovits_v3 import SoVITSV3, denorm_spec, mel_spectrogram, norm_spec
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SModel
from app.engine.models.vocoders import BigVGANVocoder, HiFiGANVocoderV4
from app.engine.registry import (
    BERT_DIR,
    BIGVGAN_V3_DIR,
    HUBERT_DIR,
    PRETRAINED_SOVITS,
    SV_CHECKPOINT,
    VOCODER_V4,
    ModelVersion,
    sovits_version_from_file,
)
from app.engine.text.bert import BertFeatureExtractor

log = logging.getLogger(__name__)

T = TypeVar("T")

Vocoder = BigVGANVocoder | HiFiGANVocoderV4
# Called once per sampler call with the start noise's shape; returns that noise (tests replay upstream's).
StartNoise = Callable[[tuple[int, ...]], torch.Tensor]

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
    # v3/v4: the reference's normalised mel [1, 100, frames] (v3: 24 kHz, v4: 32 kHz), the sampler's prompt
    mel: torch.Tensor | None = None


def load_sovits(
    path: str | Path,
    version: ModelVersion,
    weights_root: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[SoVITSSynthesizer | SoVITSV3, audio_features.SpectrogramConfig]:
    """Load a SoVITS file of a detected ``version`` and the spectrogram settings of its config.

    v3/v4: a LoRA file is merged into its base at the version's pretrained path under ``weights_root``.
    Raises CheckpointError (naming the file) for anything that does not load strictly.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("config") or {}
    model: SoVITSSynthesizer | SoVITSV3
    if version.uses_vocoder:
        del checkpoint  # SoVITSV3 reads the file (and a LoRA's base) itself
        base = Path(weights_root) / PRETRAINED_SOVITS[version.model] if version.is_lora else None
        model = SoVITSV3.from_checkpoint(path, base, version=version.model)
    else:
        model = SoVITSSynthesizer.from_state_dict(
            weights_of(checkpoint, path), hparams, read_header(path), source=path, detected=version.model
        )
        del checkpoint
    try:
        spectrogram = audio_features.SpectrogramConfig.from_sovits_config(hparams)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"has no usable data config ({exc})") from None
    return model.to(device=device, dtype=dtype), spectrogram


def load_vocoder(
    weights_root: str | Path,
    model_version: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Vocoder:
    """The vocoder of a v3 (BigVGAN, 24 kHz) or v4 (HiFi-GAN, 48 kHz) voice, from its upstream path."""
    root = Path(weights_root)
    if model_version == "v3":
        return BigVGANVocoder.from_pretrained(root / BIGVGAN_V3_DIR, device=device, dtype=dtype)
    if model_version == "v4":
        return HiFiGANVocoderV4.from_checkpoint(root / VOCODER_V4, device=device, dtype=dtype)
    raise ValueError(f"{model_version} models use no vocoder")


@dataclass(frozen=True)
class VocoderPrompt:
    """What the v3/v4 decoder needs from the job besides the tokens: the GPT prompt's semantic codes and
    phones (their content features lead every sampler call), the step count and the chunking mode."""

    codes: torch.Tensor  # [P] semantic codes of the main reference
    phone_ids: list[int]  # phones of the prompt text
    sample_steps: int
    batched: bool  # upstream's parallel_infer: all pieces of a GPT batch in one sampler call
    start_noise: StartNoise | None = None  # None: drawn from the job's generator


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


class VocoderDecoder:
    """v3/v4: SoVITS content features -> flow-matching sampler (a mel continuing the reference's) ->
    vocoder. Upstream: ``TTS.using_vocoder_synthesis`` (sequential) and
    ``using_vocoder_synthesis_batched_infer`` (parallel_infer). Only the main reference is used:
    upstream ignores auxiliary references for v3/v4."""

    def __init__(self, model: SoVITSV3, vocoder: Vocoder):
        self.model = model
        self.vocoder = vocoder
        self.variant = model.config.variant
        self.sample_rate = vocoder.sample_rate

    def fragments(
        self,
        tokens: Sequence[torch.Tensor],
        phones: Sequence[torch.Tensor],
        references: Sequence[ReferenceConditioning],
        *,
        speed: float,
        noise_scale: float,  # unused: the sampler's randomness is its start noise
        generator: torch.Generator | None,
        prompt: VocoderPrompt,
    ) -> list[torch.Tensor]:
        main = references[0]
        if main.mel is None:
            raise ValueError("v3/v4 synthesis needs the reference's mel (ReferenceConditioning.mel)")

        def sample(features: torch.Tensor, mel_prompt: torch.Tensor) -> torch.Tensor:
            shape = (features.size(0), self.model.cfm.mel_bins, features.size(1))
            noise = None if prompt.start_noise is None else prompt.start_noise(shape)
            return self.model.cfm.inference(
                features,
                torch.LongTensor([features.size(1)]),
                mel_prompt,
                prompt.sample_steps,
                noise=noise,
                generator=generator,
            )

        def piece_features(t: torch.Tensor, p: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
            return self.model.decode_encp(t.view(1, 1, -1), p.view(1, -1), main.spectrogram, ge, speed)[0]

        # Upstream recomputes the prompt's side per synthesis call: once per batch in batched mode,
        # once per piece otherwise (the same values each time; kept so the calls match upstream's).
        if prompt.batched:
            prompt_features, prompt_mel, ge = self._prompt_side(prompt, main)
            pieces = [piece_features(t, p, ge) for t, p in zip(tokens, phones, strict=True)]
            return self._batched(pieces, prompt_features, prompt_mel, sample)
        fragments = []
        for t, p in zip(tokens, phones, strict=True):
            prompt_features, prompt_mel, ge = self._prompt_side(prompt, main)
            fragments.append(self._sequential(piece_features(t, p, ge), prompt_features, prompt_mel, sample))
        return fragments

    def _prompt_side(
        self, prompt: VocoderPrompt, main: ReferenceConditioning
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prompt's content features and the reference mel, both cut to the frames both have, then
        to the last ``ref_frames`` (upstream T_ref); and the reference's global embedding."""
        assert main.mel is not None
        features, ge = self.model.decode_encp(
            prompt.codes.view(1, 1, -1), torch.tensor([prompt.phone_ids], dtype=torch.long), main.spectrogram
        )
        shared = min(main.mel.size(-1), features.size(-1))
        keep = min(shared, self.variant.ref_frames)
        features = features[:, :, :shared][:, :, shared - keep :]
        mel = main.mel[:, :, :shared][:, :, shared - keep :].to(features.dtype)
        return features, mel, ge

    def _sequential(self, features, prompt_features, prompt_mel, sample) -> torch.Tensor:
        """One piece, chunk after chunk; each chunk is prompted by the end of the previous one."""
        chunk_frames = self.variant.chunk_frames - prompt_features.size(-1)  # upstream T_chunk - T_min
        mels = []
        for start in range(0, features.size(-1), chunk_frames):
            chunk = features[:, :, start : start + chunk_frames]
            sampled = sample(torch.cat([prompt_features, chunk], 2).transpose(1, 2), prompt_mel)
            sampled = sampled[:, :, prompt_mel.size(-1) :]
            keep = prompt_features.size(-1)
            prompt_mel, prompt_features = sampled[:, :, -keep:], chunk[:, :, -keep:]
            mels.append(sampled)
        return self._vocode(torch.cat(mels, 2))

    def _batched(self, pieces, prompt_features, prompt_mel, sample) -> list[torch.Tensor]:
        """Every piece of the batch in one sampler call: the pieces' features joined, cut into chunks
        that overlap by ``overlap_frames`` (the last one zero-padded), all prompted by the reference;
        the chunks' audio is cross-faded back together and cut into pieces by frame count."""
        overlap = self.variant.overlap_frames
        chunk_frames = self.variant.chunk_frames - prompt_features.size(-1)
        joined = F.pad(torch.cat(pieces, 2), (overlap, 0))
        chunks, start = [], 0
        while True:
            chunk = joined[:, :, start : start + chunk_frames]
            padding = chunk_frames - chunk.size(-1)  # only the last chunk's padding is trimmed below
            chunks.append(F.pad(chunk, (0, padding)))
            start += chunk_frames - overlap
            if start >= joined.size(-1):
                break
        rows = torch.cat(chunks, 0)
        mu = torch.cat([prompt_features.expand(rows.size(0), -1, -1), rows], 2).transpose(1, 2)
        mel = sample(mu, prompt_mel)[:, :, -chunk_frames:]
        # [chunks, bins, frames] -> [1, bins, chunks * frames], chunk after chunk.
        mel = mel.permute(1, 0, 2).reshape(1, mel.size(1), -1)
        audio = self._vocode(mel)

        hop = self.vocoder.samples_per_frame
        step = chunk_frames * hop
        audio = cross_fade_chunks(
            [audio[i : i + step] for i in range(0, audio.size(-1), step)], overlap * hop
        )
        audio = audio[overlap * hop : audio.size(-1) - padding * hop]
        fragments, start = [], 0
        for piece in pieces:
            fragments.append(audio[start : start + piece.size(-1) * hop])
            start += piece.size(-1) * hop
        return fragments

    def _vocode(self, normalised_mel: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.vocoder(denorm_spec(normalised_mel).to(self._vocoder_dtype))[0, 0]

    @property
    def _vocoder_dtype(self) -> torch.dtype:
        return next(self.vocoder.parameters()).dtype


def cross_fade_chunks(chunks: Sequence[torch.Tensor], overlap: int, search: int = 320) -> torch.Tensor:
    """Join audio chunks that overlap by ``overlap`` samples (upstream's ``sola_algorithm``).

    Each chunk's start is shifted by up to ``search`` samples to where it best matches the previous
    chunk's tail (normalised cross-correlation), then the two are blended over ``overlap`` samples with
    the halves of a Hann window; the previous chunk loses its overlapping tail.
    """
    if not chunks:
        return torch.zeros(0)
    dtype = chunks[0].dtype
    joined = [chunks[0].float()]
    for nxt in chunks[1:]:
        prev, nxt = joined[-1], nxt.float()
        tail = prev[-overlap:]
        window = nxt[: overlap + search]
        correlation = F.conv1d(window.view(1, 1, -1), tail.view(1, 1, -1)).view(-1)
        energy = F.conv1d(window.view(1, 1, -1) ** 2, torch.ones_like(tail).view(1, 1, -1)).view(-1) + 1e-8
        shift = int((correlation / energy.sqrt()).argmax())
        fade = torch.hann_window(2 * overlap, device=nxt.device, dtype=nxt.dtype)
        shifted = nxt[shift:].clone()
        shifted[:overlap] = fade[:overlap] * shifted[:overlap] + fade[overlap:] * tail
        joined[-1] = prev[:-overlap]
        joined.append(shifted)
    return torch.cat(joined, 0).to(dtype)


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
        self.decoder: FragmentDecoder
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
        root = Path(weights_root)
        version = sovits_version_from_file(sovits_path)
        sovits, spectrogram_config = load_sovits(sovits_path, version, root, device, dtype)
        vocoder = load_vocoder(root, version.model, device, dtype) if version.uses_vocoder else None
        t2s = T2SModel.from_checkpoint(gpt_path, device=device, dtype=dtype)
        needs_speaker = isinstance(sovits, SoVITSSynthesizer) and sovits.config.uses_speaker_embedding
        if shared is None:
            shared = load_shared_models(weights_root, device, dtype, with_speaker_encoder=needs_speaker)
        elif needs_speaker and shared.speaker is None:
            shared = SharedModels(
                shared.hubert, shared.bert, load_speaker_encoder(weights_root, device, dtype)
            )
        name = f"{Path(gpt_path).name}+{sovits_path.name}"
        log.info("voice %s loaded (%s, %s, %s)", name, sovits.config.version, device, dtype)
        return cls(
            t2s, sovits, shared, spectrogram_config, vocoder=vocoder, device=device, dtype=dtype, name=name
        )

    # ------------------------------------------------------------------ facts

    @property
    def model_version(self) -> str:
        """v1, v2, v2Pro, v2ProPlus, v3 or v4."""
        return self.sovits.config.version

    @property
    def uses_vocoder(self) -> bool:
        """v3/v4: the decoder samples a mel and a vocoder makes the audio."""
        return isinstance(self.decoder, VocoderDecoder)

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
        return self.spectrogram_config.sampling_rate

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
