"""The DiT that estimates the flow velocity inside the GPT-SoVITS v3/v4 mel decoder (inference only).

This is F5-TTS's diffusion transformer as upstream vendors it (``f5_tts/model/backbones/dit.py`` and
``modules.py``). Upstream hard-codes its size (22 blocks of width 1024, 16 heads of 64); we read depth
and width from the weights instead (:meth:`DiTConfig.sized_like`), so small files load as well.
One call maps the current noisy mel, the prompt mel and the content features to a velocity:

    features --+ sinusoid positions --> 4 ConvNeXt-V2 blocks --> text_embed -------------+
    noisy mel -+---------------------------------------------------------------------+--> linear --> + conv position
    prompt mel +------------------------------------------------------------------------+         embedding
                                                                                                   |
    t, dt --sinusoid + MLP each, summed--> conditioning c          N x DiT block(c, rotary) <------+
                                                                   final adaptive norm(c) --> linear --> velocity

Sequences are time-major here, ``[batch, frames, channels]``, as in upstream's DiT; the sampler in
``cfm.py`` transposes. Upstream quirks kept on purpose are marked "quirk" below.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Width of the sinusoidal features fed to the time-step MLPs.
TIMESTEP_FEATURES = 256
# Upstream multiplies the time step (in [0, 1]) by this before taking sinusoids.
TIMESTEP_SCALE = 1000.0
NORM_EPS = 1e-6
_BLOCK_INDEX = re.compile(r"transformer_blocks\.(\d+)\.")


@dataclass(frozen=True)
class DiTConfig:
    # Defaults: the size upstream builds for v3/v4.
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    head_dim: int = 64  # upstream never passes dim_head, so F5-TTS's default of 64 always applies
    ff_mult: int = 2
    mel_dim: int = 100
    text_dim: int = 512  # width of the content features (the ``wns1`` output)
    text_conv_layers: int = 4
    # Positions of the content features' sinusoid table; longer inputs reuse the last row.
    text_max_positions: int = 4096

    @classmethod
    def sized_like(
        cls, state: Mapping[str, torch.Tensor], prefix: str = "", *, mel_dim: int = 100, text_dim: int = 512
    ) -> DiTConfig:
        """The config whose depth and width match the DiT weights in ``state`` under ``prefix``.

        Depth: one more than the highest ``transformer_blocks.<i>`` index; width: the input width of
        ``proj_out``; heads: width / ``head_dim``. Upstream and our key names agree on both, so either
        state dict works. Without those keys the defaults are returned, and the strict load that
        follows names what is missing. Raises ValueError for a width that is no multiple of ``head_dim``.
        """
        blocks = {
            int(match[1])
            for key in state
            if key.startswith(prefix) and (match := _BLOCK_INDEX.match(key, len(prefix)))
        }
        proj_out = state.get(prefix + "proj_out.weight")
        if not blocks or proj_out is None:
            return cls(mel_dim=mel_dim, text_dim=text_dim)
        dim = int(proj_out.shape[1])
        if dim % cls.head_dim:
            raise ValueError(f"DiT width {dim} is not a multiple of the head width {cls.head_dim}")
        return cls(
            dim=dim, depth=max(blocks) + 1, heads=dim // cls.head_dim, mel_dim=mel_dim, text_dim=text_dim
        )


# --------------------------------------------------------------------------- time steps


def timestep_features(t: torch.Tensor, dim: int = TIMESTEP_FEATURES) -> torch.Tensor:
    """``[batch]`` time steps -> ``[batch, dim]`` sinusoids (sines then cosines), as upstream computes them."""
    half = dim // 2
    rate = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -rate)
    angles = TIMESTEP_SCALE * t.unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    """Sinusoids of a scalar per batch row, then a two-layer SiLU MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(TIMESTEP_FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_mlp(timestep_features(t).to(t.dtype))


# --------------------------------------------------------------------------- content (text) embedding


def sinusoid_table(dim: int, n_positions: int, theta: float = 10000.0) -> torch.Tensor:
    """``[n_positions, dim]``: cosines of position x frequency in the first half, sines in the second."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    angles = torch.outer(torch.arange(n_positions), freqs).float()
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN on ``[batch, frames, channels]``.

    Quirk: the L2 norm is taken over the *time* axis (upstream's dim=1 on a time-major tensor) and then
    normalised by its mean over channels, so every frame's output depends on the whole sequence.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.norm(x, p=2, dim=1, keepdim=True)
        relative = norm / (norm.mean(dim=-1, keepdim=True) + NORM_EPS)
        return self.gamma * (x * relative) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) -> LayerNorm -> MLP with GELU and GRN, residual."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size=7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=NORM_EPS)
        self.pwconv1 = nn.Linear(channels, hidden)
        self.grn = GlobalResponseNorm(hidden)
        self.pwconv2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(h)))))
        return x + h


class ContentEmbedding(nn.Module):
    """Content features + a fixed sinusoid per position, refined by ConvNeXt-V2 blocks (``text_embed``)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.max_positions = cfg.text_max_positions
        self.register_buffer(
            "positions", sinusoid_table(cfg.text_dim, cfg.text_max_positions), persistent=False
        )
        self.text_blocks = nn.Sequential(
            *(ConvNeXtBlock(cfg.text_dim, 2 * cfg.text_dim) for _ in range(cfg.text_conv_layers))
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        length = features.size(1)
        index = torch.arange(length, device=features.device).clamp(max=self.max_positions - 1)
        return self.text_blocks(features + self.positions[index].to(features.dtype))


class InputEmbedding(nn.Module):
    """Concatenate noisy mel, prompt mel and content embedding, project, add a convolutional position term."""

    def __init__(self, cfg: DiTConfig, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.proj = nn.Linear(2 * cfg.mel_dim + cfg.text_dim, cfg.dim)
        pad = kernel_size // 2
        self.conv_pos_embed = nn.Sequential(
            nn.Conv1d(cfg.dim, cfg.dim, kernel_size, groups=groups, padding=pad),
            nn.Mish(),
            nn.Conv1d(cfg.dim, cfg.dim, kernel_size, groups=groups, padding=pad),
            nn.Mish(),
        )

    def forward(self, noisy: torch.Tensor, prompt: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        x = self.proj(torch.cat((noisy, prompt, content), dim=-1))
        return self.conv_pos_embed(x.transpose(1, 2)).transpose(1, 2) + x


# --------------------------------------------------------------------------- rotary positions


def rotary_angles(inv_freq: torch.Tensor, length: int) -> torch.Tensor:
    """``[length, 2 * len(inv_freq)]`` angles, each frequency repeated for its (even, odd) channel pair.

    The same as x-transformers' ``RotaryEmbedding.forward_from_seq_len``, which the upstream DiT uses.
    """
    positions = torch.arange(length, device=inv_freq.device).to(inv_freq.dtype)
    angles = torch.outer(positions, inv_freq)
    return torch.stack((angles, angles), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the leading ``angles.size(-1)`` channels of ``x`` ``[batch, frames, channels]`` in pairs.

    Interleaved pairs (channels 2i, 2i+1), as x-transformers' ``apply_rotary_pos_emb``; the channels past
    the rotary width pass through unchanged.
    """
    width = angles.size(-1)
    rotated, rest = x[..., :width], x[..., width:]
    pairs = rotated.unflatten(-1, (-1, 2))
    swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    rotated = rotated * angles.cos() + swapped * angles.sin()
    return torch.cat((rotated, rest), dim=-1).to(x.dtype)


# --------------------------------------------------------------------------- transformer


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, angles: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = x.shape
        # Quirk: upstream applies the rotary embedding to the projections *before* splitting heads, and
        # its rotary width is one head's width, so only the first head gets positions; the others see
        # none. Reproduced as is: the weights were trained that way.
        query = apply_rotary(self.to_q(x), angles)
        key = apply_rotary(self.to_k(x), angles)
        value = self.to_v(x)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)

        attn_mask = None
        if mask is not None:  # [b or 1, frames] keys to attend to
            attn_mask = mask[:, None, None, :].expand(batch, self.heads, length, length)
        out = F.scaled_dot_product_attention(heads(query), heads(key), heads(value), attn_mask=attn_mask)
        out = self.to_out(out.transpose(1, 2).reshape(batch, length, -1))
        if mask is not None:
            out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        return out


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose norms are shifted, scaled and gated by the conditioning (adaLN-Zero)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        # One projection yields shift, scale and gate for the attention, then the same for the MLP.
        self.attn_norm = nn.Linear(cfg.dim, 6 * cfg.dim)
        self.attn = SelfAttention(cfg.dim, cfg.heads, cfg.head_dim)
        inner = cfg.dim * cfg.ff_mult
        self.ff = nn.Sequential(
            nn.Linear(cfg.dim, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, cfg.dim)
        )

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, angles: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.attn_norm(F.silu(cond)).chunk(6, dim=1)
        h = _plain_layer_norm(x) * (1 + scale_a[:, None]) + shift_a[:, None]
        x = x + gate_a.unsqueeze(1) * self.attn(h, angles, mask)
        h = _plain_layer_norm(x) * (1 + scale_f[:, None]) + shift_f[:, None]
        return x + gate_f.unsqueeze(1) * self.ff(h)


def _plain_layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over channels without learned affine parameters."""
    return F.layer_norm(x, (x.size(-1),), eps=NORM_EPS)


class DiT(nn.Module):
    """Velocity estimator: ``forward(noisy, prompt, content, t, step)`` -> velocity ``[batch, frames, mel]``.

    The content embedding and the step-size embedding do not change during one sampling run, so they
    are computed once by :meth:`embed_content` / :meth:`embed_step` and passed in (upstream caches them
    the same way).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.config = cfg
        self.time_embed = TimestepEmbedding(cfg.dim)
        self.d_embed = TimestepEmbedding(cfg.dim)
        self.text_embed = ContentEmbedding(cfg)
        self.input_embed = InputEmbedding(cfg)
        # Quirk: the rotary frequencies are a checkpoint entry (upstream's persistent buffer), stored in
        # half precision, so they are loaded, not recomputed.
        self.register_buffer("rotary_inv_freq", torch.zeros(cfg.head_dim // 2))
        self.transformer_blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.Linear(cfg.dim, 2 * cfg.dim)  # final scale and shift (in that order)
        self.proj_out = nn.Linear(cfg.dim, cfg.mel_dim)

    def embed_content(self, content: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, text_dim]`` content features -> their embedding (same shape)."""
        return self.text_embed(content)

    def embed_step(self, step: torch.Tensor) -> torch.Tensor:
        """``[batch]`` Euler step sizes -> ``[batch, dim]`` (added to the time conditioning)."""
        return self.d_embed(step)

    def forward(
        self,
        noisy: torch.Tensor,
        prompt: torch.Tensor,
        content_embedding: torch.Tensor,
        t: torch.Tensor,
        step_embedding: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``noisy``/``prompt``: ``[batch, frames, mel_dim]``; ``t``: ``[batch]``; ``mask``: ``[batch or 1,
        frames]`` True where a frame is real (None: all are)."""
        cond = self.time_embed(t) + step_embedding
        x = self.input_embed(noisy, prompt, content_embedding)
        angles = rotary_angles(self.rotary_inv_freq, x.size(1))
        for block in self.transformer_blocks:
            x = block(x, cond, angles, mask)
        scale, shift = self.norm_out(F.silu(cond)).chunk(2, dim=1)
        x = _plain_layer_norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]
        return self.proj_out(x)
