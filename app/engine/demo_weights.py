"""Small random weights laid out like an upstream GPT-SoVITS install, for trying the service without
downloading anything.

``write_demo_weights(root)`` fills ``root`` with every file the service needs, in upstream's own
on-disk formats and at upstream's paths (see ``app.engine.registry``):

- one demo voice per model version: a SoVITS ``.pth`` in ``SoVITS_weights*/`` and a GPT ``.ckpt`` in
  ``GPT_weights*/`` (v2Pro/v2ProPlus/v4 GPTs use the v2 symbol table, as upstream's s1v3.ckpt does).
  The v4 voice is what upstream's LoRA training writes: a LoRA file (header ``04``, ``lora_rank``)
  that is merged into the pretrained v4 base at load time;
- the shared models: HuBERT and the Chinese BERT (tiny Hugging Face folders); when a v2Pro or
  v2ProPlus voice is asked for, the speaker-verification checkpoint (its architecture is fixed, so it
  is full size); when the v4 voice is asked for, the v4 base ``s2Gv4.pth`` and the 48 kHz vocoder.

The weights are random, so the voices produce noise, not speech; they exist to exercise the whole
pipeline. Everything is drawn from ``torch.Generator``s seeded from one ``seed``, so the same seed
gives byte-identical files. Files are written atomically, and an existing file is kept unless
``force`` is set, so running again over a folder (even a real install) never breaks it.

The v4 files are small because our loaders read the DiT's depth and width, the width and depth of
the ``wns1`` encoder and the vocoder's width from the weights (upstream hard-codes them). A v3 voice
would need a small BigVGAN in NVIDIA's folder format; it does not exist yet.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.engine.models.dit import DiTConfig
from app.engine.models.sovits import SoVITSConfig, SoVITSSynthesizer
from app.engine.models.sovits_v3 import MEL_BINS, PEFT_CFM_PREFIX, SoVITSV3, SoVITSV3Config
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SConfig, T2SModel
from app.engine.models.vocoders import HiFiGANV4Config, HiFiGANVocoderV4
from app.engine.registry import (
    BERT_DIR,
    GPT_DIR_BY_VERSION,
    HUBERT_DIR,
    PRETRAINED_SOVITS,
    SOVITS_DIR_BY_VERSION,
    SV_CHECKPOINT,
    VOCODER_V4,
)

DEMO_VERSIONS: tuple[str, ...] = ("v1", "v2", "v2Pro", "v2ProPlus", "v4")
README_NAME = "DEMO_WEIGHTS.txt"

# Phone-embedding rows of upstream's GPT configs: v1 GPTs have 512 (room for the 322 v1 symbols),
# v2 and later 732 (the v2 symbol table).
GPT_PHONE_VOCAB = {"v1": 512, "v2": 732}
SOVITS_SYMBOLS = {"v1": 322, "v2": 732}
# Upstream writes this 2-byte header over the zip's "PK" for these versions (process_ckpt.my_save2);
# v1/v2 fine-tunes stay plain zips.
SOVITS_HEADERS = {"v2Pro": b"05", "v2ProPlus": b"06", "v4": b"04"}
# Versions whose demo voice is a LoRA fine-tune on top of the pretrained base.
LORA_VERSIONS = ("v4",)
DEMO_LORA_RANK = 8
# Short decodes: the GPT stops after 50 * max_sec tokens by default.
DEMO_MAX_SEC = 2

# ERes2NetV2's embedding head ``seg_1``: a linear layer from the pooled statistics (mean and std of
# the 20480-wide trunk output) to a 192-d embedding. Inference never uses it, but upstream's sv.py
# loads the checkpoint strictly, so a file without it would not load there.
SV_HEAD_IN, SV_HEAD_OUT = 2 * 20480, 192


@dataclass(frozen=True)
class DemoVoice:
    """Where the demo voice of one model version lives, relative to the weights root."""

    version: str
    sovits: str
    gpt: str
    base: str | None = None  # the pretrained model a LoRA fine-tune is merged into

    @property
    def symbols(self) -> str:
        return "v1" if self.version == "v1" else "v2"


def demo_voice(version: str) -> DemoVoice:
    """The file names upstream's training would give a voice called ``demo_<version>`` (LoRA files
    end in ``_l<rank>``)."""
    if version not in DEMO_VERSIONS:
        raise ValueError(f"no demo voice for {version!r}; available: {', '.join(DEMO_VERSIONS)}")
    lora = version in LORA_VERSIONS
    rank = f"_l{DEMO_LORA_RANK}" if lora else ""
    return DemoVoice(
        version=version,
        sovits=f"{SOVITS_DIR_BY_VERSION[version]}/demo_{version}_e8_s200{rank}.pth",
        gpt=f"{GPT_DIR_BY_VERSION[version]}/demo_{version}-e15.ckpt",
        base=PRETRAINED_SOVITS[version] if lora else None,
    )


def derived_seed(seed: int, name: str) -> int:
    """An independent seed per file, so adding or skipping one file never changes another."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


