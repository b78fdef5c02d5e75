"""AP-BWE (v3 super-sampling): loading the official file format, and what ``extend`` does to a waveform."""

from __future__ import annotations

import json

import pytest
import torch
import torchaudio.functional as AF

from app.engine.checkpoints import CheckpointError
from app.engine.models.bandwidth_extension import BandwidthExtender
from tests.conftest import write_bandwidth_extension


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_bandwidth_extension(tmp_path_factory.mktemp("ap_bwe"), channels=32, layers=2)


def test_extends_24k_audio_to_48k(folder):
    extender = BandwidthExtender.from_folder(folder)
    assert (extender.cfg.input_rate, extender.cfg.output_rate) == (24000, 48000)
    audio = torch.sin(torch.arange(24000) * 2 * torch.pi * 440 / 24000) * 0.5
    out = extender.extend(audio, 24000)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # twice the samples, cut to whole hops by the inverse STFT
    assert out.shape[0] == (2 * audio.shape[0]) // extender.cfg.hop_size * extender.cfg.hop_size


def test_with_an_identity_amplitude_head_and_zero_phase_the_output_is_the_zero_phase_input(folder):
    """Amplitude residual 0 and phase atan2(0, positive) = 0: the output must be the inverse STFT of the
    resampled input's magnitude. Checks the resampling, the STFT sizes, the log floor and the phase head."""
    extender = BandwidthExtender.from_folder(folder)
    net = extender.net
    with torch.no_grad():
        net.linear_post_mag.weight.zero_()
        net.linear_post_mag.bias.zero_()
        for head in (net.linear_post_pha_r, net.linear_post_pha_i):
            head.weight.zero_()
            head.bias.zero_()
        net.linear_post_pha_r.bias.fill_(1.0)
    audio = torch.randn(4800, generator=torch.Generator().manual_seed(0)) * 0.1
    cfg = extender.cfg
    window = torch.hann_window(cfg.win_size)
    wide = AF.resample(audio[None], 24000, 48000)
    spectrum = torch.stft(wide, cfg.n_fft, cfg.hop_size, cfg.win_size, window, return_complex=True)
    magnitude = torch.exp(torch.log(spectrum.abs() + 1e-4))
    expected = torch.istft(magnitude.to(torch.complex64), cfg.n_fft, cfg.hop_size, cfg.win_size, window)[0]
    torch.testing.assert_close(extender.extend(audio, 24000), expected, atol=1e-5, rtol=1e-4)


def test_missing_files_are_named(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="g_24kto48k.zip"):
        BandwidthExtender.from_folder(tmp_path)
    (tmp_path / "g_24kto48k.zip").write_bytes((folder / "g_24kto48k.zip").read_bytes())
    with pytest.raises(FileNotFoundError, match="config.json"):
        BandwidthExtender.from_folder(tmp_path)


def test_a_config_without_the_model_sizes_is_refused(tmp_path, folder):
    (tmp_path / "g_24kto48k.zip").write_bytes((folder / "g_24kto48k.zip").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"n_fft": 1024}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="config.json"):
        BandwidthExtender.from_folder(tmp_path)


def test_weights_that_do_not_fit_are_refused_with_the_keys_named(tmp_path, folder):
    state = torch.load(folder / "g_24kto48k.zip", weights_only=True)
    del state["generator"]["linear_post_mag.bias"]
    torch.save(state, tmp_path / "g_24kto48k.zip")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(CheckpointError, match="linear_post_mag.bias"):
        BandwidthExtender.from_folder(tmp_path)
    torch.save(state["generator"], tmp_path / "g_24kto48k.zip")  # a bare state dict, not {"generator": ...}
    with pytest.raises(CheckpointError, match="generator"):
        BandwidthExtender.from_folder(tmp_path)


def test_long_audio_runs_in_windows_that_give_the_same_frames_as_one_pass(folder):
    """Windows with the network's receptive field as context reproduce the one-pass result."""
    extender = BandwidthExtender.from_folder(folder)
    bins = extender.cfg.bins
    generator = torch.Generator().manual_seed(1)
    log_amplitude = torch.randn(1, bins, 300, generator=generator)
    phase = torch.rand(1, bins, 300, generator=generator) * 6 - 3
    whole = extender._run_net(log_amplitude, phase, chunk=10_000)
    windowed = extender._run_net(log_amplitude, phase, chunk=64)
    for a, b in zip(whole, windowed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    exact = (windowed[0] - whole[0]).abs().max()
    # too little context changes the frames next to each window edge, far beyond rounding
    extender.cfg = type(extender.cfg)(**{**extender.cfg.__dict__, "layers": 0})
    narrow = extender._run_net(log_amplitude, phase, chunk=64)
    assert (narrow[0] - whole[0]).abs().max() > 100 * max(float(exact), 1e-9)
