"""Weight files -> loaded models: one function per kind of model, each reading upstream's on-disk
format from its upstream path under the weights root, and turning what can go wrong into the engine's
error kinds (a bad file the request named: InvalidRequest ``invalid_weights``; a model the server
itself needs: ModelUnavailable). Called by the model manager, on its loader thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from app.engine import audio_features
from app.engine.checkpoints import CheckpointError, load_checkpoint, read_header, weights_of
from app.engine.decoders import Vocoder
from app.engine.errors import InvalidRequest, ModelUnavailable
from app.engine.models.bandwidth_extension import BandwidthExtender
from app.engine.models.hubert import HubertEncoder
from app.engine.models.sovits import SoVITSSynthesizer
from app.engine.models.sovits_v3 import SoVITSV3
from app.engine.models.speaker import SpeakerEncoder
from app.engine.models.t2s import T2SModel
from app.engine.models.vocoders import BigVGANVocoder, HiFiGANVocoderV4
from app.engine.registry import (
    BANDWIDTH_EXTENSION_DIR,
    BERT_DIR,
    BIGVGAN_V3_DIR,
    HUBERT_DIR,
    PRETRAINED_SOVITS,
    SV_CHECKPOINT,
    VOCODER_V4,
    ModelVersion,
)
from app.engine.text.bert import BertFeatureExtractor
from app.engine.voice import SharedModels

BANDWIDTH_EXTENSION_FILES = ("g_24kto48k.zip", "config.json")


@dataclass(frozen=True)
class LoadedSovits:
    model: SoVITSSynthesizer | SoVITSV3
    spectrogram: audio_features.SpectrogramConfig  # the checkpoint's data settings


def load_gpt(path: Path, device: str, dtype: torch.dtype) -> T2SModel:
    try:
        return T2SModel.from_checkpoint(path, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise InvalidRequest(str(exc), code="invalid_weights") from None
    except (ValueError, KeyError) as exc:
        raise InvalidRequest(
            f"{path.name}: not a usable GPT checkpoint ({exc})", code="invalid_weights"
        ) from None


def load_sovits(
    path: Path, version: ModelVersion, weights_root: Path, device: str, dtype: torch.dtype
) -> LoadedSovits:
    """A SoVITS file of a detected ``version`` and the spectrogram settings of its config. v3/v4: a LoRA
    file is merged into its base at the version's pretrained path under ``weights_root``."""
    try:
        checkpoint = load_checkpoint(path)
        hparams = checkpoint.get("config") or {}
        model: SoVITSSynthesizer | SoVITSV3
        if version.uses_vocoder:
            del checkpoint  # SoVITSV3 reads the file (and a LoRA's base) itself
            base = weights_root / PRETRAINED_SOVITS[version.model] if version.is_lora else None
            model = SoVITSV3.from_checkpoint(path, base, version=version.model)
        else:
            model = SoVITSSynthesizer.from_state_dict(
                weights_of(checkpoint, path), hparams, read_header(path), source=path, detected=version.model
            )
            del checkpoint
        try:
            spectrogram = audio_features.SpectrogramConfig.from_sovits_config(hparams)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"has no usable data config ({exc})") from None
    except CheckpointError as exc:
        raise InvalidRequest(str(exc), code="invalid_weights") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(
            f"{path.name}: not a usable SoVITS checkpoint ({exc})", code="invalid_weights"
        ) from None
    return LoadedSovits(model.to(device=device, dtype=dtype), spectrogram)


def load_shared_models(
    weights_root: Path, device: str, dtype: torch.dtype, *, with_speaker_encoder: bool
) -> SharedModels:
    """HuBERT, BERT (and the speaker encoder) from their upstream paths under ``weights_root``."""
    try:
        return SharedModels(
            hubert=HubertEncoder.from_pretrained(weights_root / HUBERT_DIR, device=device, dtype=dtype),
            bert=BertFeatureExtractor(weights_root / BERT_DIR, device=device, half=dtype == torch.float16),
            speaker=load_speaker_encoder(weights_root, device, dtype) if with_speaker_encoder else None,
        )
    except (OSError, CheckpointError) as exc:
        raise _shared_missing(exc) from None


def load_speaker_encoder(weights_root: Path, device: str, dtype: torch.dtype) -> SpeakerEncoder:
    try:
        return SpeakerEncoder.from_checkpoint(weights_root / SV_CHECKPOINT, device=device, dtype=dtype)
    except (OSError, CheckpointError) as exc:
        raise _shared_missing(exc) from None


def _shared_missing(exc: Exception) -> ModelUnavailable:
    return ModelUnavailable(
        f"a shared model is missing or unreadable in the weights root ({exc}); "
        "see weights/README.md for where HuBERT, BERT and the speaker model go"
    )


def load_vocoder(weights_root: Path, model_version: str, device: str, dtype: torch.dtype) -> Vocoder:
    """The vocoder of a v3 (BigVGAN, 24 kHz) or v4 (HiFi-GAN, 48 kHz) voice, from its upstream path."""
    try:
        if model_version == "v3":
            return BigVGANVocoder.from_pretrained(weights_root / BIGVGAN_V3_DIR, device=device, dtype=dtype)
        return HiFiGANVocoderV4.from_checkpoint(weights_root / VOCODER_V4, device=device, dtype=dtype)
    except (OSError, CheckpointError) as exc:
        raise ModelUnavailable(
            f"the {model_version} vocoder is missing or unreadable in the weights root ({exc}); "
            "see weights/README.md for where it goes"
        ) from None


def missing_bandwidth_extension_files(weights_root: Path) -> list[str]:
    folder = weights_root / BANDWIDTH_EXTENSION_DIR
    return [name for name in BANDWIDTH_EXTENSION_FILES if not (folder / name).is_file()]


def load_bandwidth_extender(weights_root: Path, device: str) -> BandwidthExtender:
    """v3's optional AP-BWE 24 -> 48 kHz model (super_sampling)."""
    try:
        return BandwidthExtender.from_folder(weights_root / BANDWIDTH_EXTENSION_DIR, device)
    except (OSError, CheckpointError) as exc:
        raise ModelUnavailable(f"the AP-BWE super-sampling model cannot be loaded ({exc})") from None