# --------------------------------------------------------------------------- random initialisation


def _fan_in(module: nn.Module, weight: torch.Tensor) -> float:
    """Inputs feeding one output. A transposed convolution with stride s spreads each input over
    k/s outputs per position, so its fan-in is in_channels * k / s."""
    if isinstance(module, nn.ConvTranspose1d):
        return module.in_channels * module.kernel_size[0] / module.stride[0]
    return float(math.prod(weight.shape[1:])) if weight.dim() > 1 else float(weight.shape[0])


def randomize(
    model: nn.Module,
    generator: torch.Generator,
    gains: Iterable[tuple[str, float]] = (),
    constants: Mapping[str, float] | None = None,
) -> None:
    """Overwrite every floating tensor of ``model`` with a deterministic random draw.

    Matrices get N(0, gain / sqrt(fan_in)) (gain from the first regex of ``gains`` that matches the
    name, else 1), embeddings and codebooks N(0, 1), biases N(0, 0.02); norm scales 1 and norm
    shifts 0; BatchNorm statistics near (0, 1). ``constants`` sets a name (regex) to a fixed value. Tensors are
    visited in state-dict order, so the draw depends only on the model's structure and the seed.
    """
    gain_rules = [(re.compile(pattern), gain) for pattern, gain in gains]
    constant_rules = [(re.compile(pattern), value) for pattern, value in (constants or {}).items()]
    modules = dict(model.named_modules())
    norms = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue  # counters such as num_batches_tracked
            module_name, _, leaf = name.rpartition(".")
            module = modules.get(module_name)
            value = next((v for rx, v in constant_rules if rx.search(name)), None)
            # Drawing in place (normal_/uniform_) avoids a temporary per tensor.
            if value is not None:
                tensor.fill_(value)
            elif leaf == "running_mean":
                tensor.normal_(0.0, 0.05, generator=generator)
            elif leaf == "running_var":
                tensor.uniform_(0.8, 1.2, generator=generator)
            elif isinstance(module, norms) or leaf in ("gamma", "beta"):
                tensor.fill_(1.0 if leaf in ("weight", "gamma") else 0.0)
            elif leaf == "bias" or tensor.dim() <= 1:
                tensor.normal_(0.0, 0.02, generator=generator)
            elif leaf.startswith("emb_rel"):
                # Relative-position embeddings are added to attention logits of head_dim-wide vectors.
                tensor.normal_(0.0, 1.0 / math.sqrt(tensor.shape[-1]), generator=generator)
            elif isinstance(module, nn.Embedding) or leaf == "embed":
                # Embedding rows and codebook vectors are looked up, not summed: unit scale, like the
                # HuBERT features the codebooks quantise.
                tensor.normal_(0.0, 1.0, generator=generator)
            else:
                gain = next((g for rx, g in gain_rules if rx.search(name)), 1.0)
                tensor.normal_(0.0, gain / math.sqrt(_fan_in(module, tensor)), generator=generator)


# --------------------------------------------------------------------------- GPT (s1 .ckpt)


