"""Building blocks of the VITS-family synthesizer used by GPT-SoVITS (inference only).

Every block here computes what the matching upstream module computes in ``eval()`` mode for a
single utterance. Two simplifications follow from that and are used throughout:

- No dropout: inference never applies it.
- No masks: upstream decodes one utterance at a time, so every sequence mask it builds is all
  ones and multiplying by it (or filling where it is zero) changes nothing. Leaving them out keeps
  the arithmetic identical and the code short.

Weight-normalised convolutions are plain convolutions here; the checkpoint loader folds
``weight_g``/``weight_v`` into ``weight`` once (see ``fold_weight_norm``).

Layout convention: sequences are ``[batch, channels, time]`` unless a docstring says otherwise.

Why this module is long: it holds the VITS building blocks that every SoVITS version shares
(attention, flows, encoders, HiFi-GAN), each small; one file keeps their shared conventions together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# HiFi-GAN and WaveNet blocks use this slope for their leaky ReLUs.
LEAKY_SLOPE = 0.1


def fold_weight_norm(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """The weight a ``weight_norm(dim=0)`` layer uses: ``g * v / ||v||`` with one norm per output slice.

    Computed in float32 (the dtype upstream computes it in after loading half-precision files) by the
    torch kernel that upstream's weight-norm hook and ``remove_weight_norm()`` call: the same numbers to
    the last bit, which the v3 vocoder needs (it amplifies a one-ulp difference in a weight about
    sevenfold per upsampling stage).
    """
    return torch._weight_norm(weight_v.float(), weight_g.float(), 0)


def padding_for(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd-sized dilated convolution."""
    return (kernel_size * dilation - dilation) // 2


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``[batch, channels, time]`` tensor."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), (x.size(1),), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


# --------------------------------------------------------------------------- transformer encoder


class MultiHeadAttention(nn.Module):
    """Multi-head attention over ``[batch, channels, time]`` sequences with 1x1-conv projections.

    With ``window_size`` set, it is the VITS self-attention with relative position embeddings:
    keys and values get a learned term for every offset ``-window..window`` (shared by all heads);
    farther offsets get none. Without it, plain (cross-)attention.
    """

    def __init__(self, channels: int, out_channels: int, n_heads: int, window_size: int | None = None):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"{channels} channels cannot be split into {n_heads} heads")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        if window_size is not None:
            n_offsets = 2 * window_size + 1
            self.emb_rel_k = nn.Parameter(torch.zeros(1, n_offsets, self.head_dim))
            self.emb_rel_v = nn.Parameter(torch.zeros(1, n_offsets, self.head_dim))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        return x.view(batch, self.n_heads, self.head_dim, length).transpose(2, 3)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Queries from ``x``, keys and values from ``context``."""
        batch, channels, length = x.shape
        # Upstream scales the queries before both products; doing the same keeps rounding alike.
        query = self._heads(self.conv_q(x)) / math.sqrt(self.head_dim)
        key = self._heads(self.conv_k(context))
        value = self._heads(self.conv_v(context))

        scores = query @ key.transpose(-2, -1)
        if self.window_size is not None:
            # Products with a [1, 1, 2t-1, d] table of every offset -(t-1)..t-1 (zero outside the
            # window), shaped as upstream's: the same numbers to the last bit, which the v3 vocoder
            # needs (vocoders.py). The window's 2w+1 rows alone, or a 2-D table, round differently.
            rel_keys = _offset_rows(self.emb_rel_k, length, self.window_size)  # [1, 1, 2t-1, d]
            rel_logits = query @ rel_keys.transpose(-2, -1)  # [b, h, t, 2t-1]: query i, every offset
            scores = scores + _offsets_to_keys(rel_logits)
        weights = F.softmax(scores, dim=-1)
        out = weights @ value
        if self.window_size is not None:
            rel_values = _offset_rows(self.emb_rel_v, length, self.window_size)
            out = out + _keys_to_offsets(weights) @ rel_values
        out = out.transpose(2, 3).reshape(batch, channels, length)
        return self.conv_o(out)


def _offset_rows(table: torch.Tensor, length: int, window: int) -> torch.Tensor:
    """``[1, 2w+1, d]`` embeddings of offsets -w..w -> ``[1, 1, 2*length-1, d]`` rows for offsets
    -(length-1)..length-1, zero for offsets outside the window."""
    if length > window + 1:
        extra = length - (window + 1)
        table = F.pad(table, (0, 0, extra, extra))
    else:
        start = window + 1 - length
        table = table[:, start : start + 2 * length - 1]
    return table.unsqueeze(0)


def _offsets_to_keys(per_offset: torch.Tensor) -> torch.Tensor:
    """``[b, h, t, 2t-1]`` values per (query i, offset) -> ``[b, h, t, t]`` per (query i, key j = i + offset).

    Pure data movement by skewing: with one zero column appended, row i of the flattened tensor
    starts one place later in every next row of a ``[t+1, 2t-1]`` view, which lines offset 0 up on the
    diagonal (no gather index tensor needed).
    """
    b, h, t, _ = per_offset.shape
    flat = F.pad(per_offset, (0, 1)).reshape(b, h, 2 * t * t)
    return F.pad(flat, (0, t - 1)).view(b, h, t + 1, 2 * t - 1)[:, :, :t, t - 1 :]


def _keys_to_offsets(per_key: torch.Tensor) -> torch.Tensor:
    """``[b, h, t, t]`` values per (query i, key j) -> ``[b, h, t, 2t-1]`` per (query i, offset j - i),
    0 where the offset points outside the sequence: the inverse skew of :func:`_offsets_to_keys`."""
    b, h, t, _ = per_key.shape
    flat = F.pad(per_key, (0, t - 1)).reshape(b, h, t * (2 * t - 1))
    return F.pad(flat, (t, 0)).view(b, h, t, 2 * t)[:, :, :, 1:]


class FeedForward(nn.Module):
    """Two 'same'-padded convolutions with a ReLU between them."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        # Even kernels pad one more on the right, as upstream does.
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(F.pad(x, self.pad)))
        return self.conv_2(F.pad(x, self.pad))


