"""Deterministic random weights: ``randomize`` overwrites a model's tensors with draws from one
``torch.Generator``, and ``derived_seed`` gives each demo file its own seed from the user's one."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn


def derived_seed(seed: int, name: str) -> int:
    """An independent seed per file, so adding or skipping one file never changes another."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


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


def random_layers(layers: Mapping[str, nn.Module], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Randomize each of ``layers`` (name -> module, in order) and return their tensors under
    ``<name>.<parameter>``: for the layers a model module lists as upstream-only."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        randomize(layer, generator)
        state.update({f"{name}.{key}": value for key, value in layer.state_dict().items()})
    return state