def gpt_config(version: str) -> dict[str, Any]:
    """A small s1 config shaped like upstream's (``model`` sizes, ``data.max_sec``, training keys)."""
    symbols = "v1" if version == "v1" else "v2"
    return {
        "train": {
            "seed": 1234,
            "epochs": 15,
            "batch_size": 4,
            "save_every_n_epoch": 5,
            "precision": "32",
            "gradient_clip": 1.0,
            "if_save_every_weights": True,
            "if_save_latest": True,
            "if_dpo": False,
            "half_weights_save_dir": GPT_DIR_BY_VERSION[version],
            "exp_name": f"demo_{version}",
        },
        "optimizer": {
            "lr": 0.01,
            "lr_init": 1e-05,
            "lr_end": 0.0001,
            "warmup_steps": 2000,
            "decay_steps": 40000,
        },
        "data": {"max_eval_sample": 8, "max_sec": DEMO_MAX_SEC, "num_workers": 4, "pad_val": 1024},
        "model": {
            "vocab_size": 1025,
            "phoneme_vocab_size": GPT_PHONE_VOCAB[symbols],
            "embedding_dim": 128,
            "hidden_dim": 128,
            "head": 4,
            "linear_units": 512,
            "n_layer": 2,
            "dropout": 0,
            "EOS": 1024,
            "random_bert": 0,
        },
        "inference": {"top_k": 15},
    }


def build_gpt_checkpoint(version: str, seed: int) -> dict[str, Any]:
    """The object upstream's s1 trainer saves: upstream-named float16 weights, config, info."""
    config = gpt_config(version)
    model = T2SModel(T2SConfig.from_checkpoint_config(config))
    randomize(model, torch.Generator().manual_seed(seed), constants={r"positions\.alpha$": 1.0})
    weight = {model.upstream_key(name): t.half() for name, t in model.state_dict().items()}
    return {"weight": weight, "config": config, "info": "GPT-e15"}


# --------------------------------------------------------------------------- SoVITS (.pth)


def sovits_config(version: str) -> dict[str, Any]:
    """A small SoVITS config shaped like upstream's training hparams (written as a plain dict:
    upstream's own loader turns the config into attributes either way, and our loader refuses
    pickled classes we do not know)."""
    plus = version == "v2ProPlus"
    model = {
        "inter_channels": 192,
        "hidden_channels": 192,
        "filter_channels": 256,
        "n_heads": 2,
        "n_layers": 2,
        "kernel_size": 3,
        "p_dropout": 0.1,
        "resblock": "1",
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "upsample_rates": [10, 8, 2, 2, 2],  # product 640 = hop_length
        # v2ProPlus widens the decoder's first upsampling, as upstream's s2v2ProPlus config does.
        "upsample_initial_channel": 192 if plus else 128,
        "upsample_kernel_sizes": [20 if plus else 16, 16, 8, 2, 2],
        "n_layers_q": 3,
        "use_spectral_norm": False,
        # v2Pro/v2ProPlus condition on a 1024-d timbre vector (style + speaker embedding).
        "gin_channels": 1024 if "Pro" in version else 512,
        "semantic_frame_rate": "25hz",
        "freeze_quantizer": True,
        "version": version,
    }
    data = {
        "max_wav_value": 32768.0,
        "sampling_rate": 32000,
        "filter_length": 2048,
        "hop_length": 640,
        "win_length": 2048,
        "n_mel_channels": 128,
        "mel_fmin": 0.0,
        "mel_fmax": None,
        "add_blank": True,
        "n_speakers": 300,
        "cleaned_text": True,
        "exp_dir": f"logs/demo_{version}",
    }
    return {
        "train": {"seed": 1234, "epochs": 8, "batch_size": 4, "fp16_run": False, "segment_size": 20480},
        "data": data,
        "model": model,
        "s2_ckpt_dir": f"logs/demo_{version}",
        "content_module": "cnhubert",
        "save_weight_dir": SOVITS_DIR_BY_VERSION[version],
        "name": f"demo_{version}",
        "version": version,
    }


