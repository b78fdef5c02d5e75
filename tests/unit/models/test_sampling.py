"""Sampling controls: upstream's semantics, order and quirks, and seeded reproducibility."""

import math

import pytest
import torch

from app.engine.sampling import (
    draw,
    filtered_probs,
    keep_top_k,
    keep_top_p,
    logits_to_probs,
    penalize_repeats,
)

INF = float("inf")


def log_probs(*probs: float) -> torch.Tensor:
    return torch.tensor([[math.log(p) for p in probs]])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -2.0, 3.0, -1.0]])
    out = penalize_repeats(logits, torch.tensor([[0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 3.0, -1.0]]


def test_repetition_penalty_counts_a_repeated_token_once_and_leaves_input_alone():
    logits = torch.tensor([[4.0, 1.0, 1.0]])
    out = penalize_repeats(logits, torch.tensor([[0, 0, 0, 2]]), 2.0)
    assert out.tolist() == [[2.0, 1.0, 0.5]]
    assert logits.tolist() == [[4.0, 1.0, 1.0]]


def test_repetition_penalty_works_per_row():
    logits = torch.tensor([[4.0, 4.0], [4.0, 4.0]])
    out = penalize_repeats(logits, torch.tensor([[0], [1]]), 4.0)
    assert out.tolist() == [[1.0, 4.0], [4.0, 1.0]]


@pytest.mark.parametrize("history", [None, torch.zeros(1, 0, dtype=torch.long)])
def test_repetition_penalty_without_history_or_of_one_is_a_no_op(history):
    logits = torch.tensor([[1.0, -1.0]])
    assert torch.equal(penalize_repeats(logits, history, 1.5), logits)
    assert torch.equal(penalize_repeats(logits, torch.tensor([[0, 1]]), 1.0), logits)


def test_top_p_drops_the_token_that_crosses_the_threshold():
    # cumulative 0.5, 0.8, 1.0: upstream drops every token whose cumulative probability (itself
    # included) is above top_p, so 0.6 keeps only the first token (the HF variant would keep two).
    out = keep_top_p(log_probs(0.5, 0.3, 0.2), 0.6)
    assert torch.isfinite(out).tolist() == [[True, False, False]]
    out = keep_top_p(log_probs(0.2, 0.3, 0.5), 0.85)
    assert torch.isfinite(out).tolist() == [[False, True, True]]


def test_top_p_always_keeps_the_most_likely_token():
    out = keep_top_p(log_probs(0.4, 0.35, 0.25), 0.01)
    assert torch.isfinite(out).tolist() == [[True, False, False]]


@pytest.mark.parametrize("top_p", [None, 1.0, 1.5])
def test_top_p_of_one_or_none_keeps_everything(top_p):
    logits = log_probs(0.5, 0.3, 0.2)
    assert torch.equal(keep_top_p(logits, top_p), logits)


def test_top_k_keeps_the_k_largest_and_their_ties():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, 0.0]])
    assert keep_top_k(logits, 2).tolist() == [[-INF, 5.0, 3.0, 3.0, -INF]]
    assert keep_top_k(logits, 1).tolist() == [[-INF, 5.0, -INF, -INF, -INF]]
    assert torch.equal(keep_top_k(logits, 100), logits)


@pytest.mark.parametrize("top_k", [None, 0, -5])
def test_top_k_none_or_not_positive_disables_the_filter(top_k):
    logits = torch.tensor([[1.0, 2.0]])
    assert torch.equal(keep_top_k(logits, top_k), logits)


def test_temperature_is_applied_after_top_p():
    # Un-tempered cumulative 0.5, 0.8 → top_p 0.7 keeps one token. Had the temperature of 100 come
    # first, the flattened distribution (0.335, 0.668, ...) would keep two.
    probs = filtered_probs(log_probs(0.5, 0.3, 0.2), top_k=None, top_p=0.7, temperature=100.0)
    assert probs.tolist() == [[1.0, 0.0, 0.0]]


def test_temperature_flattens_and_sharpens():
    logits = log_probs(0.7, 0.2, 0.1)
    flat = filtered_probs(logits, top_k=None, top_p=1.0, temperature=10.0)
    sharp = filtered_probs(logits, top_k=None, top_p=1.0, temperature=0.0)  # clamped to 1e-5
    assert flat[0, 0] < 0.5 and flat[0, 2] > 0.25
    assert sharp.tolist() == [[1.0, 0.0, 0.0]]


def test_logits_to_probs_composes_all_controls():
    logits = torch.tensor([[3.0, 2.9, 1.0, 0.5]])
    probs = logits_to_probs(
        logits, torch.tensor([[0]]), temperature=1.0, top_k=2, top_p=1.0, repetition_penalty=2.0
    )
    # Token 0 is penalised to 1.5, so it stays in the top 2 but is no longer the favourite.
    assert (probs > 0).tolist() == [[True, True, False, False]]
    assert probs.sum().item() == pytest.approx(1.0)
    expected = torch.softmax(torch.tensor([1.5, 2.9]), dim=0)
    assert probs[0, :2].tolist() == pytest.approx(expected.tolist())


def test_draw_is_reproducible_with_the_same_seed():
    probs = torch.softmax(torch.randn(4, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    first = draw(probs, torch.Generator().manual_seed(123))
    second = draw(probs, torch.Generator().manual_seed(123))
    assert first.shape == (4, 1) and first.dtype == torch.int64
    assert torch.equal(first, second)
    others = [draw(probs, torch.Generator().manual_seed(seed)) for seed in range(5)]
    assert any(not torch.equal(first, o) for o in others)


def test_draw_never_picks_a_zero_probability_token():
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]).repeat(500, 1)
    tokens = draw(probs, torch.Generator().manual_seed(1)).squeeze(1)
    assert (tokens[0::2] == 1).all()
    assert set(tokens[1::2].tolist()) == {0, 2}


def test_draw_follows_the_distribution():
    probs = torch.tensor([[0.2, 0.8]]).repeat(20000, 1)
    tokens = draw(probs, torch.Generator().manual_seed(7)).squeeze(1)
    assert tokens.float().mean().item() == pytest.approx(0.8, abs=0.015)
