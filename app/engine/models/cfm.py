"""Conditional flow matching: the sampler that turns content features into a mel spectrogram (v3/v4).

Upstream ``module/models.py`` ``CFM.inference``. Sampling integrates the velocity field predicted by
the DiT from Gaussian noise (t = 0) to the mel (t = 1) with fixed Euler steps. The first
``prompt.size(-1)`` frames are the reference: their true (normalised) mel is given to the DiT as the
"prompt" channel, and the sample itself is held at zero there, so only the frames after the prompt
are generated. Callers cut the prompt frames off the result.
"""

from __future__ import annotations

import torch
from torch import nn

from app.engine.models.dit import DiT


class FlowMatchingSampler(nn.Module):
    """Euler sampler around a :class:`DiT` velocity estimator (upstream ``CFM``; ``estimator`` is its DiT)."""

    def __init__(self, estimator: DiT):
        super().__init__()
        self.estimator = estimator
        self.mel_bins = estimator.config.mel_dim

    @torch.no_grad()
    def inference(
        self,
        mu: torch.Tensor,
        x_lens: torch.Tensor,
        prompt: torch.Tensor,
        n_timesteps: int,
        temperature: float = 1.0,
        guidance_rate: float = 0.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a normalised mel ``[batch, mel_bins, frames]``.

        ``mu``: content features ``[batch, frames, text_dim]`` (time-major, as upstream passes them).
        ``x_lens``: ``[batch]`` or ``[1]`` (shared) number of real frames; later frames are padding that
        attention ignores. ``prompt``: the normalised reference mel ``[batch or 1, mel_bins, prompt_frames]``
        covering the first frames. ``n_timesteps``: Euler steps. ``noise``: the start noise
        ``[batch, mel_bins, frames]`` (drawn from ``generator`` when None; scaled by ``temperature``
        either way). ``guidance_rate`` > 0 adds classifier-free guidance against a prediction with
        neither prompt nor content (upstream's ``inference_cfg_rate``; its pipeline uses 0).
        """
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps must be at least 1, got {n_timesteps}")
        batch, frames = mu.size(0), mu.size(1)
        shape = (batch, self.mel_bins, frames)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        x = noise.to(device=mu.device, dtype=mu.dtype) * temperature

        prompt_len = prompt.size(-1)
        prompt_mel = torch.zeros_like(x)
        prompt_mel[..., :prompt_len] = prompt[..., :prompt_len]
        x[..., :prompt_len] = 0

        mask = _frame_mask(x_lens.to(mu.device), frames)
        dit = self.estimator
        step = 1 / n_timesteps
        step_embedding = dit.embed_step(torch.full((batch,), step, device=mu.device, dtype=mu.dtype))
        content = dit.embed_content(mu)
        prompt_t = prompt_mel.transpose(1, 2)
        if guidance_rate > 1e-5:
            empty_content = dit.embed_content(torch.zeros_like(mu))
            no_prompt = torch.zeros_like(prompt_t)

        t = 0.0
        for _ in range(n_timesteps):
            # t accumulates in Python floats (k * 1/n by repeated addition), as upstream does.
            t_batch = torch.full((batch,), t, device=mu.device, dtype=mu.dtype)
            noisy = x.transpose(1, 2)
            velocity = dit(noisy, prompt_t, content, t_batch, step_embedding, mask).transpose(1, 2)
            if guidance_rate > 1e-5:
                unconditioned = dit(noisy, no_prompt, empty_content, t_batch, step_embedding, mask)
                velocity = velocity + (velocity - unconditioned.transpose(1, 2)) * guidance_rate
            x = x + step * velocity
            t = t + step
            x[:, :, :prompt_len] = 0
        return x


def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``[n]`` lengths -> ``[n, frames]`` True for frames before each length."""
    return torch.arange(frames, device=lengths.device).unsqueeze(0) < lengths.reshape(-1, 1)