# Gains that keep a random decoder's output audible but bounded (leaky-ReLU stacks need about
# sqrt(2); the second conv of each HiFi-GAN residual and the flow outputs are damped so the residual
# sums do not blow up; spectrogram magnitudes entering the style encoder are large, so its first layer
# is small).
SOVITS_GAINS: tuple[tuple[str, float], ...] = (
    (r"^ref_enc\.spectral_in\.", 0.05),
    (r"^flow\.couplings\.\d+\.post\.weight$", 0.3),
    (r"^dec\.resblocks\.\d+\.convs1\.", 1.4),
    (r"^dec\.resblocks\.\d+\.convs2\.", 0.4),
    (r"^dec\.conv_post\.", 0.25),
    (r"^dec\.ups\.", 1.2),
)
# Upstream wraps these layers in weight_norm, so its files store each weight as weight_g + weight_v.
_WEIGHT_NORMED = re.compile(
    r"^(dec\.ups\.\d+|dec\.resblocks\.\d+\.convs[12]\.\d+"
    r"|(flow\.flows\.\d+|wns1)\.enc\.(in_layers\.\d+|res_skip_layers\.\d+|cond_layer))\.weight$"
)
# Our flattened module names -> upstream's (the inverse of sovits.convert_upstream_state's renames).
_TO_UPSTREAM: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        # Upstream's flow alternates coupling and (weightless) flip layers: coupling i is flows.2i.
        (r"^flow\.couplings\.(\d+)\.", lambda m: f"flow.flows.{2 * int(m.group(1))}."),
        (r"^ref_enc\.spectral_in\.", "ref_enc.spectral.0.fc."),
        (r"^ref_enc\.spectral_out\.", "ref_enc.spectral.3.fc."),
        (r"^ref_enc\.temporal\.(\d+)\.conv\.", r"ref_enc.temporal.\1.conv1.conv."),
        (r"^ref_enc\.attn_out\.", "ref_enc.slf_attn.fc."),
        (r"^ref_enc\.(w_qs|w_ks|w_vs)\.", r"ref_enc.slf_attn.\1."),
        (r"^ref_enc\.out\.", "ref_enc.fc.fc."),
        # v3/v4 DiT: the wrappers we flattened (the inverse of sovits_v3.convert_v3_state's renames).
        (r"^(cfm\.estimator\.transformer_blocks\.\d+\.attn_norm)\.", r"\1.linear."),
        (r"^(cfm\.estimator\.transformer_blocks\.\d+\.attn\.to_out)\.", r"\1.0."),
        (r"^(cfm\.estimator\.transformer_blocks\.\d+\.ff)\.0\.", r"\1.ff.0.0."),
        (r"^(cfm\.estimator\.transformer_blocks\.\d+\.ff)\.2\.", r"\1.ff.2."),
        (r"^cfm\.estimator\.norm_out\.", "cfm.estimator.norm_out.linear."),
        (
            r"^cfm\.estimator\.input_embed\.conv_pos_embed\.",
            "cfm.estimator.input_embed.conv_pos_embed.conv1d.",
        ),
        (r"^cfm\.estimator\.rotary_inv_freq$", "cfm.estimator.rotary_embed.inv_freq"),
    )
)


def _upstream_name(name: str) -> str:
    for pattern, replacement in _TO_UPSTREAM:
        renamed, n = pattern.subn(replacement, name, count=1)
        if n:
            return renamed
    return name


