"""Next-token sampling controls of the GPT stage, with upstream GPT-SoVITS's exact semantics.

Every function is pure (inputs are never modified) and works on a batch of logits ``[rows, vocab]``.
Upstream applies the controls in this order, and the order matters:

1. repetition penalty on every token already in the row's history (prompt codes included);
2. top-p, computed on the *un-tempered* distribution (quirk: temperature comes after it);
3. temperature;
4. top-k;
5. softmax, then one draw per row.

Randomness only comes from an explicit ``torch.Generator``, so a seed reproduces the same tokens on
the same machine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Upstream divides by max(temperature, 1e-5) so that temperature 0 means "almost greedy", not a crash.
MIN_TEMPERATURE = 1e-5


def penalize_repeats(
    logits: torch.Tensor, previous_tokens: torch.Tensor | None, penalty: float
) -> torch.Tensor:
    """Make tokens that already occurred less likely: positive logits are divided by ``penalty``,
    negative ones multiplied by it. ``previous_tokens`` is ``[rows, n]``; a token occurring several
    times is still penalised once. A penalty of exactly 1.0 (or no history) changes nothing."""
    if previous_tokens is None or penalty == 1.0 or previous_tokens.numel() == 0:
        return logits
    index = previous_tokens.long()
    seen = torch.gather(logits, dim=1, index=index)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    # Duplicated indices write the same penalised value twice, hence "once per distinct token".
    return logits.scatter(dim=1, index=index, src=seen)


def keep_top_p(logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Nucleus filtering as upstream does it: sort by probability and drop every token whose
    cumulative probability (itself included) exceeds ``top_p``, except the most likely one.

    Quirk kept on purpose: unlike the common Hugging Face variant there is no shift by one, so the
    token that crosses the threshold is dropped too. ``None`` or >= 1.0 disables the filter."""
    if top_p is None or top_p >= 1.0:
        return logits
    sorted_logits, sorted_index = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    drop_sorted = cumulative > top_p
    drop_sorted[:, 0] = False
    drop = drop_sorted.scatter(dim=1, index=sorted_index, src=drop_sorted)
    return logits.masked_fill(drop, -float("inf"))


def keep_top_k(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Keep the ``top_k`` largest logits per row (ties with the k-th are all kept).

    ``None`` or a value <= 0 disables the filter (upstream would fail on <= 0)."""
    if top_k is None or top_k <= 0:
        return logits
    kth_largest = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
    return torch.where(logits < kth_largest, -float("inf"), logits)


def filtered_probs(
    penalized_logits: torch.Tensor, *, top_k: int | None, top_p: float | None, temperature: float
) -> torch.Tensor:
    """Steps 2-5 above: probabilities from logits that already carry the repetition penalty."""
    logits = keep_top_p(penalized_logits, top_p)
    logits = logits / max(temperature, MIN_TEMPERATURE)
    logits = keep_top_k(logits, top_k)
    return F.softmax(logits, dim=-1)


def logits_to_probs(
    logits: torch.Tensor,
    previous_tokens: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """All sampling controls in upstream's order: ``[rows, vocab]`` logits → probabilities."""
    penalized = penalize_repeats(logits, previous_tokens, repetition_penalty)
    return filtered_probs(penalized, top_k=top_k, top_p=top_p, temperature=temperature)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row, ``[rows, 1]`` int64, distributed as ``probs``.

    Same trick as upstream (no device sync): argmax of ``probs / q`` with ``q ~ Exponential(1)``
    ("exponential race"); tokens with probability 0 can never win. ``generator`` must live on the
    device of ``probs``; ``None`` uses torch's global generator."""
    race = torch.empty_like(probs).exponential_(1, generator=generator)
    return torch.argmax(probs / race, dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------------------------
# Per-row controls: the same steps with one setting per row ([rows] tensors), for a decode batch whose
# rows belong to different requests. Each equals the scalar function above applied row by row.


def penalize_seen(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """``penalize_repeats`` with a ``[rows, vocab]`` mask of tokens already in each row's history and
    a ``[rows]`` penalty (1.0 leaves a row as it is)."""
    p = penalty.unsqueeze(1).to(logits.dtype)
    return torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)


def keep_top_p_rows(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """``keep_top_p`` with a ``[rows]`` threshold; rows with top_p >= 1 are left unfiltered."""
    filtered = top_p < 1.0
    if not bool(filtered.any()):
        return logits
    sorted_logits, sorted_index = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    drop_sorted = (cumulative > top_p.unsqueeze(1).to(cumulative.dtype)) & filtered.unsqueeze(1)
    drop_sorted[:, 0] = False
    drop = drop_sorted.scatter(dim=1, index=sorted_index, src=drop_sorted)
    return logits.masked_fill(drop, -float("inf"))


def keep_top_k_rows(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """``keep_top_k`` with a ``[rows]`` k; k <= 0 (or >= vocab) keeps the whole row."""
    vocab = logits.size(-1)
    k = torch.where((top_k <= 0) | (top_k > vocab), vocab, top_k)
    if bool((k == vocab).all()):
        return logits
    largest = torch.topk(logits, int(k.max())).values
    kth_largest = largest.gather(1, (k - 1).unsqueeze(1))
    return torch.where(logits < kth_largest, -float("inf"), logits)


def filtered_probs_rows(
    penalized_logits: torch.Tensor, *, top_k: torch.Tensor, top_p: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """``filtered_probs`` with per-row settings (each a ``[rows]`` tensor)."""
    logits = keep_top_p_rows(penalized_logits, top_p)
    logits = logits / temperature.clamp(min=MIN_TEMPERATURE).unsqueeze(1).to(logits.dtype)
    logits = keep_top_k_rows(logits, top_k)
    return F.softmax(logits, dim=-1)
