"""HuBERT content encoder (``chinese-hubert-base``): 16 kHz audio → frame features for the prompt codes.

Upstream loads this model with ``transformers.HubertModel.from_pretrained`` from a local folder and
reads ``last_hidden_state``; we do the same, since the folder is a standard Hugging Face checkpoint.
Two details matter for equality with upstream:

- the raw waveform goes straight into the model: upstream builds a ``Wav2Vec2FeatureExtractor`` but its
  TTS path never calls it, so there is no zero-mean/unit-variance normalisation;
- the model runs in eval mode, so the training-time masking of time steps (``mask_time_prob``) is off.

Loading is strict: a folder whose weights do not fill every parameter of the model it describes is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import HubertConfig, HubertModel

from app.engine.checkpoints import CheckpointError


class HubertEncoder(nn.Module):
    """Wraps ``HubertModel``; ``encoder(wav16k [B, samples]) -> last_hidden_state [B, frames, hidden]``.

    Frames are 20 ms apart (the convolutional front end strides 320 samples at 16 kHz).
    """

    def __init__(self, model: HubertModel):
        super().__init__()
        self.model = model.eval()

    @property
    def config(self) -> HubertConfig:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> HubertEncoder:
        """Load a local Hugging Face HuBERT folder (``config.json`` + weights); never touches the network.

        The official files store float16; like upstream we compute in float32 unless ``dtype`` says otherwise.
        """
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise CheckpointError(folder, "is not a HuBERT model folder (no config.json)")
        try:
            model, info = HubertModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(folder, f"cannot be loaded ({exc})") from None
        problems = [
            f"{label}: {', '.join(str(k) for k in keys[:5])}"
            for label, keys in (
                ("missing keys", info.get("missing_keys", [])),
                ("unexpected keys", info.get("unexpected_keys", [])),
                ("wrong shapes", info.get("mismatched_keys", [])),
            )
            if keys
        ]
        if problems:
            raise CheckpointError(folder, "does not fit its config (" + "; ".join(problems) + ")")
        return cls(model.to(device=device, dtype=dtype))

    def forward(self, wav16k: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` (or ``[samples]``) float audio at 16 kHz → ``[B, frames, hidden]``."""
        if wav16k.dim() == 1:
            wav16k = wav16k.unsqueeze(0)
        param = next(self.model.parameters())
        return self.model(wav16k.to(device=param.device, dtype=param.dtype)).last_hidden_state
