"""The SoVITS synthesizer of GPT-SoVITS v3 and v4 (inference parts): content features and the mel sampler.

v3/v4 do not decode audio themselves. ``decode_encp`` turns semantic codes and phones into content
features at the mel frame rate; the flow-matching sampler (``cfm``, see ``cfm.py`` and ``dit.py``)
turns features into a normalised mel, continuing a reference mel; a separate vocoder makes audio.

    codes --codebook, x2 (50 Hz)--+
    phones ------------------------+--> content encoder (MRTE) --> bridge --> nearest upsampling
    reference linear spec[:704] --style encoder--> ge ----+          (x1.875 v3, x2 v4: mel frame rate)
                                                          +--> WaveNet (wns1) --> features [1, 512, frames]

Upstream: ``module/models.py`` ``SynthesizerTrnV3.decode_encp`` / ``extract_latent`` and the mel
helpers of ``TTS_infer_pack/TTS.py`` (``mel_fn``, ``mel_fn_v4``, ``norm_spec``, ``denorm_spec``).

v3/v4 differ in the mel they model (v3: 24 kHz, hop 256; v4: 32 kHz, hop 320; both 100 bins) and
so in how much the 50 Hz content is stretched; see :data:`VARIANTS`. A fine-tuned model usually
comes as a LoRA file (header ``03``/``04``) on top of the pretrained base; :func:`merge_lora`
folds it into the base weights at load time.

Why this module is long: the v3/v4 synthesizer reads top to bottom like the paper's figure (config,
content encoder, flow-matching wrapper, upstream key map, LoRA merge, mel functions); the DiT and CFM
already live in their own modules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.audio_features import linear_spectrogram
from app.engine.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_state_strictly,
    read_header,
    weights_of,
)
from app.engine.models.cfm import FlowMatchingSampler
from app.engine.models.dit import DiT, DiTConfig
from app.engine.models.keymap import KeyMap, Rename
from app.engine.models.sovits import SOVITS_KEYS, convert_upstream_state, to_upstream_state
from app.engine.models.vits_modules import (
    MRTE,
    MelStyleEncoder,
    ResidualCodebooks,
    TransformerEncoder,
    WaveNet,
)

SSL_DIM = 768
REFERENCE_BINS = 704  # the style encoder reads the lowest 704 bins of the linear spectrogram
FEATURE_CHANNELS = 512  # upstream's width of bridge/wns1 and of the DiT's content input
MEL_BINS = 100

# --------------------------------------------------------------------------- mel spectrograms


@dataclass(frozen=True)
class MelConfig:
    sampling_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int = MEL_BINS
    fmin: float = 0.0
    fmax: float | None = None  # None: Nyquist


MEL_V3 = MelConfig(sampling_rate=24000, n_fft=1024, hop_length=256, win_length=1024)
MEL_V4 = MelConfig(sampling_rate=32000, n_fft=1280, hop_length=320, win_length=1280)

# Upstream normalises log-mels from [SPEC_MIN, SPEC_MAX] to [-1, 1] for the sampler.
SPEC_MIN = -12.0
SPEC_MAX = 2.0
LOG_CLIP = 1e-5  # magnitudes are clipped here before the log


def norm_spec(mel: torch.Tensor) -> torch.Tensor:
    return (mel - SPEC_MIN) / (SPEC_MAX - SPEC_MIN) * 2 - 1


def denorm_spec(mel: torch.Tensor) -> torch.Tensor:
    return (mel + 1) / 2 * (SPEC_MAX - SPEC_MIN) + SPEC_MIN


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / f_sp
    return np.where(
        hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / log_step, mel
    )


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(log_step * (mel - min_log_mel)), f_sp * mel)


@functools.cache
def mel_filterbank(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]`` float32 triangular filters, area-normalised (Slaney).

    The same numbers as ``librosa.filters.mel`` with its defaults, which upstream uses: computed in
    float64, each filter row rounded to float32, then scaled by its normalisation (rounded again).
    """
    fmax = sampling_rate / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sampling_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    distances = np.subtract.outer(edges, fft_freqs)  # [n_mels + 2, bins]
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        rising = -distances[i] / widths[i]
        falling = distances[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, np.newaxis]
    return weights