def to_upstream_sovits_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our SoVITS state dict -> the keys and tensors an upstream ``SynthesizerTrn`` saves.

    Weight-normed layers are split into direction ``weight_v`` (the weight itself) and magnitude
    ``weight_g`` (its per-output-slice norm), so folding them back gives the weight again. The
    stacked codebooks become upstream's per-layer ``_codebook`` buffers, including the EMA
    statistics upstream's training keeps (set so that ``embed_avg / cluster_size == embed``).
    Tensors are not copied: the result shares memory with ``state``.
    """
    upstream: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == "quantizer.embed":
            for level, embed in enumerate(tensor):
                prefix = f"quantizer.vq.layers.{level}._codebook."
                upstream[prefix + "inited"] = torch.ones(1)
                upstream[prefix + "cluster_size"] = torch.ones(embed.shape[0])
                upstream[prefix + "embed"] = embed
                upstream[prefix + "embed_avg"] = embed
            continue
        key = _upstream_name(name)
        if _WEIGHT_NORMED.match(key):
            norm = tensor.flatten(1).norm(dim=1).view(-1, *([1] * (tensor.dim() - 1)))
            upstream[key[: -len("weight")] + "weight_g"] = norm
            upstream[key[: -len("weight")] + "weight_v"] = tensor
        else:
            upstream[key] = tensor
    return upstream


def build_sovits_checkpoint(version: str, seed: int) -> tuple[dict[str, Any], bytes]:
    """The object upstream's ``savee`` writes (float16 weights without ``enc_q``, config, info) and
    the file header it uses for ``version``."""
    config = sovits_config(version)
    symbols = SOVITS_SYMBOLS["v1" if version == "v1" else "v2"]
    header = SOVITS_HEADERS.get(version, b"PK")
    # The config reader takes the symbol count from the embedding, so hand it a stand-in of that size.
    stand_in = {"enc_p.text_embedding.weight": torch.empty(symbols, 0)}
    model = SoVITSSynthesizer(SoVITSConfig.from_checkpoint(config, stand_in, header))
    generator = torch.Generator().manual_seed(seed)
    randomize(model, generator, SOVITS_GAINS, constants={r"^prelu\.weight$": 0.25})
    weight = {key: t.half() for key, t in to_upstream_sovits_state(model.state_dict()).items()}
    return {"weight": weight, "config": config, "info": "8epoch_200iteration"}, header


# --------------------------------------------------------------------------- speaker verification


def build_speaker_state(seed: int) -> dict[str, torch.Tensor]:
    """ERes2NetV2 state dict (float32, like the official file) including the unused embedding head."""
    model = SpeakerEncoder()
    generator = torch.Generator().manual_seed(seed)
    # The stem sees log-mel values of magnitude ~10; every block's last BatchNorm starts small so
    # sixteen residual additions stay bounded (the usual zero-ish init of residual branches).
    randomize(
        model,
        generator,
        gains=((r"^conv1\.weight$", 0.3), (r"fuse.*att", 1.0), (r"\.weight$", 1.4)),
    )
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name.endswith(".bn3.weight"):
                tensor.uniform_(0.1, 0.2, generator=generator)
    state = dict(model.state_dict())
    head = nn.Linear(SV_HEAD_IN, SV_HEAD_OUT)
    randomize(head, generator)
    state.update({f"seg_1.{k}": v for k, v in head.state_dict().items()})
    return state


# --------------------------------------------------------------------------- v4: LoRA voice, base, vocoder

# Small sizes for the parts upstream hard-codes (it builds a 22 x 1024 DiT, a 512-wide 8-layer wns1
# and a 512-wide vocoder); our loaders read these back from the weights.
DEMO_V4_FEATURES = 128  # bridge / wns1 width = the DiT's content width
DEMO_V4_WNS1_LAYERS = 2
DEMO_V4_DIT = DiTConfig(dim=128, depth=2, heads=2, mel_dim=MEL_BINS, text_dim=DEMO_V4_FEATURES)
DEMO_V4_VOCODER = HiFiGANV4Config(upsample_initial_channel=64)
# Upstream's v3/v4 SynthesizerTrnV3 modules, in the order it defines them (the order of its files).
_V3_MODULE_ORDER = ("enc_p", "ref_enc", "ssl_proj", "quantizer", "bridge", "wns1", "linear_mel", "cfm")
# What upstream's LoRA training saves besides the LoRA matrices: every parameter that trains
# (freeze_quantizer keeps ssl_proj, quantizer and enc_p fixed; peft freezes the CFM's own weights)
# and every buffer (the codebook statistics and the rotary frequencies).
_LORA_FILE_KEYS = re.compile(
    r"^(ref_enc|bridge|wns1|linear_mel)\.|^quantizer\.vq\.layers\.|^cfm\.estimator\.rotary_embed\.inv_freq$"
)
# peft's LoRA targets inside each DiT block (upstream s2_train_v3_lora.py target_modules).
_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
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


def to_upstream_v3_state(model: SoVITSV3, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The state dict an upstream ``SynthesizerTrnV3`` of this size saves, float16, in its order.

    Upstream also has two layers inference never uses, which our model drops: the prior's mean/log-std
    projection ``enc_p.proj`` and the training-time mel head ``linear_mel``; they are drawn from
    ``generator`` so that the file holds every key upstream's strict loaders expect.
    """
    cfg = model.config
    state = to_upstream_sovits_state(model.state_dict())
    unused = nn.ModuleDict(
        {
            "proj": nn.Conv1d(cfg.hidden_channels, 2 * cfg.inter_channels, 1),
            "linear_mel": nn.Conv1d(cfg.feature_channels, MEL_BINS, 1),
        }
    )
    randomize(unused, generator)
    state.update({f"enc_p.proj.{k}": v for k, v in unused["proj"].state_dict().items()})
    state.update({f"linear_mel.{k}": v for k, v in unused["linear_mel"].state_dict().items()})
    # A stable sort by module keeps each module's own order and appends enc_p.proj to enc_p.
    ordered = sorted(state, key=lambda key: _V3_MODULE_ORDER.index(key.partition(".")[0]))
    return {key: state[key].half() for key in ordered}


