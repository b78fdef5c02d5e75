"""The streaming pieces on their own: the token cut rules, SOLA alignment and the chunk stitcher."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.streaming import MUTE_TOKEN, PieceStitcher, TokenChunker, align_and_blend, mute_similarity


def feed(chunker: TokenChunker, tokens: list[int], last: int | None) -> list[tuple[list[int] | None, bool]]:
    out = []
    for token in tokens:
        chunk = chunker.push(token)
        if chunk is not None:
            out.append((chunk, False))
    out.append((chunker.finish(last), True))
    return out


def test_fixed_length_chunks_and_the_rest():
    chunks = feed(TokenChunker(4), list(range(10)), last=None)
    assert chunks == [([0, 1, 2, 3], False), ([4, 5, 6, 7], False), ([8, 9], True)]


def test_a_kept_last_token_ends_the_final_chunk_and_nothing_pending_gives_none():
    assert feed(TokenChunker(4), [1, 2, 3], last=9) == [([1, 2, 3, 9], True)]
    assert feed(TokenChunker(2), [1, 2], last=None) == [([1, 2], False), (None, True)]


def test_mute_cuts_after_the_most_silent_pair_and_repeats_what_follows():
    similarity = torch.full((20,), -0.5)
    similarity[7] = 0.9  # the silent token
    similarity[8] = 0.5
    chunker = TokenChunker(3, similarity)
    tokens = [1, 2, 3, 7, 8, 2, 1]  # pending reaches 5 (= 3 + 2) at the 5th token
    chunks = feed(chunker, tokens, last=None)
    # at 5 pending [1,2,3,7,8]: pair scores -1-1, -1-1, -1+0.9, 0.9+0.5, 0.5 -> cut after index 3 (the 7)
    assert chunks[0] == ([1, 2, 3, 7, 8], False)
    # only 4 were consumed: the 8 is decoded again at the head of the rest
    assert chunks[-1] == ([8, 2, 1], True)


def test_no_cut_before_min_chunk_or_without_silence():
    similarity = torch.full((20,), -0.2)
    similarity[7] = 0.9
    # silence at the first position: cut + 1 < min_chunk, so no cut
    assert feed(TokenChunker(4, similarity), [7, 1, 1, 1, 1, 1], last=None) == [([7, 1, 1, 1, 1, 1], True)]
    # no silent token at all
    assert feed(TokenChunker(2, similarity), [1, 2, 3, 4, 5], last=None) == [([1, 2, 3, 4, 5], True)]


def test_mute_similarity_is_one_for_the_mute_token():
    table = torch.randn(MUTE_TOKEN + 10, 16)
    sim = mute_similarity(table)
    assert sim.shape == (MUTE_TOKEN + 10,)
    assert sim[MUTE_TOKEN] == pytest.approx(1.0)
    assert torch.all(sim <= 1.0 + 1e-6)


def test_sola_finds_where_the_next_decode_continues_the_previous():
    torch.manual_seed(0)
    signal = torch.randn(4000)
    overlap, shift = 200, 37
    previous = signal[:2000]
    new = signal[2000 - overlap - shift :]  # starts `shift` samples before the previous tail
    found, blended = align_and_blend(previous, new, overlap)
    assert found == shift
    assert torch.allclose(blended[:overlap], previous[-overlap:], atol=1e-6)  # both sides agree here
    assert torch.equal(blended[overlap:], new[shift + overlap :])


class _FakeDecoder:
    """Decodes codes to a known waveform: each token ``t`` becomes ``u`` samples of value ``t``, plus
    the context it was given; records the calls."""

    def __init__(self, per_token: int):
        self.per_token = per_token
        self.calls: list[tuple[int, int | None, int | None]] = []

    def __call__(self, codes, keep, overlap):
        self.calls.append((codes.shape[0], keep, None if overlap is None else overlap.shape[-1]))
        kept = codes if keep is None else codes[-keep:]
        audio = kept.float().repeat_interleave(self.per_token) / 100
        latent = kept.float().repeat_interleave(2).view(1, 1, -1)
        return audio, latent


def test_stitcher_holds_back_the_overlap_and_decodes_short_chunks_with_more_context():
    decoder = _FakeDecoder(per_token=10)
    stitcher = PieceStitcher(decoder, samples_per_token=10.0, overlap_length=2)
    first = stitcher.chunk(list(range(1, 17)), final=False)
    assert first.shape[0] == 16 * 10 - 20  # the last 2 tokens' audio is held back
    middle = stitcher.chunk(list(range(17, 33)), final=False)
    # decoded: the 16 new tokens + 2 of overlap, aligned to the held-back tail, minus its own tail
    assert decoder.calls[1] == (32, 18, 4)
    assert middle.shape[0] <= 18 * 10 - 20
    final = stitcher.chunk([33, 34, 35], final=True)  # short: 2 + (10 - 3) tokens of overlap
    assert decoder.calls[2] == (35, 3 + 9, 18)
    assert final.shape[0] == (2 + 3) * 10  # cut back to the usual overlap + the new tokens
    assert stitcher.chunk(None, final=True).shape[0] == math.ceil(2 * 10.0)


def test_a_single_final_chunk_is_emitted_whole():
    stitcher = PieceStitcher(_FakeDecoder(per_token=8), samples_per_token=8.0, overlap_length=2)
    assert stitcher.chunk([5, 6, 7], final=True).shape[0] == 24
