"""Streaming synthesis: semantic tokens become audio chunks while the GPT is still decoding.

Upstream's api_v2 ``streaming_mode`` (``TTS.run`` with ``streaming_mode`` / ``return_fragment``):

- 1: one chunk per GPT batch of pieces (the pipeline's batch path, chunk by chunk);
- 2: token chunks cut after "mute-like" semantic tokens (:class:`TokenChunker` with the model's
  :func:`mute_similarity`);
- 3: token chunks of a fixed length (:class:`TokenChunker` without it).

In modes 2 and 3 each chunk of tokens is decoded by :class:`PieceStitcher`: the SoVITS decoder
re-reads every token of the piece so far but synthesises only the new ones (plus a few tokens of
overlap, cross-faded in the latent space), and consecutive waveforms are joined by
:func:`align_and_blend` (upstream's ``sola_algorithm``). What each chunk holds back and re-emits
follows upstream exactly, so the chunk sequence equals upstream's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

MUTE_TOKEN = 486  # the semantic code upstream treats as silence, for every model version
SOLA_SEARCH = 320  # samples a chunk's start may shift to match the previous chunk's tail
SHORT_CHUNK = 10  # a later chunk with fewer tokens overlaps its predecessor by more (see PieceStitcher)


def mute_similarity(semantic_embedding: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every semantic code's GPT embedding to the mute token's ``[vocab]``
    (float32): how silence-like each code is. Mode 2 cuts where it is high."""
    table = semantic_embedding.detach().float()
    return F.cosine_similarity(table[MUTE_TOKEN].unsqueeze(0), table, dim=-1).cpu()


class TokenChunker:
    """Upstream's streaming cut rule for one decoded row, fed one token at a time.

    ``push`` returns a chunk to decode now (or None); ``finish`` returns the final chunk (None when
    nothing is pending). Fixed-length (``similarity`` None): every ``min_chunk`` tokens. Mute cut:
    once ``min_chunk + 2`` tokens are pending, the pending token pair most similar to silence (a
    negative similarity counts -1) is the cut, if it is not too early; the chunk holds every pending
    token but only those up to the cut are consumed, so the 0-2 after it are decoded again at the head
    of the next chunk (upstream's behaviour, kept: the chunk sequence depends on it).
    """

    def __init__(self, min_chunk: int, similarity: torch.Tensor | None = None):
        self.min_chunk = min_chunk
        self.similarity = similarity
        self.tokens: list[int] = []
        self.consumed = 0

    def push(self, token: int) -> list[int] | None:
        self.tokens.append(token)
        pending = self.tokens[self.consumed :]
        if self.similarity is None:
            if len(pending) < self.min_chunk:
                return None
            self.consumed = len(self.tokens)
            return pending
        if len(pending) < self.min_chunk + 2:
            return None
        score = self.similarity[pending].clone()
        score[score < 0] = -1
        score[:-1] = score[:-1] + score[1:]  # a pair of silent tokens is a better cut than one
        cut = int(score.argmax())
        if score[cut] >= 0 and cut + 1 >= self.min_chunk:
            self.consumed += cut + 1
            return pending
        return None

    def finish(self, token: int | None) -> list[int] | None:
        """The row ended; ``token`` is its last token when it is kept (None: the EOS, dropped)."""
        if token is not None:
            self.tokens.append(token)
        pending = self.tokens[self.consumed :]
        return pending or None


def align_and_blend(previous: torch.Tensor, new: torch.Tensor, overlap: int, search: int = SOLA_SEARCH) -> tuple[int, torch.Tensor]:  # fmt: skip
    """One step of upstream's ``sola_algorithm``: the shift (within ``search`` samples) at which
    ``new`` best matches ``previous``'s last ``overlap`` samples (normalised cross-correlation), and
    ``new[shift:]`` (float32) with its first ``overlap`` samples cross-faded with that tail by the
    halves of a Hann window."""
    tail = previous.float()[-overlap:]
    new = new.float()
    window = new[: overlap + search]
    correlation = F.conv1d(window.view(1, 1, -1), tail.view(1, 1, -1)).view(-1)
    energy = F.conv1d(window.view(1, 1, -1) ** 2, torch.ones_like(tail).view(1, 1, -1)).view(-1) + 1e-8
    shift = int((correlation / energy.sqrt()).argmax())
    fade = torch.hann_window(2 * overlap, device=new.device, dtype=new.dtype)
    blended = new[shift:].clone()
    blended[:overlap] = fade[:overlap] * blended[:overlap] + fade[overlap:] * tail
    return shift, blended


# (all codes of the piece so far [n], codes to synthesise (None: all), the previous latent's overlap
# frames or None) -> (waveform [samples], latent [1, hidden, frames])
ChunkDecoder = Callable[[torch.Tensor, int | None, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


class PieceStitcher:
    """Token chunks of one text piece -> audio chunks, as upstream's streaming ``TTS.run`` does.

    ``samples_per_token`` is the decoder's (1280 at 32 kHz) divided by the speed. Each chunk is
    decoded with ``overlap_length`` tokens (more for a short later chunk: its decode needs context)
    of latent overlap with the previous one. The first chunk holds back its last ``overlap`` samples;
    a middle chunk is SOLA-aligned to the previous decode and holds back the same; the final chunk is
    emitted as decoded; a final chunk with no tokens releases the held-back tail.
    """

    def __init__(self, decode: ChunkDecoder, samples_per_token: float, overlap_length: int):
        self.decode = decode
        self.per_token = samples_per_token
        self.overlap_length = overlap_length
        self.overlap = math.ceil(overlap_length * samples_per_token)  # samples held back per chunk
        self.codes: list[torch.Tensor] = []
        self.last_audio: torch.Tensor | None = None
        self.last_latent: torch.Tensor | None = None

    def chunk(self, tokens: list[int] | None, final: bool) -> torch.Tensor | None:
        """The audio to emit for this token chunk (float, before peak limiting), or None."""
        if tokens is None:  # the row ended with nothing pending: release the held-back tail
            return None if self.last_audio is None else self.last_audio[-self.overlap :]
        first = self.last_audio is None
        n = len(tokens)
        self.codes.append(torch.tensor(tokens, dtype=torch.long))
        overlap_tokens = self.overlap_length
        if not first and n < SHORT_CHUNK:
            overlap_tokens += SHORT_CHUNK - n
        overlap_latent = None
        if self.last_latent is not None:
            overlap_latent = self.last_latent[:, :, -2 * overlap_tokens :]  # two latent frames per token
        audio, latent = self.decode(torch.cat(self.codes), None if first else n + overlap_tokens, overlap_latent)
        if overlap_tokens > self.overlap_length:  # only the usual overlap is kept of a short chunk
            audio = audio[-int((self.overlap_length + n) * self.per_token) :]

        if first:
            out = audio if final else audio[: -self.overlap]
        elif final:
            out = audio
        else:
            shift, blended = align_and_blend(self.last_audio, audio, self.overlap)
            # Upstream blends in place, so the decode kept for the next chunk carries the blend.
            audio = torch.cat([audio[:shift].float(), blended])
            out = blended[: -self.overlap]
        self.last_audio, self.last_latent = audio, latent
        return out
