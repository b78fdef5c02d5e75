"""The GPT stage of GPT-SoVITS ("t2s", text → semantic tokens) and its KV-cached decode loop.

The model is a small decoder-only transformer over one sequence made of two parts:

    [ phones of prompt text + target text ]  [ semantic codes: prompt audio, then generated ]

Phones are embedded, summed with a projection of their 1024-d BERT features and given sine
positions; semantic codes get their own embedding and positions (each scaled by a learned
``alpha``). Phones attend to all phones (no causality) and never to semantic codes; semantic codes
attend to all phones and causally to earlier codes. Layers are post-norm (upstream's inference path).

``T2SModel.generate`` reproduces upstream's two decode modes with one KV-cached loop:
- parallel (upstream ``infer_panel_batch_infer``): rows share a batch, phones are padded on the LEFT,
  each row stops on its own EOS and leaves the batch;
- sequential (upstream ``infer_panel_naive_batched``): every row is decoded alone.
Both keep upstream's bookkeeping quirks exactly (see ``_kept_tokens`` and ``generate``).

Why this module is long: it is the whole GPT stage in one file, nanoGPT-style (config, blocks,
the one KV-cached decode loop for parallel and sequential modes, upstream's key map); splitting it would
scatter the decode loop that must match upstream step for step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.checkpoints import CheckpointError, check_state_dict, load_checkpoint, weights_of
from app.engine.sampling import draw, filtered_probs, penalize_repeats

BERT_DIM = 1024
# Upstream's TTS.run stops a row after hz * max_sec tokens, with hz fixed at 50 (not the 25 Hz
# at which semantic tokens actually run: that is upstream's number, kept as is).
EARLY_STOP_HZ = 50
# Upstream's hard cap on decode steps per call.
MAX_DECODE_STEPS = 1500
# EOS cannot be produced in the first 11 steps: upstream drops it from the logits there.
STEPS_WITHOUT_EOS = 11
# Upstream builds its sine table for 4000 positions up front; we extend on demand instead.
INITIAL_POSITIONS = 4000

# (row indices in the caller's list, decode step, raw logits [live rows, vocab]) → None
LogitsHook = Callable[[list[int], int, torch.Tensor], None]


class DecodeCancelled(RuntimeError):
    """Raised by ``generate`` when its ``should_stop`` callback returned True (checked every step)."""


@dataclass(frozen=True)
class T2SConfig:
    phone_vocab_size: int
    vocab_size: int  # semantic codes + EOS
    dim: int
    num_heads: int
    num_layers: int
    eos_id: int
    max_sec: float  # the ckpt's data.max_sec: sets the default early stop

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        # Upstream sizes the feed-forward as 4 * hidden_dim and ignores the config's linear_units.
        return 4 * self.dim

    @property
    def early_stop_num(self) -> int:
        return int(EARLY_STOP_HZ * self.max_sec)

    @classmethod
    def from_checkpoint_config(cls, config: dict) -> T2SConfig:
        """Build from the ``config`` dict embedded in an upstream s1 ``.ckpt``."""
        model = config["model"]
        if model["embedding_dim"] != model["hidden_dim"]:
            raise ValueError("embedding_dim and hidden_dim differ; upstream's decoder cannot run that either")
        if model["EOS"] != model["vocab_size"] - 1:
            raise ValueError("EOS must be the last semantic id (upstream asserts the same)")
        return cls(
            phone_vocab_size=int(model["phoneme_vocab_size"]),
            vocab_size=int(model["vocab_size"]),
            dim=int(model["hidden_dim"]),
            num_heads=int(model["head"]),
            num_layers=int(model["n_layer"]),
            eos_id=int(model["EOS"]),
            max_sec=config["data"]["max_sec"],
        )


def sine_table(num_positions: int, dim: int) -> torch.Tensor:
    """``[num_positions, dim]`` sinusoidal encodings (sin on even, cos on odd channels), in float32
    with the same formula as upstream so the values are bit-identical."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class SinePositions(nn.Module):
    """Adds ``alpha * sine(position)`` to embeddings; ``alpha`` is learned, the table is not."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.register_buffer("table", sine_table(INITIAL_POSITIONS, dim), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``x``: ``[..., n, dim]`` embeddings of positions ``start .. start + n - 1``."""
        end = start + x.shape[-2]
        if end > self.table.shape[0]:
            self.table = sine_table(max(end, 2 * self.table.shape[0]), x.shape[-1]).to(self.table)
        return x + self.alpha * self.table[start:end].to(x.dtype)