def mel_spectrogram(audio: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Log-mel ``[batch, n_mels, frames]`` of ``audio`` ``[batch, samples]`` at ``cfg.sampling_rate``.

    Upstream ``mel_spectrogram_torch(center=False)``: the linear magnitude spectrogram (reflect padding,
    Hann window), the mel filterbank, then ``log(max(x, 1e-5))``.
    """
    spec = linear_spectrogram(audio, cfg.n_fft, cfg.hop_length, cfg.win_length)
    basis = mel_filterbank(cfg.sampling_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    mel = torch.matmul(torch.from_numpy(basis).to(device=spec.device, dtype=spec.dtype), spec)
    return torch.log(torch.clamp(mel, min=LOG_CLIP))


def mel_spectrogram_v3(wav24k: torch.Tensor) -> torch.Tensor:
    """v3's mel (24 kHz audio ``[batch, samples]``): 100 bins, hop 256."""
    return mel_spectrogram(wav24k, MEL_V3)


def mel_spectrogram_v4(wav32k: torch.Tensor) -> torch.Tensor:
    """v4's mel (32 kHz audio ``[batch, samples]``): 100 bins, hop 320."""
    return mel_spectrogram(wav32k, MEL_V4)


# --------------------------------------------------------------------------- v3 / v4 settings


@dataclass(frozen=True)
class Variant:
    """What distinguishes v3 from v4, including the pipeline's chunking constants for the sampler."""

    name: str
    mel: MelConfig
    # Nearest-neighbour stretch of the 50 Hz content to the mel frame rate (v3: 93.75 Hz, v4: 100 Hz).
    feature_upsample: float
    # Length given to wns1's mask, in mel frames per semantic code. Quirk: for v3 it is 3.875, more
    # than the 3.75 frames the features actually have, so at speed 1 the mask hides nothing.
    mask_frames_per_code: float
    ref_frames: int  # upstream T_ref: at most this many reference frames prompt the sampler
    chunk_frames: int  # upstream T_chunk: prompt + generated frames per sampler call
    overlap_frames: int  # upstream overlapped_len: overlap between chunks in batched mode


VARIANTS: dict[str, Variant] = {
    "v3": Variant("v3", MEL_V3, 1.875, 3.875, ref_frames=468, chunk_frames=934, overlap_frames=12),
    "v4": Variant("v4", MEL_V4, 2.0, 4.0, ref_frames=500, chunk_frames=1000, overlap_frames=12),
}
HEADER_VERSIONS = {b"02": "v3", b"03": "v3", b"04": "v4"}
_WNS1_LAYER = re.compile(r"^wns1\.enc\.in_layers\.(\d+)\.")


@dataclass(frozen=True)
class SoVITSV3Config:
    version: str  # "v3" or "v4"
    n_symbols: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    inter_channels: int
    gin_channels: int
    n_codebooks: int = 1
    codebook_size: int = 1024
    # Upstream hard-codes these sizes (wns1: 512 wide, 8 layers; DiT: 22 blocks of width 1024) and
    # its config does not name them; from_checkpoint reads them from the weights, so official files
    # get exactly these and small (demo, test) files load too.
    feature_channels: int = FEATURE_CHANNELS
    wns1_layers: int = 8
    dit: DiTConfig = DiTConfig(text_dim=FEATURE_CHANNELS, mel_dim=MEL_BINS)

    @property
    def variant(self) -> Variant:
        return VARIANTS[self.version]

    @classmethod
    def from_checkpoint(
        cls, hparams: Mapping[str, Any], state: Mapping[str, torch.Tensor], version: str
    ) -> SoVITSV3Config:
        if version not in VARIANTS:
            raise ValueError(f"version {version!r} is not v3 or v4")
        try:
            model = hparams["model"]
            bridge = state.get("bridge.0.weight")
            features = FEATURE_CHANNELS if bridge is None else int(bridge.shape[0])
            wns1_layers = {int(m[1]) for key in state if (m := _WNS1_LAYER.match(key))}
            return cls(
                version=version,
                n_symbols=int(state["enc_p.text_embedding.weight"].shape[0]),
                hidden_channels=int(model["hidden_channels"]),
                filter_channels=int(model["filter_channels"]),
                n_heads=int(model["n_heads"]),
                n_layers=int(model["n_layers"]),
                kernel_size=int(model["kernel_size"]),
                inter_channels=int(model["inter_channels"]),
                gin_channels=int(model["gin_channels"]),
                feature_channels=features,
                # A missing layer is reported by the strict load, so count up to the highest index.
                wns1_layers=max(wns1_layers) + 1 if wns1_layers else 8,
                dit=DiTConfig.sized_like(state, "cfm.estimator.", mel_dim=MEL_BINS, text_dim=features),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a usable v3/v4 SoVITS config ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- modules


class ContentEncoder(nn.Module):
    """Content codes + phones + global embedding -> hidden features (``enc_p`` up to its last encoder).

    The v1/v2 prior encoder's layers; v3/v4 use its hidden state, not the mean/log-std projection.
    """

    def __init__(self, cfg: SoVITSV3Config):
        super().__init__()
        hidden = cfg.hidden_channels

        def encoder(n_layers: int) -> TransformerEncoder:
            return TransformerEncoder(hidden, cfg.filter_channels, cfg.n_heads, n_layers, cfg.kernel_size)

        self.ssl_proj = nn.Conv1d(SSL_DIM, hidden, 1)
        self.encoder_ssl = encoder(cfg.n_layers // 2)
        self.text_embedding = nn.Embedding(cfg.n_symbols, hidden)
        self.encoder_text = encoder(cfg.n_layers)
        self.mrte = MRTE(content_channels=hidden)
        self.encoder2 = encoder(cfg.n_layers // 2)

    def forward(
        self, content: torch.Tensor, phones: torch.Tensor, ge: torch.Tensor, speed: float
    ) -> torch.Tensor:
        x = self.encoder_ssl(self.ssl_proj(content))
        text = self.encoder_text(self.text_embedding(phones).transpose(1, 2))
        x = self.encoder2(self.mrte(x, text, ge))
        if speed != 1:
            # Speed changes the frame count by linear resampling; upstream adds one frame.
            x = F.interpolate(x, size=int(x.size(-1) / speed) + 1, mode="linear")
        return x


class MaskedWaveNetEncoder(nn.Module):
    """1x1 conv, a global-conditioned WaveNet, 1x1 conv, with frames past ``length`` zeroed (``wns1``).

    The mask matters here, unlike in the v1/v2 blocks: with speed != 1 the mask length upstream
    computes can be shorter than the features, and the WaveNet then zeroes the tail after every layer.
    """

    def __init__(self, channels: int, kernel_size: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.pre = nn.Conv1d(channels, channels, 1)
        self.enc = WaveNet(
            channels, kernel_size, dilation_rate=1, n_layers=n_layers, gin_channels=gin_channels
        )
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, length: int, g: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.size(-1), device=x.device) < length).to(x.dtype).view(1, 1, -1)
        x = self.pre(x) * mask
        wavenet, hidden = self.enc, self.enc.hidden
        g = wavenet.cond_layer(g)
        output = torch.zeros_like(x)
        last = len(wavenet.in_layers) - 1
        for i, (in_layer, res_skip) in enumerate(
            zip(wavenet.in_layers, wavenet.res_skip_layers, strict=True)
        ):
            pre = in_layer(x) + g[:, 2 * hidden * i : 2 * hidden * (i + 1)]
            acts = torch.tanh(pre[:, :hidden]) * torch.sigmoid(pre[:, hidden:])
            res_skip_acts = res_skip(acts)
            if i < last:
                x = (x + res_skip_acts[:, :hidden]) * mask
                output = output + res_skip_acts[:, hidden:]
            else:
                output = output + res_skip_acts
        return self.proj(output * mask) * mask


class SoVITSV3(nn.Module):
    """GPT-SoVITS v3/v4 synthesizer: ``decode_encp`` (codes -> features), ``cfm`` (features -> mel),
    ``encode_prompt`` (SSL features -> codes)."""

    def __init__(self, cfg: SoVITSV3Config):
        super().__init__()
        self.config = cfg
        self.enc_p = ContentEncoder(cfg)
        self.ref_enc = MelStyleEncoder(REFERENCE_BINS, cfg.gin_channels)
        # 25 Hz semantic codes: two SSL frames (50 Hz) per code. Upstream forces "25hz" at load.
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, 2, stride=2)
        self.quantizer = ResidualCodebooks(cfg.n_codebooks, cfg.codebook_size, SSL_DIM)
        self.bridge = nn.Sequential(nn.Conv1d(cfg.inter_channels, cfg.feature_channels, 1), nn.LeakyReLU())
        self.wns1 = MaskedWaveNetEncoder(cfg.feature_channels, 5, cfg.wns1_layers, cfg.gin_channels)
        self.cfm = FlowMatchingSampler(DiT(cfg.dit))

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        base_path: str | Path | None = None,
        *,
        version: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SoVITSV3:
        """Load a v3/v4 SoVITS file strictly; a LoRA file (it has ``lora_rank``) is merged into ``base_path``.

        ``version`` ("v3"/"v4"): as the registry resolved it. Without it: the file header (``02``/``03``
        v3, ``04`` v4), else the config's own ``model.version``, else v3 (upstream's rule for large
        headerless files). The model comes back in eval mode on ``device`` in ``dtype`` (default CPU
        float32).
        """
        checkpoint = load_checkpoint(path)
        state = weights_of(checkpoint, path)
        hparams = checkpoint.get("config") or {}
        if checkpoint.get("lora_rank") is not None:
            if base_path is None:
                raise CheckpointError(path, "is a LoRA file; its base model (base_path) is needed")
            rank = checkpoint["lora_rank"]
            if not isinstance(rank, int | str) or not str(rank).isdigit() or int(rank) < 1:
                raise CheckpointError(path, f"has an unusable lora_rank {rank!r}")
            base_state = weights_of(load_checkpoint(base_path), base_path)
            state = merge_lora(base_state, state, int(rank), source=path)
        if version is None:
            version = HEADER_VERSIONS.get(read_header(path))
        if version is None:
            declared = (hparams.get("model") or {}).get("version") if isinstance(hparams, Mapping) else None
            version = declared if declared in VARIANTS else "v3"
        model = cls.from_state_dict(state, hparams, version, source=path)
        return model.to(device=device, dtype=dtype)

    @classmethod
    def from_state_dict(
        cls,
        upstream: Mapping[str, torch.Tensor],
        hparams: Mapping[str, Any],
        version: str,
        source: str | Path = "state dict",
    ) -> SoVITSV3:
        """Build from an upstream ``SynthesizerTrnV3`` state dict (LoRA already merged) and its config."""
        if not any(key.startswith("cfm.") for key in upstream):
            raise CheckpointError(source, "has no CFM: not a v3/v4 SoVITS model")
        if "enc_p.text_embedding.weight" not in upstream:
            raise CheckpointError(source, "has no text embedding (enc_p.text_embedding.weight)")
        try:
            cfg = SoVITSV3Config.from_checkpoint(hparams, upstream, version)
            state = convert_v3_state(upstream)
        except ValueError as exc:
            raise CheckpointError(source, str(exc)) from None
        model = cls(cfg)
        load_state_strictly(model, state, source, ignore_unexpected=UNUSED_CHECKPOINT_PREFIXES)
        return model.eval()

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def global_embedding(self, refer_spec: torch.Tensor) -> torch.Tensor:
        """Timbre vector ``[1, gin_channels, 1]`` of a linear reference spectrogram ``[1, bins, frames]``."""
        spec = refer_spec.to(device=self._device, dtype=self._dtype)
        return self.ref_enc(spec[:, :REFERENCE_BINS])

    @torch.no_grad()
    def decode_encp(
        self,
        codes: torch.Tensor,
        text: torch.Tensor,
        refer_spec: torch.Tensor,
        ge: torch.Tensor | None = None,
        speed: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Semantic codes -> content features ``[1, 512, frames]`` at the mel frame rate, and ``ge``.

        ``codes``: ``[n_codebooks, 1, n_codes]`` (25 Hz); ``text``: ``[1, n_phones]`` symbol ids;
        ``refer_spec``: the reference's linear spectrogram at the model rate (only used when ``ge`` is
        None; pass the returned ``ge`` back to skip the style encoder). ``speed`` > 1 is faster speech.
        """
        if ge is None:
            ge = self.global_embedding(refer_spec)
        n_codes = codes.size(-1)
        variant = self.config.variant
        if speed == 1:
            mask_length = int(n_codes * variant.mask_frames_per_code)
        else:
            mask_length = int(n_codes * variant.mask_frames_per_code / speed) + 1

        content = self.quantizer.decode(codes.to(self._device))
        content = F.interpolate(content, scale_factor=2, mode="nearest")  # 25 Hz -> 50 Hz
        x = self.enc_p(content, text.to(self._device), ge, speed)
        features = self.bridge(x)
        features = F.interpolate(features, scale_factor=variant.feature_upsample, mode="nearest")
        return self.wns1(features, mask_length, ge), ge

    @torch.no_grad()
    def encode_prompt(self, ssl_features: torch.Tensor) -> torch.Tensor:
        """SSL features ``[batch, 768, frames]`` (50 Hz) -> semantic codes ``[batch, n_codebooks, frames // 2]``."""
        x = self.ssl_proj(ssl_features.to(device=self._device, dtype=self._dtype))
        return self.quantizer.encode(x).transpose(0, 1)

    @property
    def _dtype(self) -> torch.dtype:
        return self.ssl_proj.weight.dtype

    @property
    def _device(self) -> torch.device:
        return self.ssl_proj.weight.device


# --------------------------------------------------------------------------- checkpoints

# Keys official files carry that inference never reads (upstream loads with strict=False):
# - enc_p.proj: the prior's mean/log-std projection; v3/v4 decode from the encoder's hidden state;
# - linear_mel: a training-time mel head;
# - quantizer.vq.layers.*: the codebook's EMA statistics (the vectors themselves are mapped away).
UNUSED_CHECKPOINT_PREFIXES = ("enc_p.proj.", "linear_mel.", "quantizer.vq.layers.")

# peft wraps the CFM when a LoRA is attached, so LoRA files name its keys under this prefix.
PEFT_CFM_PREFIX = "cfm.base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.default\.weight$")


def merge_lora(
    base: Mapping[str, torch.Tensor],
    lora: Mapping[str, torch.Tensor],
    rank: int,
    alpha: float | None = None,
    source: str | Path = "LoRA file",
) -> dict[str, torch.Tensor]:
    """The upstream state dict of ``base`` with a v3/v4 LoRA file applied, as upstream loads it.

    Every plain tensor of the LoRA file replaces the base's (fine-tuning also trains the style encoder,
    codebook, bridge and wns1, and the file repeats the rotary frequencies). Each adapted linear layer
    (upstream targets the DiT's to_q/to_k/to_v/to_out.0) gets ``W + (B @ A) * alpha / rank`` in float32;
    upstream's LoRA config sets ``alpha = rank``, so the default scale is 1.
    """
    scale = (rank if alpha is None else alpha) / rank
    merged = dict(base)
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        if key.startswith(PEFT_CFM_PREFIX):
            key = "cfm." + key[len(PEFT_CFM_PREFIX) :]
        if match := _LORA_KEY.match(key):
            adapters.setdefault(match["module"], {})[match["part"]] = value
        else:
            merged[key] = value
    for module, parts in sorted(adapters.items()):
        weight_key = f"{module}.weight"
        if set(parts) != {"A", "B"}:
            raise CheckpointError(
                source, f"LoRA for {module} lacks its lora_{'A' if 'A' not in parts else 'B'}"
            )
        if weight_key not in merged:
            raise CheckpointError(source, f"LoRA targets {module}, which the base model does not have")
        weight, down, up = merged[weight_key].float(), parts["A"].float(), parts["B"].float()
        if up.shape[1] != down.shape[0] or (up.shape[0], down.shape[1]) != tuple(weight.shape):
            raise CheckpointError(
                source,
                f"LoRA for {module} has shapes {tuple(up.shape)} @ {tuple(down.shape)}, weight {tuple(weight.shape)}",
            )
        merged[weight_key] = weight + (up @ down) * scale
    return merged


# The v1/v2 table (style encoder, ...) plus the wrappers of the DiT we flattened and the wns1
# encoder's weight-normed layers. Read both ways: convert_v3_state and to_upstream_v3_state.
_DIT_BLOCK = "cfm.estimator.transformer_blocks.{i}."
V3_KEYS = SOVITS_KEYS + KeyMap(
    renames=(
        Rename(_DIT_BLOCK + "attn_norm.linear.", _DIT_BLOCK + "attn_norm."),
        Rename(_DIT_BLOCK + "attn.to_out.0.", _DIT_BLOCK + "attn.to_out."),
        Rename(_DIT_BLOCK + "ff.ff.0.0.", _DIT_BLOCK + "ff.0."),
        Rename(_DIT_BLOCK + "ff.ff.2.", _DIT_BLOCK + "ff.2."),
        Rename("cfm.estimator.norm_out.linear.", "cfm.estimator.norm_out."),
        Rename(
            "cfm.estimator.input_embed.conv_pos_embed.conv1d.", "cfm.estimator.input_embed.conv_pos_embed."
        ),
        Rename("cfm.estimator.rotary_embed.inv_freq", "cfm.estimator.rotary_inv_freq"),
    ),
    weight_normed=("wns1.enc.in_layers.{i}", "wns1.enc.res_skip_layers.{i}", "wns1.enc.cond_layer"),
)
# Upstream's SynthesizerTrnV3 modules in the order it defines them, which is the order of its files.
UPSTREAM_MODULE_ORDER = ("enc_p", "ref_enc", "ssl_proj", "quantizer", "bridge", "wns1", "linear_mel", "cfm")


def convert_v3_state(upstream: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Upstream ``SynthesizerTrnV3`` state dict -> ours (float32): the v1/v2 conversion (weight norm
    folded, codebooks stacked, style encoder renamed) plus the DiT's flattened names."""
    return convert_upstream_state(upstream, V3_KEYS)


def to_upstream_v3_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> the keys and tensors upstream's ``SynthesizerTrnV3`` saves (the inverse of
    :func:`convert_v3_state`, see :func:`~app.engine.models.sovits.to_upstream_state`), in upstream's
    module order. Keys it does not know keep their name and go with their module, so ``state`` may
    also hold the layers of :func:`upstream_only_layers` (upstream-named); the result then has every
    key upstream's strict loaders expect."""
    upstream = to_upstream_state(state, V3_KEYS)
    last = len(UPSTREAM_MODULE_ORDER)

    def position(key: str) -> int:
        module = key.partition(".")[0]
        return UPSTREAM_MODULE_ORDER.index(module) if module in UPSTREAM_MODULE_ORDER else last

    return {key: upstream[key] for key in sorted(upstream, key=position)}  # stable: keeps each module's order


def upstream_only_layers(cfg: SoVITSV3Config) -> dict[str, nn.Module]:
    """Fresh (untrained) layers upstream's files hold but inference never uses, which our model does
    not build (see ``UNUSED_CHECKPOINT_PREFIXES``), by upstream's name: the prior's mean/log-std
    projection ``enc_p.proj`` and the training-time mel head ``linear_mel``."""
    return {
        "enc_p.proj": nn.Conv1d(cfg.hidden_channels, 2 * cfg.inter_channels, 1),
        "linear_mel": nn.Conv1d(cfg.feature_channels, MEL_BINS, 1),
    }
