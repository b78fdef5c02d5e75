"""The demo GPT (text-to-semantic) checkpoints: a small s1 model per voice, saved as upstream's s1
trainer saves it, with the key names ``T2SModel.upstream_key`` gives."""

from __future__ import annotations

from typing import Any

import torch

from app.demo.randomize import randomize
from app.engine.models.t2s import T2SConfig, T2SModel
from app.engine.registry import GPT_DIR_BY_VERSION

# Phone-embedding rows of upstream's GPT configs: v1 GPTs have 512 (room for the 322 v1 symbols),
# v2 and later 732 (the v2 symbol table).
GPT_PHONE_VOCAB = {"v1": 512, "v2": 732}
# Short decodes: the GPT stops after 50 * max_sec tokens by default.
DEMO_MAX_SEC = 2


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
