"""Decoders: semantic tokens of each text piece -> one waveform per piece, behind ONE interface.

- :class:`SoVITSDecoder` (v1, v2, v2Pro, v2ProPlus): the SoVITS synthesizer decodes tokens straight to
  audio, conditioned on every reference's spectrogram (and speaker embedding for Pro models).
- :class:`VocoderDecoder` (v3, v4): SoVITS content features -> flow-matching sampler (a mel continuing
  the reference's) -> vocoder. Upstream: ``TTS.using_vocoder_synthesis`` (sequential) and
  ``using_vocoder_synthesis_batched_infer`` (parallel_infer).

Both are called as ``decoder.fragments(tokens, phones, references, settings)``; what differs between
the families is stated as facts on the decoder (:class:`DecoderTraits`), which the request planning
reads, so nothing above this module branches on a decoder's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.sovits_v3 import SoVITSV3, denorm_spec
from app.engine.models.vocoders import BigVGANVocoder, HiFiGANVocoderV4
from app.engine.streaming import SOLA_SEARCH, ChunkDecoder, align_and_blend

Vocoder = BigVGANVocoder | HiFiGANVocoderV4


@dataclass(frozen=True)
class ReferenceConditioning:
    """What a decoder needs from one reference clip."""

    spectrogram: torch.Tensor  # [1, bins, frames] at the model rate, float32
    speaker_embedding: torch.Tensor | None  # [1, 20480] for v2Pro/v2ProPlus, else None
    # v3/v4: the reference's normalised mel [1, 100, frames] (v3: 24 kHz, v4: 32 kHz), the sampler's prompt
    mel: torch.Tensor | None = None


@dataclass(frozen=True)
class DecodeSettings:
    """Everything a decoder call needs besides tokens, phones and references. Each decoder reads the
    fields that apply to it (the SoVITS decoder has no prompt or sampler; the vocoder decoder no noise)."""

    speed: float
    noise_scale: float  # SoVITS's sampling noise (upstream: 0.5)
    generator: torch.Generator | None
    prompt_codes: torch.Tensor | None = None  # [P] semantic codes of the main reference
    prompt_phone_ids: Sequence[int] = ()  # phones of the prompt text
    sample_steps: int = 32  # flow-matching steps
    batched: bool = True  # upstream's parallel_infer: all pieces of a GPT batch in one sampler call


@dataclass(frozen=True)
class DecoderTraits:
    """How a decoder family differs, as upstream behaves."""

    needs_prompt_text: bool  # v3/v4 cannot decode without the reference's text (upstream's NO_PROMPT_ERROR)
    uses_aux_references: bool  # v1-v2ProPlus average every reference's timbre; v3/v4 read the main one
    buckets_when_batched: bool  # v3/v4 turn split_bucket off in parallel mode (pieces stay in text order)
    streams_tokens: bool  # decodes chunks of tokens (streaming modes 2/3); v3/v4 fall back to mode 1


class Decoder(Protocol):
    sample_rate: int  # rate of the waveforms it returns
    traits: DecoderTraits

    def fragments(
        self,
        tokens: Sequence[torch.Tensor],
        phones: Sequence[torch.Tensor],
        references: Sequence[ReferenceConditioning],
        settings: DecodeSettings,
    ) -> list[torch.Tensor]: ...


class SoVITSDecoder:
    """v1/v2/v2Pro/v2ProPlus: the SoVITS synthesizer decodes tokens straight to audio."""

    traits = DecoderTraits(
        needs_prompt_text=False, uses_aux_references=True, buckets_when_batched=True, streams_tokens=True
    )

    def __init__(self, model: SoVITSSynthesizer):
        self.model = model
        self.sample_rate = model.config.sampling_rate

    def fragments(
        self,
        tokens: Sequence[torch.Tensor],
        phones: Sequence[torch.Tensor],
        references: Sequence[ReferenceConditioning],
        settings: DecodeSettings,
    ) -> list[torch.Tensor]:
        specs, embeddings = self._conditioning(references)

        def decode(codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            audio = self.model.decode(
                codes.view(1, 1, -1),
                ids.view(1, -1),
                specs,
                speed=settings.speed,
                sv_embs=embeddings,
                noise_scale=settings.noise_scale,
                generator=settings.generator,
            )
            return audio[0, 0]

        if settings.speed != 1.0:
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

    def samples_per_token(self, speed: float) -> float:
        return self.model.config.samples_per_code / speed

    def chunk_decoder(
        self, phones: torch.Tensor, references: Sequence[ReferenceConditioning], settings: DecodeSettings
    ) -> ChunkDecoder:
        """Streaming: a function decoding the chunks of one piece (see ``PieceStitcher``)."""
        specs, embeddings = self._conditioning(references)

        def decode(codes: torch.Tensor, keep: int | None, overlap: torch.Tensor | None):
            audio, latent = self.model.decode_streaming(
                codes.view(1, 1, -1),
                phones.view(1, -1),
                specs,
                speed=settings.speed,
                sv_embs=embeddings,
                noise_scale=settings.noise_scale,
                generator=settings.generator,
                keep_codes=keep,
                overlap_latent=overlap,
            )
            return audio[0, 0], latent

        return decode

    def _conditioning(self, references: Sequence[ReferenceConditioning]):
        specs = [r.spectrogram for r in references]
        embeddings = None
        if self.model.config.uses_speaker_embedding:
            embeddings = [r.speaker_embedding for r in references]
        return specs, embeddings


class VocoderDecoder:
    """v3/v4: SoVITS content features -> flow-matching sampler -> vocoder. Only the main reference is
    used: upstream ignores auxiliary references for v3/v4."""

    traits = DecoderTraits(
        needs_prompt_text=True, uses_aux_references=False, buckets_when_batched=False, streams_tokens=False
    )

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
        settings: DecodeSettings,
    ) -> list[torch.Tensor]:
        main = references[0]
        if main.mel is None or settings.prompt_codes is None:
            raise ValueError("v3/v4 decoding needs the reference's mel and the prompt's codes")

        def sample(features: torch.Tensor, mel_prompt: torch.Tensor) -> torch.Tensor:
            # The start noise is drawn from the job's generator inside the sampler.
            return self.model.cfm.inference(
                features,
                torch.LongTensor([features.size(1)]),
                mel_prompt,
                settings.sample_steps,
                generator=settings.generator,
            )

        def piece_features(t: torch.Tensor, p: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
            return self.model.decode_encp(
                t.view(1, 1, -1), p.view(1, -1), main.spectrogram, ge, settings.speed
            )[0]

        # Upstream recomputes the prompt's side per synthesis call: once per batch in batched mode,
        # once per piece otherwise (the same values each time; kept so the calls match upstream's).
        if settings.batched:
            prompt_features, prompt_mel, ge = self._prompt_side(settings, main)
            pieces = [piece_features(t, p, ge) for t, p in zip(tokens, phones, strict=True)]
            return self._batched(pieces, prompt_features, prompt_mel, sample)
        fragments = []
        for t, p in zip(tokens, phones, strict=True):
            prompt_features, prompt_mel, ge = self._prompt_side(settings, main)
            fragments.append(self._sequential(piece_features(t, p, ge), prompt_features, prompt_mel, sample))
        return fragments

    def _prompt_side(
        self, settings: DecodeSettings, main: ReferenceConditioning
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prompt's content features and the reference mel, both cut to the frames both have, then
        to the last ``ref_frames`` (upstream T_ref); and the reference's global embedding."""
        assert main.mel is not None and settings.prompt_codes is not None
        features, ge = self.model.decode_encp(
            settings.prompt_codes.view(1, 1, -1),
            torch.tensor([list(settings.prompt_phone_ids)], dtype=torch.long),
            main.spectrogram,
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


def cross_fade_chunks(chunks: Sequence[torch.Tensor], overlap: int, search: int = SOLA_SEARCH) -> torch.Tensor:
    """Join audio chunks that overlap by ``overlap`` samples (upstream's ``sola_algorithm``): each
    chunk is aligned to and cross-faded with its predecessor's tail (:func:`align_and_blend`), which
    loses its overlapping part."""
    if not chunks:
        return torch.zeros(0)
    dtype = chunks[0].dtype
    joined = [chunks[0].float()]
    for nxt in chunks[1:]:
        _, blended = align_and_blend(joined[-1], nxt, overlap, search)
        joined[-1] = joined[-1][:-overlap]
        joined.append(blended)
    return torch.cat(joined, 0).to(dtype)