def build_v4_base_checkpoint(seed: int) -> dict[str, Any]:
    """The pretrained v4 base ``s2Gv4.pth``: a plain ``savee``-style dict (upstream writes no header)."""
    model = _v4_model(seed)
    weight = to_upstream_v3_state(model, torch.Generator().manual_seed(derived_seed(seed, "unused layers")))
    return {"weight": weight, "config": sovits_v4_config(lora=False), "info": "pretrained"}


def build_v4_lora_checkpoint(seed: int) -> tuple[dict[str, Any], bytes]:
    """A LoRA fine-tune of the base built from the same ``seed``, as upstream's LoRA trainer saves it.

    The trainable tensors are the base's moved a little (what fine-tuning does), the buffers are the
    base's, and each adapted DiT projection gets ``lora_A`` (rank x in) and ``lora_B`` (out x rank)
    under peft's ``cfm.base_model.model.`` prefix. Returns the checkpoint and its header (``04``).
    """
    generator = torch.Generator().manual_seed(derived_seed(seed, "lora"))
    base = build_v4_base_checkpoint(seed)["weight"]
    weight: dict[str, torch.Tensor] = {}
    for key, tensor in base.items():
        if not _LORA_FILE_KEYS.search(key):
            continue
        is_trained = not key.startswith(("quantizer.", "cfm."))
        if is_trained:
            step = 0.05 * tensor.float().std() * torch.randn(tensor.shape, generator=generator)
            tensor = (tensor.float() + step).half()
        weight[PEFT_CFM_PREFIX + key[len("cfm.") :] if key.startswith("cfm.") else key] = tensor
    dim = DEMO_V4_DIT.dim
    for block in range(DEMO_V4_DIT.depth):
        for target in _LORA_TARGETS:
            stem = f"{PEFT_CFM_PREFIX}estimator.transformer_blocks.{block}.attn.{target}"
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
    weights (upstream removes weight norm before saving it)."""
    model = HiFiGANVocoderV4(DEMO_V4_VOCODER)
    randomize(model, torch.Generator().manual_seed(seed), VOCODER_GAINS)
    return dict(model.state_dict())


# --------------------------------------------------------------------------- Hugging Face folders


def write_hubert(folder: Path, seed: int) -> None:
    """A 2-layer HuBERT (768-d output, which SoVITS expects) + the feature-extractor config upstream reads."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(
        hidden_size=768,
        num_hidden_layers=2,
        num_attention_heads=12,
        intermediate_size=768,
        conv_dim=(64,) * 7,  # the convolutional front end keeps upstream's strides (320 samples/frame)
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
        feat_extract_norm="group",
        conv_bias=False,
    )
    with torch.random.fork_rng(devices=[]):  # HF draws from the global RNG; leave the caller's alone
        torch.manual_seed(seed)
        model = HubertModel(config).eval()
    model.half().save_pretrained(folder, safe_serialization=True)  # float16 on disk, like the official files
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)


