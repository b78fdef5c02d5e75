"""The SoVITS synthesizer of GPT-SoVITS v1, v2, v2Pro and v2ProPlus (inference only).

Semantic codes from the GPT stage plus the phone ids of the same text become a waveform:

    codes --codebook--> content (25 Hz, doubled to 50 Hz) --+
    phones --embedding + transformer------------------------+--> PriorEncoder (MRTE) --> mean, log-std
    reference spectrograms --style encoder--> ge -----------+         |
                         (v2Pro: + speaker embedding)                 v
                                            z = mean (+ noise) --inverse flow(ge)--> HiFi-GAN(ge) --> audio

``encode_prompt`` runs the other direction for the prompt audio: SSL (HuBERT) features -> codes.

The module follows upstream ``SynthesizerTrn.decode``/``extract_latent`` (module/models.py) op for
op, keeping only what inference uses. The posterior encoder ``enc_q`` (training only) is not
built; see ``UNUSED_CHECKPOINT_PREFIXES``.

Why this module is long: it is the one model file (config, prior encoder, the model with its
whole-utterance and streaming decodes, and the checkpoint key map), read top to bottom like
nanoGPT's ``model.py``; the building blocks already live in ``vits_modules``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_state_strictly,
    read_header,
    weights_of,
)
from app.engine.models.keymap import KeyMap, Rename
from app.engine.models.vits_modules import (
    MRTE,
    CouplingFlow,
    HiFiGANGenerator,
    MelStyleEncoder,
    ResidualCodebooks,
    TransformerEncoder,
    fold_weight_norm,
)
from app.engine.text.symbols import text_version, text_version_of_table

SSL_DIM = 768  # HuBERT feature size
V2_REFERENCE_BINS = 704  # v2+ style encoders only see the lowest 704 spectrogram bins
SPEAKER_EMBEDDING_DIM = 20480  # ERes2NetV2 embedding fed to v2Pro/v2ProPlus
PRO_HEADERS = {b"05": "v2Pro", b"06": "v2ProPlus"}

# Keys official files may carry that inference never reads (upstream loads with strict=False):
# - the posterior encoder, used only to train (present in the pretrained s2G files);
# - the quantizer's EMA statistics and init flag (after the codebook vectors are mapped away,
#   only those remain under this prefix).
UNUSED_CHECKPOINT_PREFIXES = ("enc_q.", "quantizer.vq.layers.")


@dataclass(frozen=True)
class SoVITSConfig:
    version: str  # "v1", "v2", "v2Pro" or "v2ProPlus"
    n_symbols: int
    spec_channels: int  # linear spectrogram bins (filter_length // 2 + 1)
    sampling_rate: int
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    gin_channels: int
    n_codebooks: int = 1
    codebook_size: int = 1024

    @property
    def uses_speaker_embedding(self) -> bool:
        return self.version in ("v2Pro", "v2ProPlus")

    @property
    def reference_bins(self) -> int:
        """How many spectrogram bins the style encoder reads."""
        return self.spec_channels if text_version(self.version) == "v1" else V2_REFERENCE_BINS

    @property
    def samples_per_code(self) -> int:
        """Output samples per semantic code (codes are 25 Hz, the decoder runs at 50 Hz)."""
        return 2 * math.prod(self.upsample_rates)

    @classmethod
    def from_checkpoint(
        cls,
        hparams: Mapping[str, Any],
        state: Mapping[str, torch.Tensor],
        header: bytes = b"PK",
        detected: str | None = None,
    ) -> SoVITSConfig:
        """Read the sizes from a .pth file's embedded config; the version as upstream decides it.

        Upstream ignores the config's own ``version``: the symbol set follows the text-embedding
        size, and a model is v2Pro/v2ProPlus when the file's version detection says so: the header
        (``05``/``06``), or ``detected``, the registry's answer (official pretrained Pro files are plain
        zips that upstream knows by their md5, and we also by their pretrained path).
        """
        try:
            model, data = hparams["model"], hparams["data"]
            if model.get("resblock", "1") != "1":
                raise ValueError(f"resblock type {model['resblock']!r} (GPT-SoVITS only uses type '1')")
            n_symbols = int(state["enc_p.text_embedding.weight"].shape[0])
            version = detected if detected in PRO_HEADERS.values() else PRO_HEADERS.get(header)
            if version is None:
                version = text_version_of_table(n_symbols)
            return cls(
                version=version,
                n_symbols=n_symbols,
                spec_channels=int(data["filter_length"]) // 2 + 1,
                sampling_rate=int(data["sampling_rate"]),
                inter_channels=int(model["inter_channels"]),
                hidden_channels=int(model["hidden_channels"]),
                filter_channels=int(model["filter_channels"]),
                n_heads=int(model["n_heads"]),
                n_layers=int(model["n_layers"]),
                kernel_size=int(model["kernel_size"]),
                resblock_kernel_sizes=tuple(int(k) for k in model["resblock_kernel_sizes"]),
                resblock_dilation_sizes=tuple(
                    tuple(int(d) for d in ds) for ds in model["resblock_dilation_sizes"]
                ),
                upsample_rates=tuple(int(r) for r in model["upsample_rates"]),
                upsample_initial_channel=int(model["upsample_initial_channel"]),
                upsample_kernel_sizes=tuple(int(k) for k in model["upsample_kernel_sizes"]),
                gin_channels=int(model["gin_channels"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a usable SoVITS config ({type(exc).__name__}: {exc})") from None


class PriorEncoder(nn.Module):
    """Content codes + phones + global embedding -> mean and log-std of the latent prior (``enc_p``)."""

    def __init__(self, cfg: SoVITSConfig):
        super().__init__()
        hidden = cfg.hidden_channels
        self.out_channels = cfg.inter_channels
        self.ssl_proj = nn.Conv1d(SSL_DIM, hidden, 1)
        self.encoder_ssl = TransformerEncoder(
            hidden, cfg.filter_channels, cfg.n_heads, cfg.n_layers // 2, cfg.kernel_size
        )
        self.text_embedding = nn.Embedding(cfg.n_symbols, hidden)
        self.encoder_text = TransformerEncoder(
            hidden, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size
        )
        self.mrte = MRTE(content_channels=hidden)
        self.encoder2 = TransformerEncoder(
            hidden, cfg.filter_channels, cfg.n_heads, cfg.n_layers // 2, cfg.kernel_size
        )
        self.proj = nn.Conv1d(hidden, 2 * cfg.inter_channels, 1)

    def forward(
        self, content: torch.Tensor, phones: torch.Tensor, ge: torch.Tensor, speed: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prior(self.latent(content, phones, ge), speed)

    def latent(
        self,
        content: torch.Tensor,
        phones: torch.Tensor,
        ge: torch.Tensor,
        keep_frames: int | None = None,
        overlap: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Content + phones + timbre -> the latent sequence ``[1, hidden, frames]`` (before speed).

        Streaming (upstream's ``decode_streaming``): ``keep_frames`` keeps only the last frames;
        ``overlap`` (the previous chunk's last latent frames) is blended into the first frames with
        the rising and falling halves of a sine window.
        """
        x = self.encoder_ssl(self.ssl_proj(content))
        text = self.encoder_text(self.text_embedding(phones).transpose(1, 2))
        x = self.encoder2(self.mrte(x, text, ge))
        if keep_frames is not None:
            x = x[:, :, -keep_frames:]
        if overlap is not None:
            n = overlap.shape[-1]
            window = torch.sin(torch.arange(2 * n, device=x.device) * math.pi / (2 * n))
            x = x.clone()
            x[:, :, :n] = window[:n] * x[:, :, :n] + window[n:] * overlap
        return x

    def prior(self, latent: torch.Tensor, speed: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent -> mean and log-std of the prior, at ``speed``."""
        if speed != 1:
            # Speed changes the frame count by linear resampling; upstream adds one frame.
            latent = F.interpolate(latent, size=int(latent.size(-1) / speed) + 1, mode="linear")
        mean, log_std = self.proj(latent).split(self.out_channels, dim=1)
        return mean, log_std


class SoVITSSynthesizer(nn.Module):
    """GPT-SoVITS v1/v2/v2Pro/v2ProPlus synthesizer: ``decode`` (codes -> audio), ``encode_prompt``."""

    def __init__(self, cfg: SoVITSConfig):
        super().__init__()
        self.config = cfg
        self.enc_p = PriorEncoder(cfg)
        self.dec = HiFiGANGenerator(
            cfg.inter_channels,
            list(cfg.resblock_kernel_sizes),
            [list(d) for d in cfg.resblock_dilation_sizes],
            list(cfg.upsample_rates),
            cfg.upsample_initial_channel,
            list(cfg.upsample_kernel_sizes),
            cfg.gin_channels,
        )
        self.flow = CouplingFlow(
            cfg.inter_channels,
            cfg.hidden_channels,
            kernel_size=5,
            dilation_rate=1,
            n_layers=4,
            n_flows=4,
            gin_channels=cfg.gin_channels,
        )
        self.ref_enc = MelStyleEncoder(cfg.reference_bins, cfg.gin_channels)
        # 25 Hz semantic codes: two SSL frames (50 Hz) per code. Upstream forces "25hz" at load.
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, 2, stride=2)
        self.quantizer = ResidualCodebooks(cfg.n_codebooks, cfg.codebook_size, SSL_DIM)
        if cfg.uses_speaker_embedding:
            self.sv_emb = nn.Linear(SPEAKER_EMBEDDING_DIM, cfg.gin_channels)
            self.prelu = nn.PReLU(num_parameters=cfg.gin_channels)
            self.ge_to512 = nn.Linear(cfg.gin_channels, 512)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> SoVITSSynthesizer:
        """Build the model an official SoVITS ``.pth`` describes and load it strictly (CPU, float32, eval)."""
        checkpoint = load_checkpoint(path)
        return cls.from_state_dict(
            weights_of(checkpoint, path), checkpoint.get("config") or {}, read_header(path), source=path
        )

    @classmethod
    def from_state_dict(
        cls,
        upstream: Mapping[str, torch.Tensor],
        hparams: Mapping[str, Any],
        header: bytes = b"PK",
        source: str | Path = "state dict",
        detected: str | None = None,
    ) -> SoVITSSynthesizer:
        """Same as ``from_checkpoint`` for an already loaded upstream state dict, config and file header
        (``detected``: the registry's model version, see :meth:`SoVITSConfig.from_checkpoint`).

        Raises CheckpointError (naming ``source``) when the weights do not fit exactly.
        """
        if any(key.startswith("cfm.") for key in upstream):
            raise CheckpointError(source, "is a v3/v4 SoVITS model (it has a CFM), not v1/v2/v2Pro/v2ProPlus")
        if "enc_p.text_embedding.weight" not in upstream:
            raise CheckpointError(source, "has no text embedding (enc_p.text_embedding.weight)")
        try:
            cfg = SoVITSConfig.from_checkpoint(hparams, upstream, header, detected)
            state = convert_upstream_state(upstream)
        except ValueError as exc:
            raise CheckpointError(source, str(exc)) from None
        model = cls(cfg)
        load_state_strictly(model, state, source, ignore_unexpected=UNUSED_CHECKPOINT_PREFIXES)
        return model.eval()

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def encode_prompt(self, ssl_features: torch.Tensor) -> torch.Tensor:
        """SSL features ``[batch, 768, frames]`` (50 Hz) -> semantic codes ``[batch, n_codebooks, frames // 2]``.

        Upstream's ``extract_latent``; the prompt codes the GPT stage needs are ``codes[0, 0]``.
        """
        x = self.ssl_proj(ssl_features.to(device=self._device, dtype=self._dtype))
        return self.quantizer.encode(x).transpose(0, 1)

    @torch.no_grad()
    def global_embedding(
        self, refer_specs: Sequence[torch.Tensor], sv_embs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Timbre vector ``[1, gin_channels, 1]``: the mean over references of each one's embedding.

        ``refer_specs``: linear spectrograms ``[1, spec_channels, frames]`` at the model rate.
        ``sv_embs`` (v2Pro/v2ProPlus only, one per reference): speaker embeddings ``[1, 20480]``.
        """
        if not refer_specs:
            raise ValueError("at least one reference spectrogram is needed")
        if self.config.uses_speaker_embedding:
            if sv_embs is None or len(sv_embs) != len(refer_specs):
                raise ValueError(
                    f"{self.config.version} needs one speaker embedding per reference spectrogram"
                )
        per_reference = []
        for k, spec in enumerate(refer_specs):
            spec = spec.to(device=self._device, dtype=self._dtype)
            ge = self.ref_enc(spec[:, : self.config.reference_bins])
            if self.config.uses_speaker_embedding:
                ge = self.prelu(
                    ge + self.sv_emb(sv_embs[k].to(device=self._device, dtype=self._dtype)).unsqueeze(-1)
                )
            per_reference.append(ge)
        return torch.stack(per_reference).mean(0)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        phones: torch.Tensor,
        refer_specs: Sequence[torch.Tensor],
        speed: float = 1.0,
        sv_embs: Sequence[torch.Tensor] | None = None,
        noise_scale: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Semantic codes -> waveform ``[1, 1, samples]`` in [-1, 1] at ``config.sampling_rate``.

        ``codes``: ``[n_codebooks, 1, n_codes]`` (25 Hz). ``phones``: ``[1, n_phones]`` symbol ids.
        ``refer_specs``/``sv_embs``: as in ``global_embedding`` (several references are averaged).
        ``speed`` > 1 speaks faster. ``noise_scale`` scales the Gaussian sample around the prior mean
        (upstream's default 0.5; 0 makes the output a deterministic function of the inputs), drawn
        from ``generator`` when given.
        """
        audio, _ = self.decode_streaming(codes, phones, refer_specs, speed, sv_embs, noise_scale, generator)
        return audio

    @torch.no_grad()
    def decode_streaming(
        self,
        codes: torch.Tensor,
        phones: torch.Tensor,
        refer_specs: Sequence[torch.Tensor],
        speed: float = 1.0,
        sv_embs: Sequence[torch.Tensor] | None = None,
        noise_scale: float = 0.5,
        generator: torch.Generator | None = None,
        keep_codes: int | None = None,
        overlap_latent: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``decode`` for one chunk of a stream (upstream's ``decode_streaming``): all codes of the
        piece so far are encoded (the text encoder sees the whole context), but only the last
        ``keep_codes`` codes' frames go on to the flow and HiFi-GAN; ``overlap_latent`` (the previous
        chunk's last latent frames) is cross-faded into their start. Returns the waveform
        ``[1, 1, samples]`` and the latent ``[1, hidden, frames]`` the next chunk overlaps with."""
        ge = self.global_embedding(refer_specs, sv_embs)
        # MRTE works in 512 channels; v2Pro's 1024-channel embedding is projected down for it.
        mrte_ge = (
            self.ge_to512(ge.transpose(1, 2)).transpose(1, 2) if self.config.uses_speaker_embedding else ge
        )

        content = self.quantizer.decode(codes.to(self._device))
        content = content.repeat_interleave(2, dim=-1)  # 25 Hz codes -> 50 Hz frames (nearest)
        keep_frames = None if keep_codes is None else 2 * keep_codes
        latent = self.enc_p.latent(content, phones.to(self._device), mrte_ge, keep_frames, overlap_latent)
        mean, log_std = self.enc_p.prior(latent, speed)
        z = mean
        if noise_scale:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + noise * torch.exp(log_std) * noise_scale
        z = self.flow.inverse(z, ge)
        return self.dec(z, ge), latent

    @property
    def _dtype(self) -> torch.dtype:
        return self.ssl_proj.weight.dtype

    @property
    def _device(self) -> torch.device:
        return self.ssl_proj.weight.device


# --------------------------------------------------------------------------- checkpoint key mapping

# Upstream's key prefixes and ours, for the modules whose structure we flattened (everything else
# keeps upstream's name), and the layers upstream wraps in weight norm. Read both ways: loading
# (convert_upstream_state) and writing upstream's format (to_upstream_state).
SOVITS_KEYS = KeyMap(
    renames=(
        # Flows alternate coupling, flip, coupling, flip...; flips have no weights.
        Rename("flow.flows.{i}.", "flow.couplings.{i}.", upstream_stride=2),
        Rename("ref_enc.spectral.0.fc.", "ref_enc.spectral_in."),
        Rename("ref_enc.spectral.3.fc.", "ref_enc.spectral_out."),
        Rename("ref_enc.temporal.{i}.conv1.conv.", "ref_enc.temporal.{i}.conv."),
        Rename("ref_enc.slf_attn.fc.", "ref_enc.attn_out."),
        Rename("ref_enc.slf_attn.w_qs.", "ref_enc.w_qs."),
        Rename("ref_enc.slf_attn.w_ks.", "ref_enc.w_ks."),
        Rename("ref_enc.slf_attn.w_vs.", "ref_enc.w_vs."),
        Rename("ref_enc.fc.fc.", "ref_enc.out."),
    ),
    weight_normed=(
        "dec.ups.{i}",
        "dec.resblocks.{i}.convs1.{i}",
        "dec.resblocks.{i}.convs2.{i}",
        "flow.couplings.{i}.enc.in_layers.{i}",
        "flow.couplings.{i}.enc.res_skip_layers.{i}",
        "flow.couplings.{i}.enc.cond_layer",
    ),
)
_CODEBOOK_KEY = re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.embed$")
_CODEBOOK_PREFIX = "quantizer.vq.layers.{}._codebook."
_STACKED_CODEBOOKS = "quantizer.embed"


def convert_upstream_state(
    upstream: Mapping[str, torch.Tensor], keys: KeyMap = SOVITS_KEYS
) -> dict[str, torch.Tensor]:
    """Upstream ``SynthesizerTrn`` state dict -> ours (float32).

    Folds every ``weight_g``/``weight_v`` pair into ``weight``, stacks the quantizer codebooks into
    one ``quantizer.embed`` tensor and renames flattened modules by ``keys``. Keys it does not
    recognise pass through unchanged, so the strict check that follows reports them.
    """
    rename = keys.to_ours
    state: dict[str, torch.Tensor] = {}
    codebooks: dict[int, torch.Tensor] = {}
    for key, value in upstream.items():
        if key.endswith(".weight_v"):
            continue  # handled with its weight_g
        if key.endswith(".weight_g"):
            stem = key[: -len("_g")]
            if stem + "_v" in upstream:
                state[rename(stem)] = fold_weight_norm(value, upstream[stem + "_v"])
                continue
        if match := _CODEBOOK_KEY.match(key):
            codebooks[int(match.group(1))] = value.float()
            continue
        state[rename(key)] = value.float() if value.is_floating_point() else value
    # A lone weight_v (its weight_g missing) passes through so the check names it.
    for key, value in upstream.items():
        if key.endswith(".weight_v") and key[: -len("_v")] + "_g" not in upstream:
            state[rename(key)] = value
    if codebooks:
        if sorted(codebooks) != list(range(len(codebooks))):
            raise ValueError(f"quantizer codebooks are not numbered 0..n-1: {sorted(codebooks)}")
        state[_STACKED_CODEBOOKS] = torch.stack([codebooks[i] for i in range(len(codebooks))])
    return state


def to_upstream_state(
    state: Mapping[str, torch.Tensor], keys: KeyMap = SOVITS_KEYS
) -> dict[str, torch.Tensor]:
    """Our state dict -> the keys and tensors upstream's ``SynthesizerTrn`` saves: the inverse of
    :func:`convert_upstream_state` (which gives ``state`` back, plus the codebook statistics).

    Renames by ``keys``; each weight-normed layer's weight becomes direction ``weight_v`` (the weight
    itself) and magnitude ``weight_g`` (its norm per output slice), so folding them gives the weight
    again. The stacked codebooks become upstream's per-layer ``_codebook`` buffers, with the EMA
    statistics upstream's training keeps (set so that ``embed_avg / cluster_size == embed``). Keys it
    does not know keep their name. Tensors are not copied: the result shares memory with ``state``.
    """
    upstream: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == _STACKED_CODEBOOKS:
            for level, embed in enumerate(tensor):
                prefix = _CODEBOOK_PREFIX.format(level)
                upstream[prefix + "inited"] = torch.ones(1)
                upstream[prefix + "cluster_size"] = torch.ones(embed.shape[0])
                upstream[prefix + "embed"] = embed
                upstream[prefix + "embed_avg"] = embed
            continue
        key = keys.to_upstream(name)
        if keys.is_weight_normed(name):
            stem = key[: -len("weight")]
            upstream[stem + "weight_g"] = tensor.flatten(1).norm(dim=1).view(-1, *([1] * (tensor.dim() - 1)))
            upstream[stem + "weight_v"] = tensor
        else:
            upstream[key] = tensor
    return upstream
