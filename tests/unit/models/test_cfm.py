"""Unit tests of the flow-matching sampler (its Euler schedule, prompt handling, start noise, guidance)
and the pure pieces of its DiT (rotary embedding, sinusoids, GRN) on small random models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from app.engine.models.cfm import FlowMatchingSampler, _frame_mask
from app.engine.models.dit import (
    DiT,
    DiTConfig,
    GlobalResponseNorm,
    apply_rotary,
    rotary_angles,
    sinusoid_table,
    timestep_features,
)

TINY = DiTConfig(dim=32, depth=2, heads=2, head_dim=16, mel_dim=8, text_dim=12, text_conv_layers=1)


class StraightToTarget(nn.Module):
    """A stand-in estimator whose velocity carries x straight to ``target`` by t = 1: (target - x) / (1 - t).

    Euler steps then land exactly on the target only if the sampler passes the right t at every step.
    It records the conditioning it receives. "Unconditioned" calls (no prompt, no content) aim at 0.
    """

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.config = DiTConfig(mel_dim=target.size(1))
        self.target = target.transpose(1, 2)  # time-major like the DiT
        self.times: list[float] = []
        self.steps: list[float] = []

    def embed_step(self, step):
        self.steps.append(float(step[0]))
        return step

    def embed_content(self, content):
        return content

    def forward(self, noisy, prompt, content, t, step_embedding, mask):
        self.times.append(float(t[0]))
        unconditioned = not prompt.any() and not content.any()
        goal = torch.zeros_like(self.target) if unconditioned else self.target
        return (goal - noisy) / (1 - t[:, None, None])


def test_euler_steps_follow_the_time_grid_and_keep_the_prompt_frames_at_zero():
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 4, 10, generator=gen)
    estimator = StraightToTarget(target)
    sampler = FlowMatchingSampler(estimator)
    mu = torch.randn(2, 10, 3, generator=gen)
    prompt = torch.randn(1, 4, 3, generator=gen)

    out = sampler.inference(mu, torch.tensor([10]), prompt, n_timesteps=4, noise=torch.randn(2, 4, 10))
    assert estimator.times == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert estimator.steps == [0.25]  # the step embedding is computed once per call
    torch.testing.assert_close(out[..., 3:], target[..., 3:])
    assert torch.count_nonzero(out[..., :3]) == 0


def test_the_start_noise_is_used_as_given_or_drawn_from_the_generator():
    torch.manual_seed(0)
    sampler = FlowMatchingSampler(DiT(TINY)).eval()
    mu, prompt = torch.randn(1, 9, TINY.text_dim), torch.randn(1, TINY.mel_dim, 2)
    noise = torch.randn(1, TINY.mel_dim, 9, generator=torch.Generator().manual_seed(7))

    given = sampler.inference(mu, torch.tensor([9]), prompt, 2, noise=noise)
    drawn = sampler.inference(mu, torch.tensor([9]), prompt, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(drawn, given)
    other = sampler.inference(mu, torch.tensor([9]), prompt, 2, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(other, given)
    hotter = sampler.inference(mu, torch.tensor([9]), prompt, 2, noise=noise / 2, temperature=2.0)
    torch.testing.assert_close(hotter, given)


def test_bad_arguments_are_refused():
    sampler = FlowMatchingSampler(StraightToTarget(torch.zeros(1, 4, 5)))
    mu, prompt = torch.zeros(1, 5, 3), torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="shape"):
        sampler.inference(mu, torch.tensor([5]), prompt, 2, noise=torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="n_timesteps"):
        sampler.inference(mu, torch.tensor([5]), prompt, 0)


def test_guidance_pushes_away_from_the_unconditioned_prediction():
    target = torch.full((1, 4, 6), 2.0)
    sampler = FlowMatchingSampler(StraightToTarget(target))
    mu, prompt = torch.ones(1, 6, 3), torch.zeros(1, 4, 1)
    noise = torch.zeros(1, 4, 6)
    # Velocities: conditioned (2 - x)/(1 - t), unconditioned -x/(1 - t); guided = v + rate * 2/(1 - t),
    # which from x = 0 reaches 2 * (1 + rate).
    out = sampler.inference(mu, torch.tensor([6]), prompt, 4, guidance_rate=0.5, noise=noise)
    torch.testing.assert_close(out[..., 1:], torch.full((1, 4, 5), 3.0))
    plain = sampler.inference(mu, torch.tensor([6]), prompt, 4, guidance_rate=0.0, noise=noise)
    torch.testing.assert_close(plain[..., 1:], target[..., 1:])


def test_frame_mask_marks_frames_before_each_length():
    assert _frame_mask(torch.tensor([2, 4]), 4).tolist() == [[True, True, False, False], [True] * 4]


# --------------------------------------------------------------------------- DiT pieces


def test_rotary_rotates_interleaved_pairs_by_position_times_frequency():
    inv_freq = torch.tensor([1.0, 0.1])
    angles = rotary_angles(inv_freq, 5)
    assert angles.shape == (5, 4)
    torch.testing.assert_close(angles[3], torch.tensor([3.0, 3.0, 0.3, 0.3]))

    x = torch.randn(1, 5, 6)
    out = apply_rotary(x, angles)
    # As complex numbers (channel 2i real, 2i+1 imaginary): multiplication by exp(i * angle).
    pairs = torch.view_as_complex(x[..., :4].reshape(1, 5, 2, 2).contiguous())
    expected = pairs * torch.polar(torch.ones(5, 2), angles[:, ::2])
    torch.testing.assert_close(out[..., :4], torch.view_as_real(expected).reshape(1, 5, 4))
    torch.testing.assert_close(out[..., 4:], x[..., 4:])  # past the rotary width: untouched


def test_rotated_dot_products_depend_only_on_the_distance():
    angles = rotary_angles(torch.tensor([0.5, 0.05]), 8)
    q, k = torch.randn(4), torch.randn(4)
    rq = apply_rotary(q.expand(1, 8, 4), angles)[0]
    rk = apply_rotary(k.expand(1, 8, 4), angles)[0]
    torch.testing.assert_close(rq[5] @ rk[2], rq[6] @ rk[3])


def test_sinusoids():
    features = timestep_features(torch.tensor([0.0, 0.5]))
    assert features.shape == (2, 256)
    torch.testing.assert_close(features[0], torch.cat([torch.zeros(128), torch.ones(128)]))
    assert float(features[1, 0]) == pytest.approx(math.sin(500.0), abs=1e-4)  # t is scaled by 1000
    table = sinusoid_table(8, 3)
    torch.testing.assert_close(table[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert float(table[2, 4]) == pytest.approx(math.sin(2.0))


def test_grn_normalises_over_time_and_starts_as_identity():
    grn = GlobalResponseNorm(3)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(grn(x), x)
    with torch.no_grad():
        grn.gamma.fill_(1.0)
    norm = x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(grn(x), x * norm / (norm.mean(-1, keepdim=True) + 1e-6) + x)


def test_dit_output_shape_and_masked_frames():
    torch.manual_seed(0)
    dit = DiT(TINY).eval()
    with torch.no_grad():
        dit.rotary_inv_freq.copy_(1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16)))
    noisy, prompt = torch.randn(2, 7, TINY.mel_dim), torch.randn(2, 7, TINY.mel_dim)
    content = dit.embed_content(torch.randn(2, 7, TINY.text_dim))
    step = dit.embed_step(torch.full((2,), 0.5))
    out = dit(noisy, prompt, content, torch.tensor([0.0, 0.5]), step)
    assert out.shape == (2, 7, TINY.mel_dim)
    full_mask = dit(
        noisy, prompt, content, torch.tensor([0.0, 0.5]), step, torch.ones(1, 7, dtype=torch.bool)
    )
    torch.testing.assert_close(full_mask, out)
    masked = dit(noisy, prompt, content, torch.tensor([0.0, 0.5]), step, _frame_mask(torch.tensor([5]), 7))
    assert not torch.allclose(masked, out)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sampling_runs_in_half_precision_with_a_dit_of_that_dtype(dtype):
    """``--half`` runs the CFM in 16-bit on CUDA; the same code path (noise, time grid, step embedding,
    prompt mixing) must keep the model's dtype throughout. Exercised on the CPU here; CUDA uses the same code.
    The result tracks the float32 one closely."""
    torch.manual_seed(0)
    dit = DiT(TINY).eval()
    mu = torch.randn(1, 12, TINY.text_dim)
    prompt = torch.randn(1, TINY.mel_dim, 4)
    noise = torch.randn(1, TINY.mel_dim, 12)
    reference = FlowMatchingSampler(dit).inference(mu, torch.tensor([12]), prompt, n_timesteps=4, noise=noise)
    low = FlowMatchingSampler(dit.to(dtype)).inference(
        mu.to(dtype), torch.tensor([12]), prompt.to(dtype), n_timesteps=4, noise=noise
    )
    assert low.dtype == dtype and torch.isfinite(low).all()
    assert (low.float() - reference).abs().max() < 0.1 * reference.abs().max()