# Characters that get a vocabulary entry besides the CJK block: what Chinese text normalisation leaves.
_CJK_PUNCTUATION = "，。！？、；：“”‘’（）《》【】…—·～"
CJK_UNIFIED = (0x4E00, 0x9FFF)  # the CJK Unified Ideographs block, inclusive


def bert_vocab() -> list[str]:
    """A WordPiece vocabulary: specials, printable ASCII (also as ``##`` continuations), CJK
    punctuation and every CJK Unified Ideograph, one token per character."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_chars = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()]  # lower-cased input
    ascii_continuations = ["##" + c for c in ascii_chars if c.isalnum()]
    cjk = [chr(c) for c in range(CJK_UNIFIED[0], CJK_UNIFIED[1] + 1)]
    return specials + ascii_chars + ascii_continuations + list(_CJK_PUNCTUATION) + cjk


def write_bert(folder: Path, seed: int) -> None:
    """A 3-layer BertForMaskedLM with upstream's 1024-d hidden size and an offline-built tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab()
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file), do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None
    )
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=1024,  # the GPT's bert_proj reads 1024-d features
        num_hidden_layers=3,  # features come from hidden_states[-3], so at least 2 layers
        num_attention_heads=16,
        intermediate_size=1024,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config).eval()
    model.half().save_pretrained(folder, safe_serialization=True)  # float16 on disk, like the official files


# --------------------------------------------------------------------------- writing


def _torch_bytes(obj: Any) -> bytes:
    # Saving to a buffer names the archive's inner folder "archive" whatever the file is called,
    # so identical content gives identical bytes (and a header can replace the first two).
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_file_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a server running as another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_folder_atomically(path: Path, fill: Callable[[Path], None]) -> None:
    """Build the folder next to its target, then swap it in (the old one is removed only after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    old = path.parent / f".{path.name}.old"
    try:
        fill(staging)
        staging.chmod(0o755)  # mkdtemp makes it owner-only
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class DemoFile:
    """One file or folder the generator produces."""

    path: str  # relative to the weights root
    what: str
    write: Callable[[Path, int], None]  # (absolute path, derived seed)
    is_folder: bool = False
    # The name the seed is derived from (default: the path). Files that must agree, a LoRA and the
    # base it was trained from, share one.
    seed_name: str | None = None


def _gpt_file(version: str) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_gpt_checkpoint(version, seed)))

    return DemoFile(demo_voice(version).gpt, f"GPT {version}", write)


def _sovits_file(version: str) -> DemoFile:
    if version in LORA_VERSIONS:
        return _sovits_lora_file(version)

    def write(path: Path, seed: int) -> None:
        checkpoint, header = build_sovits_checkpoint(version, seed)
        _write_file_atomically(path, header + _torch_bytes(checkpoint)[2:])

    return DemoFile(demo_voice(version).sovits, f"SoVITS {version}", write)


def _lora_seed_name(version: str) -> str:
    return f"{version} base and LoRA"


def _sovits_lora_file(version: str) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        checkpoint, header = build_v4_lora_checkpoint(seed)
        _write_file_atomically(path, header + _torch_bytes(checkpoint)[2:])

    what = f"SoVITS {version} LoRA fine-tune, rank {DEMO_LORA_RANK}, on the {version} base"
    return DemoFile(demo_voice(version).sovits, what, write, seed_name=_lora_seed_name(version))


def _sovits_base_file(version: str) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_v4_base_checkpoint(seed)))

    what = f"SoVITS {version} pretrained base, which LoRA fine-tunes are merged into"
    return DemoFile(PRETRAINED_SOVITS[version], what, write, seed_name=_lora_seed_name(version))


def _vocoder_v4_file() -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_vocoder_v4_state(seed)))

    return DemoFile(VOCODER_V4, "v4 vocoder, 48 kHz HiFi-GAN", write)


def _speaker_file() -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_file_atomically(path, _torch_bytes(build_speaker_state(seed)))

    return DemoFile(SV_CHECKPOINT, "speaker verification (v2Pro, v2ProPlus)", write)


def _folder(relative: str, what: str, fill: Callable[[Path, int], None]) -> DemoFile:
    def write(path: Path, seed: int) -> None:
        _write_folder_atomically(path, lambda staging: fill(staging, seed))

    return DemoFile(relative, what, write, is_folder=True)


def _shared_files(version: str) -> list[DemoFile]:
    """The shared models a voice of ``version`` needs, including a LoRA's base and a vocoder."""
    files = [
        _folder(HUBERT_DIR, "HuBERT", write_hubert),
        _folder(BERT_DIR, "Chinese BERT", write_bert),
    ]
    if version in ("v2Pro", "v2ProPlus"):
        files.append(_speaker_file())
    if version == "v4":
        files += [_sovits_base_file(version), _vocoder_v4_file()]
    return files