class TransformerEncoder(nn.Module):
    """Post-norm transformer layers (relative self-attention + conv feed-forward), VITS style."""

    def __init__(
        self,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        window_size: int = 4,
    ):
        super().__init__()
        self.attn_layers = nn.ModuleList(
            MultiHeadAttention(channels, channels, n_heads, window_size) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            FeedForward(channels, filter_channels, kernel_size) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, norm_1, ffn, norm_2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm_1(x + attn(x, x))
            x = norm_2(x + ffn(x))
        return x


# --------------------------------------------------------------------------- reference (style) encoder


class _GatedConv(nn.Module):
    """Residual 'same' convolution followed by a gated linear unit."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.conv(x).chunk(2, dim=1)
        return x + value * torch.sigmoid(gate)


def _mish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


class MelStyleEncoder(nn.Module):
    """Spectrogram -> one global style vector ``[batch, out_dim, 1]`` (Meta-StyleSpeech's encoder).

    Frame-wise MLP, two gated convolutions, one multi-head self-attention with a residual, a
    projection, then the average over time.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, kernel_size: int = 5, n_heads: int = 2):
        super().__init__()
        self.n_heads = n_heads
        self.spectral_in = nn.Linear(in_dim, hidden)
        self.spectral_out = nn.Linear(hidden, hidden)
        self.temporal = nn.ModuleList(_GatedConv(hidden, kernel_size) for _ in range(2))
        self.w_qs = nn.Linear(hidden, hidden)
        self.w_ks = nn.Linear(hidden, hidden)
        self.w_vs = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = spec.transpose(1, 2)  # [b, t, in_dim]
        x = _mish(self.spectral_out(_mish(self.spectral_in(x))))
        h = x.transpose(1, 2)
        for block in self.temporal:
            h = block(h)
        x = h.transpose(1, 2)
        x = x + self._self_attention(x)
        x = self.out(x)
        # Upstream averages in float32 (whatever the model dtype) and divides by the length before
        # summing rather than calling torch.mean; same here.
        return (x.float() / x.size(1)).sum(dim=1).to(x.dtype).unsqueeze(-1)

    def _self_attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        head_dim = hidden // self.n_heads

        def split(t: torch.Tensor) -> torch.Tensor:  # [b, t, hidden] -> [b, heads, t, head_dim]
            return t.view(batch, length, self.n_heads, head_dim).transpose(1, 2)

        q, k, v = split(self.w_qs(x)), split(self.w_ks(x)), split(self.w_vs(x))
        # Upstream quirk: the temperature is sqrt(hidden), not sqrt(head_dim).
        weights = F.softmax((q @ k.transpose(-2, -1)) / math.sqrt(hidden), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, length, hidden)
        return self.attn_out(out)


# --------------------------------------------------------------------------- MRTE


class MRTE(nn.Module):
    """Multi-reference timbre encoder: content attends to the phones, plus the global embedding."""

    def __init__(self, content_channels: int = 192, hidden: int = 512, n_heads: int = 4):
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden, hidden, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, content_channels, 1)

    def forward(self, content: torch.Tensor, text: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        content = self.c_pre(content)
        text = self.text_pre(text)
        x = self.cross_attention(content, text) + content + ge
        return self.c_post(x)


# --------------------------------------------------------------------------- normalizing flow


class WaveNet(nn.Module):
    """Non-causal WaveNet stack with a global conditioning input (gated tanh/sigmoid units)."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden = hidden
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                nn.Conv1d(
                    hidden,
                    2 * hidden,
                    kernel_size,
                    dilation=dilation,
                    padding=padding_for(kernel_size, dilation),
                )
            )
            # The last layer only feeds the skip output, so it has half the channels.
            self.res_skip_layers.append(nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1))
        self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = self.cond_layer(g)
        output = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            pre = in_layer(x) + g[:, 2 * self.hidden * i : 2 * self.hidden * (i + 1)]
            acts = torch.tanh(pre[:, : self.hidden]) * torch.sigmoid(pre[:, self.hidden :])
            res_skip_acts = res_skip(acts)
            if i < last:
                x = x + res_skip_acts[:, : self.hidden]
                output = output + res_skip_acts[:, self.hidden :]
            else:
                output = output + res_skip_acts
        return output


class MeanOnlyCoupling(nn.Module):
    """Affine coupling layer with a shift only (log-scale fixed at 0), run in the inverse direction."""

    def __init__(
        self, channels: int, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin: int
    ):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin)
        self.post = nn.Conv1d(hidden, self.half, 1)

    def inverse(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x0, x1 = x.split(self.half, dim=1)
        shift = self.post(self.enc(self.pre(x0), g))
        return torch.cat([x0, x1 - shift], dim=1)


class CouplingFlow(nn.Module):
    """A stack of couplings, each followed (in the forward direction) by a channel flip."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int,
        gin_channels: int,
    ):
        super().__init__()
        self.couplings = nn.ModuleList(
            MeanOnlyCoupling(channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels)
            for _ in range(n_flows)
        )

    def inverse(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Prior sample -> latent: undo each (coupling, flip) pair, last pair first."""
        for coupling in reversed(self.couplings):
            z = coupling.inverse(torch.flip(z, [1]), g)
        return z


# --------------------------------------------------------------------------- HiFi-GAN generator


class ResBlock1(nn.Module):
    """HiFi-GAN residual block type 1: three (dilated conv, conv) pairs with leaky ReLUs."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=padding_for(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=padding_for(kernel_size)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c1(F.leaky_relu(x, LEAKY_SLOPE))
            x = c2(F.leaky_relu(xt, LEAKY_SLOPE)) + x
        return x


class HiFiGANGenerator(nn.Module):
    """Latent frames -> waveform ``[batch, 1, frames * prod(upsample_rates)]`` in [-1, 1].

    SoVITS v1/v2 condition it on the speaker embedding ``g`` (``gin_channels`` > 0); v4's 48 kHz vocoder
    is the same generator without that input and with a bias on the last conv (``post_bias``).
    """

    def __init__(
        self,
        in_channels: int,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int,
        post_bias: bool = False,
    ):
        super().__init__()
        self.n_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1) if gin_channels else None
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            self.ups.append(
                nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
            )
            channels //= 2
            for k, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(channels, k, tuple(dilations)))
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=post_bias)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv_pre(x)
        if self.cond is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LEAKY_SLOPE))
            blocks = self.resblocks[i * self.n_kernels : (i + 1) * self.n_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.n_kernels
        # Upstream quirk: this last leaky ReLU uses torch's default slope (0.01), not 0.1.
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x)


