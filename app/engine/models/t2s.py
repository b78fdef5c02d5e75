"""The GPT stage of GPT-SoVITS ("t2s", text → semantic tokens) and its KV-cached decode loop.

The model is a small decoder-only transformer over one sequence made of two parts:

    [ phones of prompt text + target text ]  [ semantic codes: prompt audio, then generated ]

Phones are embedded, summed with a projection of their 1024-d BERT features and given sine
positions; semantic codes get their own embedding and positions (each scaled by a learned
``alpha``). Phones attend to all phones (no causality) and never to semantic codes; semantic codes
attend to all phones and causally to earlier codes. Layers are post-norm (upstream's inference path).

Decoding (the KV-cached loop shared by many requests, upstream's two decode modes and their quirks)
lives in ``app.engine.models.t2s_decode``; ``T2SModel.generate`` decodes one request alone through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.checkpoints import CheckpointError, check_state_dict, load_checkpoint, weights_of

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
        self.ensure(end)
        return x + self.alpha * self.table[start:end].to(x.dtype)

    def ensure(self, num_positions: int) -> None:
        """Make the table cover positions ``0 .. num_positions - 1`` (done once, before decoding)."""
        if num_positions > self.table.shape[0]:
            self.table = sine_table(max(num_positions, 2 * self.table.shape[0]), self.table.shape[1]).to(
                self.table
            )

    def at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``x`` ``[rows, dim]``, one embedding per row at its own position (``positions`` ``[rows]``)."""
        return x + self.alpha * self.table[positions].to(x.dtype)


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

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # One fused projection, split by views: [rows, n, 3, heads, head_dim] → 3 x [rows, heads, n, head_dim].
        rows, n, _ = x.shape
        q, k, v = self.qkv(x).view(rows, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        rows, n, dim = x.shape
        x = self.attn_norm(x + self.attn_out(attn.transpose(1, 2).reshape(rows, n, dim)))
        return self.ffn_norm(x + self.ffn_out(self.ffn_in(x).relu_()))

    def prefill(
        self,
        x: torch.Tensor,
        keys: torch.Tensor | None,
        values: torch.Tensor | None,
        slots: torch.Tensor | None,
        attend: torch.Tensor,
    ) -> torch.Tensor:
        """The first pass over ``x`` ``[rows, n, dim]`` (phones, then prompt codes): attention among
        these positions only (``attend`` ``[rows, 1, n, n]``, True = may attend). Their keys and values
        are stored at positions ``0 .. n-1`` of ``slots`` in the layer's cache ``[slots, heads, context,
        head_dim]`` (None: a pass without cache)."""
        q, k, v = self._qkv(x)
        if keys is not None and values is not None and slots is not None:
            keys[slots, :, : x.shape[1]] = k
            values[slots, :, : x.shape[1]] = v
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=attend))

    def decode(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        lengths: torch.Tensor,
        bias: torch.Tensor,
        width: int,
    ) -> torch.Tensor:
        """One new position per slot: ``x`` ``[rows, 1, dim]`` for slots ``0 .. rows-1``, each written at
        its own ``lengths[slot]``; attention reads the first ``width`` positions of every slot with the
        additive ``bias`` ``[rows, 1, 1, width]`` (-inf on keys a slot may not see)."""
        rows = x.shape[0]
        q, k, v = self._qkv(x)
        slot = torch.arange(rows, device=x.device)
        keys[slot, :, lengths] = k[:, :, 0]
        values[slot, :, lengths] = v[:, :, 0]
        attn = F.scaled_dot_product_attention(
            q, keys[:rows, :, :width], values[:rows, :, :width], attn_mask=bias
        )
        return self._finish(x, attn)


def prompt_attention(text_valid: torch.Tensor, prompt_len: int) -> torch.Tensor:
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

    def embed_semantic_at(self, codes: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One code per row at its own position: ``codes``, ``positions`` ``[rows]`` → ``[rows, 1, dim]``."""
        return self.semantic_positions.at(self.semantic_embedding(codes), positions).unsqueeze(1)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """A cache-free pass over ``x`` ``[rows, n, dim]`` (``attend`` as in ``prompt_attention``):
        the logits of the last position, ``[rows, vocab]``. Decoding uses the slot cache instead."""
        for layer in self.layers:
            x = layer.prefill(x, None, None, None, attend)
        return self.to_logits(x[:, -1])

    # ------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def generate(self, phones, berts, prompt, **settings) -> list[torch.Tensor]:
        """Decode one request alone: per row, the int64 tokens upstream's ``TTS.run`` keeps.
        Arguments and settings are those of ``t2s_decode.DecodeRequest`` (top_k, top_p, temperature,
        repetition_penalty, early_stop_num, parallel, generator, should_stop, on_logits)."""
        from app.engine.models.t2s_decode import DecodeRequest  # the loop's module builds on this one

        return self.decode(DecodeRequest(phones, berts, prompt, **settings))

    def decode(self, request) -> list[torch.Tensor]:
        """``generate`` for a ready ``t2s_decode.DecodeRequest``: decoded alone, in slots of its own."""
        from app.engine.models.t2s_decode import decode_alone

        return decode_alone(self, request)