def demo_files(versions: Iterable[str] = DEMO_VERSIONS) -> list[DemoFile]:
    """Everything needed to run the demo voices of ``versions``: shared models first, each once."""
    versions = list(dict.fromkeys(versions))
    for version in versions:
        demo_voice(version)  # raises for versions without a demo voice
    shared: dict[str, DemoFile] = {}
    for version in versions:
        for item in _shared_files(version):
            shared.setdefault(item.path, item)
    voices = [item for version in versions for item in (_sovits_file(version), _gpt_file(version))]
    return [*shared.values(), *voices]


README_TEXT = """\
These are DEMO weights written by gsv-demo-weights: small random models in GPT-SoVITS's folder
layout. They produce noise, not speech. They only let you try the service end to end.

Real weights go in the same layout (an upstream GPT-SoVITS install works as is):
  GPT_SoVITS/pretrained_models/   chinese-hubert-base/, chinese-roberta-wwm-ext-large/,
                                  sv/pretrained_eres2netv2w24s4ep4.ckpt, the pretrained GPT/SoVITS files,
                                  gsv-v4-pretrained/ (the v4 base s2Gv4.pth and vocoder.pth)
  SoVITS_weights*/                your SoVITS fine-tunes (*.pth), one folder per version; v3/v4
                                  LoRA fine-tunes load on top of their pretrained base
  GPT_weights*/                   your GPT fine-tunes (*.ckpt), one folder per version
Replace the demo files (or delete them) once you have real ones; see weights/README.md.

Demo files written here:
"""
_LISTED = re.compile(r"^  (\S+)  \((.*)\)$")


@dataclass(frozen=True)
class WriteResult:
    path: str  # relative to the root
    what: str
    written: bool  # False: it existed and was kept


def write_demo_weights(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    versions: Iterable[str] = DEMO_VERSIONS,
    force: bool = False,
    on_progress: Callable[[WriteResult], None] | None = None,
) -> list[WriteResult]:
    """Write the demo weights of ``versions`` under ``root``; existing files are kept unless ``force``.

    Returns what happened to each file, in order; ``on_progress`` is told as each one is done.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for item in demo_files(versions):
        target = root / item.path
        exists = target.is_dir() if item.is_folder else target.is_file()
        if force or not exists:
            item.write(target, derived_seed(seed, item.seed_name or item.path))
        result = WriteResult(item.path, item.what, written=force or not exists)
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    _update_readme(root, [r for r in results if r.written])
    return results


def _update_readme(root: Path, written: list[WriteResult]) -> None:
    """List every demo file written here so far in ``README_NAME``; the service takes that file as
    the sign that it runs on demo weights. A run that wrote nothing (every file already there, e.g.
    a real install) does not create it."""
    path = root / README_NAME
    listed: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := _LISTED.match(line):
                listed[match.group(1)] = match.group(2)
    if not written and not listed:
        return
    listed.update({r.path: r.what for r in written})
    listing = "".join(f"  {name}  ({what})\n" for name, what in listed.items())
    _write_file_atomically(path, (README_TEXT + listing).encode("utf-8"))
