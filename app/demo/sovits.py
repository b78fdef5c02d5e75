"""The demo SoVITS voices of v1, v2, v2Pro and v2ProPlus: a small synthesizer per voice, saved as
upstream's ``savee`` saves a fine-tune. The upstream key names come from the model module
(``app.engine.models.sovits.to_upstream_state``); this module only chooses sizes and random values."""

from __future__ import annotations

from typing import Any

import torch

from app.demo.randomize import randomize
from app.demo.voices import SOVITS_HEADERS
from app.engine.models.sovits import SoVITSConfig, SoVITSSynthesizer, to_upstream_state
from app.engine.registry import SOVITS_DIR_BY_VERSION

SOVITS_SYMBOLS = {"v1": 322, "v2": 732}

# Gains that keep a random decoder's output audible but bounded (leaky-ReLU stacks need about
# sqrt(2); the second conv of each HiFi-GAN residual and the flow outputs are damped so the residual
# sums do not blow up; spectrogram magnitudes entering the style encoder are large, so its first layer
# is small). Our module names.
SOVITS_GAINS: tuple[tuple[str, float], ...] = (
    (r"^ref_enc\.spectral_in\.", 0.05),
    (r"^flow\.couplings\.\d+\.post\.weight$", 0.3),
    (r"^dec\.resblocks\.\d+\.convs1\.", 1.4),
    (r"^dec\.resblocks\.\d+\.convs2\.", 0.4),
    (r"^dec\.conv_post\.", 0.25),
    (r"^dec\.ups\.", 1.2),
)


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
    weight = {key: t.half() for key, t in to_upstream_state(model.state_dict()).items()}
    return {"weight": weight, "config": config, "info": "8epoch_200iteration"}, header
