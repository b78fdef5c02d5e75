"""The v4 demo voice: a LoRA fine-tune (as upstream's LoRA training saves it), the small pretrained
base ``s2Gv4.pth`` it is merged into, and the 48 kHz HiFi-GAN vocoder.

Upstream hard-codes a 22 x 1024 DiT, a 512-wide 8-layer ``wns1`` and a 512-wide vocoder; our loaders
read those sizes from the weights, so the demo files can be small. The upstream key names come from
the model modules (``sovits_v3.to_upstream_v3_state``, ``V3_KEYS``, ``upstream_only_layers``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from app.demo.randomize import derived_seed, random_layers, randomize
from app.demo.sovits import SOVITS_GAINS, SOVITS_SYMBOLS, sovits_config
from app.demo.voices import DEMO_LORA_RANK, SOVITS_HEADERS
from app.engine.models.dit import DiTConfig
from app.engine.models.sovits_v3 import (
    MEL_BINS,
    PEFT_CFM_PREFIX,
    V3_KEYS,
    SoVITSV3,
    SoVITSV3Config,
    to_upstream_v3_state,
    upstream_only_layers,
)
from app.engine.models.vocoders import HiFiGANV4Config, HiFiGANVocoderV4
from app.engine.registry import PRETRAINED_SOVITS

DEMO_V4_FEATURES = 128  # bridge / wns1 width = the DiT's content width
DEMO_V4_WNS1_LAYERS = 2
DEMO_V4_DIT = DiTConfig(dim=128, depth=2, heads=2, mel_dim=MEL_BINS, text_dim=DEMO_V4_FEATURES)
DEMO_V4_VOCODER = HiFiGANV4Config(upsample_initial_channel=64)
# The modules upstream's LoRA training trains (freeze_quantizer keeps ssl_proj, quantizer and enc_p
# fixed; peft freezes the CFM's own weights). Its file holds their tensors, every buffer (the codebook
# and its statistics, the rotary frequencies) and the LoRA matrices. Top-level names are upstream's
# and ours alike.
_LORA_TRAINED_MODULES = ("ref_enc", "bridge", "wns1", "linear_mel")
# peft's LoRA targets inside each DiT block (upstream s2_train_v3_lora.py target_modules), by our
# names; V3_KEYS gives upstream's.
_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out")
# The vocoder is a HiFi-GAN stack like the v1/v2 decoder, so it gets that decoder's gains.
VOCODER_GAINS: tuple[tuple[str, float], ...] = (
    (r"^resblocks\.\d+\.convs1\.", 1.4),
    (r"^resblocks\.\d+\.convs2\.", 0.4),
    (r"^conv_post\.", 0.25),
    (r"^ups\.", 1.2),
)


def sovits_v4_config(*, lora: bool) -> dict[str, Any]:
    """The training config upstream embeds in a v4 file: the v2 layout with version v4 (the model
    block keeps the v2 decoder keys that v4's own config still carries); a LoRA file's also names
    its rank and base."""
    config = sovits_config("v4")
    if lora:
        config["train"]["lora_rank"] = str(DEMO_LORA_RANK)  # a string, as upstream's UI passes it
        config["train"]["pretrained_s2G"] = PRETRAINED_SOVITS["v4"]
    return config


def _v4_model(seed: int) -> SoVITSV3:
    """A random small v4 synthesizer (our module names)."""
    model_config = sovits_config("v4")["model"]
    cfg = SoVITSV3Config(
        version="v4",
        n_symbols=SOVITS_SYMBOLS["v2"],
        hidden_channels=model_config["hidden_channels"],
        filter_channels=model_config["filter_channels"],
        n_heads=model_config["n_heads"],
        n_layers=model_config["n_layers"],
        kernel_size=model_config["kernel_size"],
        inter_channels=model_config["inter_channels"],
        gin_channels=model_config["gin_channels"],  # 512: MRTE adds ge to its 512 hidden channels
        feature_channels=DEMO_V4_FEATURES,
        wns1_layers=DEMO_V4_WNS1_LAYERS,
        dit=DEMO_V4_DIT,
    )
    model = SoVITSV3(cfg)
    randomize(model, torch.Generator().manual_seed(seed), SOVITS_GAINS)
    with torch.no_grad():
        # Not a weight but a table (upstream's persistent rotary buffer): x-transformers' frequencies.
        head_dim = DEMO_V4_DIT.head_dim
        model.cfm.estimator.rotary_inv_freq.copy_(
            1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
        )
    return model


def _v4_base(seed: int) -> tuple[SoVITSV3, dict[str, torch.Tensor]]:
    """The random model and the float16 state dict an upstream ``SynthesizerTrnV3`` of its size saves,
    including the layers inference never uses (drawn too, so every key upstream's strict loaders
    expect is there)."""
    model = _v4_model(seed)
    generator = torch.Generator().manual_seed(derived_seed(seed, "unused layers"))
    unused = random_layers(upstream_only_layers(model.config), generator)
    weight = to_upstream_v3_state({**model.state_dict(), **unused})
    return model, {key: tensor.half() for key, tensor in weight.items()}


def build_v4_base_checkpoint(seed: int) -> dict[str, Any]:
    """The pretrained v4 base ``s2Gv4.pth``: a plain ``savee``-style dict (upstream writes no header)."""
    _, weight = _v4_base(seed)
    return {"weight": weight, "config": sovits_v4_config(lora=False), "info": "pretrained"}


def _lora_file_keys(model: SoVITSV3, base: dict[str, torch.Tensor]) -> set[str]:
    """The upstream keys of ``base`` that upstream's LoRA training saves besides the LoRA matrices."""
    state = model.state_dict()
    buffers = {name: state[name] for name, _ in model.named_buffers() if name in state}
    return {key for key in base if key.partition(".")[0] in _LORA_TRAINED_MODULES} | set(
        to_upstream_v3_state(buffers)
    )


def build_v4_lora_checkpoint(seed: int) -> tuple[dict[str, Any], bytes]:
    """A LoRA fine-tune of the base built from the same ``seed``, as upstream's LoRA trainer saves it.

    The trainable tensors are the base's moved a little (what fine-tuning does), the buffers are the
    base's, and each adapted DiT projection gets ``lora_A`` (rank x in) and ``lora_B`` (out x rank)
    under peft's ``cfm.base_model.model.`` prefix. Returns the checkpoint and its header (``04``).
    """
    generator = torch.Generator().manual_seed(derived_seed(seed, "lora"))
    model, base = _v4_base(seed)
    saved = _lora_file_keys(model, base)
    weight: dict[str, torch.Tensor] = {}
    for key, tensor in base.items():
        if key not in saved:
            continue
        if key.partition(".")[0] in _LORA_TRAINED_MODULES:
            step = 0.05 * tensor.float().std() * torch.randn(tensor.shape, generator=generator)
            tensor = (tensor.float() + step).half()
        weight[PEFT_CFM_PREFIX + key[len("cfm.") :] if key.startswith("cfm.") else key] = tensor
    dim = DEMO_V4_DIT.dim
    for block in range(DEMO_V4_DIT.depth):
        for target in _LORA_TARGETS:
            ours = f"cfm.estimator.transformer_blocks.{block}.attn.{target}.weight"
            stem = PEFT_CFM_PREFIX + V3_KEYS.to_upstream(ours)[len("cfm.") : -len(".weight")]
            # peft starts B at zero; a trained file's B is small but not zero, so the merge shows.
            down = torch.randn(DEMO_LORA_RANK, dim, generator=generator) / math.sqrt(dim)
            up = 0.02 * torch.randn(dim, DEMO_LORA_RANK, generator=generator)
            weight[f"{stem}.lora_A.default.weight"] = down.half()
            weight[f"{stem}.lora_B.default.weight"] = up.half()
    checkpoint = {
        "weight": weight,
        "config": sovits_v4_config(lora=True),
        "info": "8epoch_200iteration",
        "lora_rank": DEMO_LORA_RANK,
    }
    return checkpoint, SOVITS_HEADERS["v4"]


def build_vocoder_v4_state(seed: int) -> dict[str, torch.Tensor]:
    """A narrow v4 HiFi-GAN as upstream stores ``vocoder.pth``: a bare float32 state dict of plain
    weights (upstream removes weight norm before saving it; our names are upstream's)."""
    model = HiFiGANVocoderV4(DEMO_V4_VOCODER)
    randomize(model, torch.Generator().manual_seed(seed), VOCODER_GAINS)
    return dict(model.state_dict())