# --------------------------------------------------------------------------- semantic codebook


class ResidualCodebooks(nn.Module):
    """The frozen residual vector quantizer that turns SSL features into semantic codes and back.

    Only the codebook vectors are kept; the EMA statistics in the checkpoint serve training only.
    """

    def __init__(self, n_codebooks: int, codebook_size: int, dim: int):
        super().__init__()
        self.register_buffer("embed", torch.zeros(n_codebooks, codebook_size, dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, dim, time]`` features -> ``[n_codebooks, batch, time]`` nearest-code indices."""
        residual = x.transpose(1, 2)  # [b, t, dim]
        codes = []
        for embed in self.embed:
            flat = residual.reshape(-1, residual.size(-1))
            # Same expression (and so the same rounding, which decides near-ties) as upstream:
            # the negated squared distance, maximised.
            score = -(
                flat.pow(2).sum(1, keepdim=True)
                - 2 * flat @ embed.t()
                + embed.t().pow(2).sum(0, keepdim=True)
            )
            index = score.max(dim=-1).indices.view(residual.shape[:-1])
            codes.append(index)
            residual = residual - F.embedding(index, embed)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[n, batch, time]`` indices (n <= n_codebooks) -> ``[batch, dim, time]`` summed code vectors."""
        total = F.embedding(codes[0], self.embed[0])
        for level in range(1, codes.size(0)):
            total = total + F.embedding(codes[level], self.embed[level])
        return total.transpose(1, 2)
