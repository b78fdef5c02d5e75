"""Speaker-verification encoder (ERes2NetV2) used by v2Pro/v2ProPlus to condition SoVITS on a voice.

16 kHz audio → 80-bin Kaldi log-mel filterbank → a 2-D Res2Net-style CNN → one 20480-wide vector per clip.

Architecture (3D-Speaker's ERes2NetV2, the configuration upstream hard-codes: base width 24, scale 4,
expansion 4, 64 stem channels, blocks (3, 4, 6, 3)):
- a 3x3 conv stem, then four stages of residual blocks; each block splits its channels into ``scale``
  groups and runs them as a cascade (group i sees its own slice plus the output of group i-1);
- stages 1-2 join the cascade by addition, stages 3-4 by attentional feature fusion (:class:`FeatureFusion`);
- stage 3's output is downsampled and fused with stage 4's output.

Upstream quirk, reproduced on purpose: GPT-SoVITS does not use the model's embedding head. Its
``forward3`` takes the fused stage-3/4 feature map ``[B, 2048, 10, T']``, flattens channels x frequency and
averages over time, giving a 20480-wide vector. So the pooling/``seg_1`` projection stored in the
checkpoint is never used and we do not build it (its keys are ignored when loading).

The block activations are ReLU clipped at 20 (``Hardtanh(0, 20)``); the stem uses a plain ReLU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from app.engine.checkpoints import check_state_dict, load_checkpoint

SV_SAMPLE_RATE = 16000
FBANK_BINS = 80

# The embedding head (statistics pooling → seg_1 linear) that forward3 skips; see the module docstring.
UNUSED_HEAD_PREFIXES = ("seg_1.", "seg_2.", "seg_bn_1.", "pool.")
HEAD_EMBEDDING_DIM = 192  # the width of the embedding that head would give


def kaldi_fbank(wav16k: torch.Tensor) -> torch.Tensor:
    """Kaldi log-mel filterbank of each row: ``[B, samples]`` → ``[B, frames, 80]``.

    Exactly upstream's call (80 bins, 16 kHz, no dither; Kaldi defaults otherwise: 25 ms Povey
    window, 10 ms shift, pre-emphasis 0.97, DC removal, snip edges). Upstream ships a copy of
    ``torchaudio.compliance.kaldi`` that only adds a filterbank cache, so torchaudio's own function
    computes the same numbers.
    """
    return torch.stack(
        [
            torchaudio.compliance.kaldi.fbank(
                row.unsqueeze(0), num_mel_bins=FBANK_BINS, sample_frequency=SV_SAMPLE_RATE, dither=0.0
            )
            for row in wav16k
        ]
    )


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    """ERes2NetV2 hyper-parameters. The checkpoint embeds none; these are upstream's hard-coded values."""

    base_width: int = 24
    scale: int = 4
    expansion: int = 4
    stem_channels: int = 64
    blocks_per_stage: tuple[int, int, int, int] = (3, 4, 6, 3)
    feat_dim: int = FBANK_BINS

    @property
    def embedding_size(self) -> int:
        # channels of stage 4 x frequency bins left after three stride-2 stages
        return self.stem_channels * 8 * self.expansion * (self.feat_dim // 8)


def upstream_only_layers(cfg: SpeakerEncoderConfig | None = None) -> dict[str, nn.Module]:
    """Fresh (untrained) layers upstream's checkpoint holds but we never build, by upstream's name:
    the embedding head's ``seg_1`` linear layer, from the pooled statistics (mean and std of the
    trunk's output) to the embedding. Upstream's sv.py loads strictly, so a file without it would
    not load there."""
    cfg = cfg or SpeakerEncoderConfig()
    return {"seg_1": nn.Linear(2 * cfg.embedding_size, HEAD_EMBEDDING_DIM)}


class ClippedReLU(nn.Hardtanh):
    """ReLU capped at 20, as in the 3D-Speaker blocks."""

    def __init__(self):
        super().__init__(0.0, 20.0)


def conv_bn(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """1x1 projection with batch norm (the residual shortcut); keys ``0.*`` and ``1.*`` as upstream."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
    )


class FeatureFusion(nn.Module):
    """Attentional feature fusion (AFF): a learned per-element blend of two equally shaped maps.

    ``weight = 1 + tanh(att([x, y]))`` lies in (0, 2); the result is ``x * weight + y * (2 - weight)``.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        inner = channels // reduction
        # Key names local_att.{0,1,3,4} come from upstream's nn.Sequential (index 2 is the SiLU).
        self.local_att = nn.Sequential(
            nn.Conv2d(channels * 2, inner, kernel_size=1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = 1.0 + torch.tanh(self.local_att(torch.cat((x, y), dim=1)))
        return x * weight + y * (2.0 - weight)


class Res2Block(nn.Module):
    """One ERes2NetV2 residual block; ``fuse=True`` joins the group cascade with AFF instead of addition."""

    def __init__(self, in_ch: int, planes: int, stride: int, cfg: SpeakerEncoderConfig, fuse: bool):
        super().__init__()
        width = int(math.floor(planes * cfg.base_width / 64.0))
        out_ch = planes * cfg.expansion
        self.width = width
        self.conv1 = nn.Conv2d(in_ch, width * cfg.scale, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * cfg.scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False) for _ in range(cfg.scale)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(cfg.scale))
        self.fuse_models = nn.ModuleList(FeatureFusion(width) for _ in range(cfg.scale - 1)) if fuse else None
        self.conv3 = nn.Conv2d(width * cfg.scale, out_ch, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = conv_bn(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else nn.Identity()
        self.act = ClippedReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(self.act(self.bn1(self.conv1(x))), self.width, dim=1)
        outputs = []
        carried = groups[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            if i > 0:
                carried = (
                    self.fuse_models[i - 1](carried, groups[i]) if self.fuse_models else carried + groups[i]
                )
            carried = self.act(bn(conv(carried)))
            outputs.append(carried)
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        return self.act(out + self.shortcut(x))


class SpeakerEncoder(nn.Module):
    """ERes2NetV2 trunk. ``embed(wav16k [B, samples]) -> [B, 20480]``; ``forward(fbank)`` for features."""

    def __init__(self, cfg: SpeakerEncoderConfig | None = None):
        super().__init__()
        cfg = cfg or SpeakerEncoderConfig()
        self.cfg = cfg
        stem = cfg.stem_channels
        self.conv1 = nn.Conv2d(1, stem, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_ch = stem
        stages = []
        for index, (n_blocks, stride) in enumerate(zip(cfg.blocks_per_stage, (1, 2, 2, 2), strict=True)):
            planes = stem * 2**index
            blocks = []
            for block_stride in [stride] + [1] * (n_blocks - 1):
                blocks.append(Res2Block(in_ch, planes, block_stride, cfg, fuse=index >= 2))
                in_ch = planes * cfg.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        stage3_ch, stage4_ch = stem * 4 * cfg.expansion, stem * 8 * cfg.expansion
        self.layer3_ds = nn.Conv2d(stage3_ch, stage4_ch, kernel_size=3, stride=2, padding=1, bias=False)
        self.fuse34 = FeatureFusion(stage4_ch)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        cfg: SpeakerEncoderConfig | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> SpeakerEncoder:
        """Load upstream's ``pretrained_eres2netv2w24s4ep4.ckpt`` (a bare state dict), strictly.

        Every key and shape of the trunk must be present; only the unused embedding head may be extra.
        """
        state = load_checkpoint(path)
        model = cls(cfg)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_state_dict(state, expected, path, ignore_unexpected=UNUSED_HEAD_PREFIXES)
        model.load_state_dict({k: state[k] for k in expected}, strict=True)
        return model.to(device=device, dtype=dtype).eval()

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """``[B, frames, 80]`` filterbank features → ``[B, 20480]`` time-averaged trunk features."""
        x = fbank.transpose(1, 2).unsqueeze(1)  # [B, 1, freq, time]: the CNN treats it as an image
        x = F.relu(self.bn1(self.conv1(x)))
        stage3 = self.layer3(self.layer2(self.layer1(x)))
        fused = self.fuse34(self.layer4(stage3), self.layer3_ds(stage3))
        return fused.flatten(start_dim=1, end_dim=2).mean(dim=-1)

    def embed(self, wav16k: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` (or ``[samples]``) audio at 16 kHz → ``[B, 20480]`` speaker vector."""
        if wav16k.dim() == 1:
            wav16k = wav16k.unsqueeze(0)
        param = next(self.parameters())
        return self(kaldi_fbank(wav16k.to(device=param.device, dtype=param.dtype)))