class KVCache:
    """Keys and values of every layer, preallocated once for the whole decode: ``[layers, rows,
    heads, capacity, head_dim]``, of which the first ``length`` positions are filled.

    ``padding_bias`` is the additive attention mask of the decode steps, ``[rows, 1, 1, capacity]``:
    0 where a key may be attended, -inf on the left padding of shorter rows. It is built once per
    decode (a float mask is what SDPA would turn a boolean one into on every call) and stays None
    when no row is padded, so the common case runs attention without any mask."""

    def __init__(
        self, config: T2SConfig, rows: int, capacity: int, *, dtype: torch.dtype, device: torch.device
    ):
        shape = (config.num_layers, rows, config.num_heads, capacity, config.head_dim)
        # empty, not zeros: only the first `length` positions are ever read.
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self._index_layers()
        self.padding_bias: torch.Tensor | None = None
        self.length = 0

    def _index_layers(self) -> None:
        # Per-layer views made once, not per step: indexing the 5-d buffers 2 x 24 times a step
        # is pure Python/dispatcher overhead on a model this small.
        self._layer_keys, self._layer_values = self.keys.unbind(0), self.values.unbind(0)

    def mark_padding(self, key_valid: torch.Tensor) -> None:
        """``key_valid`` ``[rows, n]``: False on the first ``n`` positions' padding keys."""
        if bool(key_valid.all()):
            return
        _, rows, _, capacity, _ = self.keys.shape
        bias = torch.zeros(rows, 1, 1, capacity, dtype=self.keys.dtype, device=self.keys.device)
        bias[:, 0, 0, : key_valid.shape[1]].masked_fill_(~key_valid, -float("inf"))
        self.padding_bias = bias

    def decode_mask(self) -> torch.Tensor | None:
        """Additive mask for one new position (query) over every key so far, itself included."""
        return None if self.padding_bias is None else self.padding_bias[..., : self.length + 1]

    def write(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``[rows, heads, n, head_dim]`` at the current position; return everything so far."""
        start, end = self.length, self.length + keys.shape[2]
        all_keys, all_values = self._layer_keys[layer], self._layer_values[layer]
        all_keys[:, :, start:end] = keys
        all_values[:, :, start:end] = values
        return all_keys[:, :, :end], all_values[:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Drop finished rows (``rows`` = indices of the rows to keep, ascending).

        The kept rows are packed into the first slots of the same buffers, moving only the filled
        positions: a finished row costs a copy of what was decoded so far, not a fresh copy of the
        whole preallocated capacity. Ascending order makes the in-place moves safe (a row only
        moves down, onto a slot already moved or dropped)."""
        filled = self.length
        for slot, row in enumerate(rows.tolist()):
            if slot != row:
                self.keys[:, slot, :, :filled] = self.keys[:, row, :, :filled]
                self.values[:, slot, :, :filled] = self.values[:, row, :, :filled]
        self.keys, self.values = self.keys[:, : rows.numel()], self.values[:, : rows.numel()]
        self._index_layers()
        if self.padding_bias is not None:
            self.padding_bias = self.padding_bias.index_select(0, rows)


class DecoderLayer(nn.Module):
    """Post-norm transformer layer: x = norm(x + attn(x)); x = norm(x + ffn(x))."""

    def __init__(self, config: T2SConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.attn_out = nn.Linear(config.dim, config.dim)
        self.attn_norm = nn.LayerNorm(config.dim)
        self.ffn_in = nn.Linear(config.dim, config.ffn_dim)
        self.ffn_out = nn.Linear(config.ffn_dim, config.dim)
        self.ffn_norm = nn.LayerNorm(config.dim)

    def forward(
        self, x: torch.Tensor, cache: KVCache, layer: int, attend: torch.Tensor | None
    ) -> torch.Tensor:
        """``x``: ``[rows, n, dim]`` new positions; ``attend``: SDPA's ``attn_mask`` over the
        ``length + n`` keys, ``[rows, 1, n, length + n]`` (bool: True = may attend, or additive float),
        or None when every query may see every key."""
        rows, n, dim = x.shape
        # One fused projection, split by views: [rows, n, 3, heads, head_dim] → 3 x [rows, heads, n, head_dim].
        q, k, v = self.qkv(x).view(rows, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        keys, values = cache.write(layer, k, v)
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=attend)
        x = self.attn_norm(x + self.attn_out(attn.transpose(1, 2).reshape(rows, n, dim)))
        return self.ffn_norm(x + self.ffn_out(self.ffn_in(x).relu_()))


@dataclass(frozen=True)
class _Sampling:
    top_k: int | None
    top_p: float | None
    temperature: float
    repetition_penalty: float
    early_stop_num: int  # < 0: no early stop


def _kept_tokens(history: torch.Tensor, idx: int) -> torch.Tensor:
    """What upstream's TTS.run keeps of a decoded row: ``pred[-idx:]``.

    ``history`` is the row as upstream returns it (prompt codes + generated codes) and ``idx`` the
    step count it returns. Quirk kept on purpose: ``idx == 0`` (always the case for prompt-free
    decoding) makes ``pred[-0:]`` the WHOLE row."""
    return history[-idx:] if idx > 0 else history


def _prompt_attention(text_valid: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Attention mask ``[rows, 1, S, S]`` (True = may attend) for the first pass over
    ``text_len`` phones followed by ``prompt_len`` semantic codes, S = text_len + prompt_len.

    Every query sees every real (non-padding) phone; semantic queries also see earlier semantic
    codes. Padding queries see the real phones too, which keeps their softmax finite; nobody ever
    attends to a padding key, so their values do not matter."""
    rows, text_len = text_valid.shape
    total = text_len + prompt_len
    device = text_valid.device
    allowed = torch.zeros(total, total, dtype=torch.bool, device=device)
    allowed[:, :text_len] = True
    allowed[text_len:, text_len:] = torch.ones(prompt_len, prompt_len, dtype=torch.bool, device=device).tril()
    key_valid = torch.cat([text_valid, torch.ones(rows, prompt_len, dtype=torch.bool, device=device)], dim=1)
    return (allowed.unsqueeze(0) & key_valid.unsqueeze(1)).unsqueeze(1)


class T2SModel(nn.Module):
    def __init__(self, config: T2SConfig):
        super().__init__()
        self.config = config
        self.bert_proj = nn.Linear(BERT_DIM, config.dim)
        self.phone_embedding = nn.Embedding(config.phone_vocab_size, config.dim)
        self.phone_positions = SinePositions(config.dim)
        self.semantic_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.semantic_positions = SinePositions(config.dim)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.to_logits = nn.Linear(config.dim, config.vocab_size, bias=False)

    # ------------------------------------------------------------------ loading

    @staticmethod
    def upstream_key(name: str) -> str:
        """Our parameter name → the name upstream's s1 ``.ckpt`` stores it under."""
        top_level = {
            "bert_proj.": "model.bert_proj.",
            "phone_embedding.": "model.ar_text_embedding.word_embeddings.",
            "phone_positions.": "model.ar_text_position.",
            "semantic_embedding.": "model.ar_audio_embedding.word_embeddings.",
            "semantic_positions.": "model.ar_audio_position.",
            "to_logits.": "model.ar_predict_layer.",
        }
        for ours, theirs in top_level.items():
            if name.startswith(ours):
                return theirs + name[len(ours) :]
        _, layer, module, param = name.split(".")  # layers.<i>.<module>.<param>
        upstream_module = {
            "qkv": "self_attn.in_proj_",  # upstream stores the fused projection as in_proj_weight/bias
            "attn_out": "self_attn.out_proj.",
            "attn_norm": "norm1.",
            "ffn_in": "linear1.",
            "ffn_out": "linear2.",
            "ffn_norm": "norm2.",
        }[module]
        return f"model.h.layers.{layer}.{upstream_module}{param}"

    def upstream_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key (upstream's names) and shape an s1 checkpoint for this config must hold."""
        return {self.upstream_key(name): tuple(t.shape) for name, t in self.state_dict().items()}

    def load_upstream_state(self, state: dict[str, torch.Tensor], path: str | Path = "<state>") -> None:
        """Load upstream-named weights; every key and shape must match (upstream loads strictly too)."""
        check_state_dict(state, self.upstream_shapes(), path)
        ours = {name: state[self.upstream_key(name)] for name in self.state_dict()}
        self.load_state_dict(ours, strict=True)  # copies (and casts fp16 files to our dtype)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> T2SModel:
        """Read an upstream s1 ``.ckpt`` (GPT weights) into an eval-mode model on ``device``/``dtype``."""
        checkpoint = load_checkpoint(path)
        try:
            config = T2SConfig.from_checkpoint_config(checkpoint["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"has no usable GPT config ({type(exc).__name__}: {exc})") from None
        model = cls(config)
        model.load_upstream_state(weights_of(checkpoint, path), path)
        return model.to(device=device, dtype=dtype).eval()

    # ------------------------------------------------------------------ forward pieces

    def embed_phones(self, phones: torch.Tensor, bert: torch.Tensor) -> torch.Tensor:
        """``phones`` ``[n]`` + ``bert`` ``[1024, n]`` → ``[n, dim]`` (positions start at 0 per row)."""
        x = self.phone_embedding(phones) + self.bert_proj(bert.transpose(0, 1))
        return self.phone_positions(x)

    def embed_semantic(self, codes: torch.Tensor, start: int) -> torch.Tensor:
        """``codes`` ``[rows, n]`` at positions ``start ..`` → ``[rows, n, dim]``."""
        return self.semantic_positions(self.semantic_embedding(codes), start)

    def forward(self, x: torch.Tensor, cache: KVCache, attend: torch.Tensor | None) -> torch.Tensor:
        """Run new positions ``x`` ``[rows, n, dim]`` through all layers (extending ``cache``) and
        return the logits of the last position, ``[rows, vocab]``."""
        for i, layer in enumerate(self.layers):
            x = layer(x, cache, i, attend)
        cache.advance(x.shape[1])
        return self.to_logits(x[:, -1])

    # ------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def generate(
        self,
        phones: Sequence[torch.Tensor],
        berts: Sequence[torch.Tensor],
        prompt: torch.Tensor | None,
        *,
        top_k: int | None = 5,
        top_p: float | None = 1.0,
        temperature: float = 1.0,
        repetition_penalty: float = 1.35,
        early_stop_num: int | None = None,
        parallel: bool = True,
        generator: torch.Generator | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_logits: LogitsHook | None = None,
    ) -> list[torch.Tensor]:
        """Decode semantic tokens for each row; returns, per row, the int64 tokens upstream's
        ``TTS.run`` keeps (``pred[-idx:]``, see ``_kept_tokens``).

        phones[r]: ``[n_r]`` phone ids (prompt text + target text); berts[r]: ``[1024, n_r]``.
        prompt: semantic codes of the reference audio, ``[P]`` (shared) or ``[rows, P]``; None decodes
          prompt-free.
        early_stop_num: max tokens per row; None → ``config.early_stop_num`` (hz * max_sec, as
          TTS.run passes it); negative → no limit besides the 1500-step cap.
        parallel: upstream's ``parallel_infer``. Quirk kept: prompt-free parallel decoding falls back
          to sequential AND then uses repetition_penalty 1.35 whatever was asked (upstream drops
          the argument on that path).
        should_stop: polled before every decode step; when it returns True, DecodeCancelled is
          raised (nothing partial is returned).
        on_logits: called every step with the raw logits, before any sampling control.
        """
        if not phones or len(phones) != len(berts):
            raise ValueError("need one BERT feature matrix per phone sequence, and at least one row")
        device = self.to_logits.weight.device
        dtype = self.to_logits.weight.dtype
        phones = [p.to(device=device, dtype=torch.long) for p in phones]
        berts = [b.to(device=device, dtype=dtype) for b in berts]
        for p, b in zip(phones, berts, strict=True):
            if p.ndim != 1 or b.shape != (BERT_DIM, p.shape[0]):
                raise ValueError(f"phones {tuple(p.shape)} and BERT {tuple(b.shape)} do not fit together")
        if prompt is not None:
            prompt = prompt.to(device=device, dtype=torch.long)
            prompt = prompt.unsqueeze(0).expand(len(phones), -1) if prompt.ndim == 1 else prompt
            if prompt.shape[0] != len(phones):
                raise ValueError(f"prompt has {prompt.shape[0]} rows for {len(phones)} phone rows")
        if prompt is None and parallel:
            parallel, repetition_penalty = False, 1.35  # upstream quirk, see the docstring
        sampling = _Sampling(
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            repetition_penalty=repetition_penalty,
            early_stop_num=self.config.early_stop_num if early_stop_num is None else early_stop_num,
        )
        embedded = [self.embed_phones(p, b) for p, b in zip(phones, berts, strict=True)]

        def decode(rows: list[int]) -> list[torch.Tensor]:
            row_prompt = None if prompt is None else prompt[rows]
            histories, steps = self._decode(
                [embedded[r] for r in rows],
                row_prompt,
                rows,
                sampling,
                parallel,
                generator,
                should_stop,
                on_logits,
            )
            # Prompt-free decoding reports idx 0 upstream, whatever the step count.
            return [
                _kept_tokens(h, 0 if prompt is None else s) for h, s in zip(histories, steps, strict=True)
            ]

        if parallel:
            return decode(list(range(len(phones))))
        return [decode([r])[0] for r in range(len(phones))]

    def _decode(
        self,
        texts: list[torch.Tensor],
        prompt: torch.Tensor | None,
        row_ids: list[int],
        sampling: _Sampling,
        parallel: bool,
        generator: torch.Generator | None,
        should_stop: Callable[[], bool] | None,
        on_logits: LogitsHook | None,
    ) -> tuple[list[torch.Tensor], list[int]]:
        """One batch through the decode loop. Returns per row upstream's raw result: the history
        (prompt + generated codes, after upstream's end-of-row trimming) and the step ``idx``."""
        device, eos = texts[0].device, self.config.eos_id
        rows, text_len = len(texts), max(t.shape[0] for t in texts)
        prompt_len = 0 if prompt is None else prompt.shape[1]
        max_steps = MAX_DECODE_STEPS
        if sampling.early_stop_num >= 0:
            max_steps = min(max_steps, sampling.early_stop_num + 1)

        # Left padding with zero vectors; the padding keys are masked out for every query.
        x = torch.stack([F.pad(t, (0, 0, text_len - t.shape[0], 0)) for t in texts])
        text_valid = torch.stack(
            [torch.arange(text_len, device=device) >= text_len - t.shape[0] for t in texts]
        )
        cache = KVCache(self.config, rows, text_len + prompt_len + max_steps, dtype=x.dtype, device=device)
        cache.mark_padding(text_valid)
        history = torch.zeros(rows, prompt_len + max_steps, dtype=torch.long, device=device)
        if prompt is not None:
            history[:, :prompt_len] = prompt
            x = torch.cat([x, self.embed_semantic(prompt, 0)], dim=1)
        attend = _prompt_attention(text_valid, prompt_len)

        live = list(range(rows))  # live batch row → index into this call's rows
        finished: dict[int, tuple[torch.Tensor, int]] = {}
        filled = prompt_len
        for step in range(max_steps):
            if should_stop is not None and should_stop():
                raise DecodeCancelled("decoding was stopped")
            logits = self(x, cache, attend)
            if on_logits is not None:
                on_logits([row_ids[i] for i in live], step, logits)
            if step < STEPS_WITHOUT_EOS:
                logits = logits[:, :-1]  # EOS is the last id: it cannot be chosen yet
            penalized = penalize_repeats(logits, history[:, :filled], sampling.repetition_penalty)
            probs = filtered_probs(
                penalized, top_k=sampling.top_k, top_p=sampling.top_p, temperature=sampling.temperature
            )
            tokens = draw(probs, generator).squeeze(1)
            history[:, filled] = tokens
            filled += 1

            # Upstream stops a row when the drawn token OR the argmax of the penalised logits is
            # EOS (it checks the argmax after its in-place penalty, so the penalty counts).
            hit_eos = (tokens == eos) | (penalized.argmax(dim=-1) == eos)
            over_early_stop = sampling.early_stop_num >= 0 and filled - prompt_len > sampling.early_stop_num
            out_of_budget = over_early_stop or step == MAX_DECODE_STEPS - 1
            done = hit_eos | out_of_budget
            if bool(done.any()):
                for i in done.nonzero().flatten().tolist():
                    # Upstream trims the last token on EOS; the parallel path ALSO trims it when a
                    # row runs out of budget (quirk: that drops a real token), the sequential does not.
                    end = filled - 1 if (bool(hit_eos[i]) or parallel) else filled
                    finished[live[i]] = (history[i, :end].clone(), step)
                if bool(done.all()):
                    break
                keep = (~done).nonzero().flatten()
                live = [live[i] for i in keep.tolist()]
                history = history.index_select(0, keep)
                cache.keep_rows(keep)

            x = self.embed_semantic(history[:, filled - 1 : filled], prompt_len + step)
            attend = cache.decode_mask()

        ordered = [finished[i] for i in range(rows)]
        return [h for h, _ in ordered], [s for _, s in ordered]
