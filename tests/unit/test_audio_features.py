"""Unit tests for reference-audio preparation (no corpus, no model weights)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import torch

from app.engine import audio_features as af
from app.engine import reference_clips as rc


def wav_bytes(samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


def tone(seconds: float, sr: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------------------------- decode_clip


def test_int16_is_scaled_by_32768_like_upstream():
    pcm = np.array([16384, -32768, 32767, 0], dtype=np.int16)
    samples, sr = rc.decode_clip(wav_bytes(pcm, 16000))
    assert sr == 16000
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, pcm.astype(np.float32) / 32768)


def test_path_bytes_and_file_object_give_the_same_samples(tmp_path):
    data = wav_bytes(tone(0.5, 32000), 32000)
    path = tmp_path / "ref.wav"
    path.write_bytes(data)
    from_path = rc.decode_clip(path)
    from_str = rc.decode_clip(str(path))
    from_bytes = rc.decode_clip(data)
    from_file = rc.decode_clip(io.BytesIO(data))
    for samples, sr in (from_str, from_bytes, from_file):
        assert sr == from_path[1]
        np.testing.assert_array_equal(samples, from_path[0])


def test_stereo_is_averaged_to_mono():
    left = np.full(1000, 0.5, dtype=np.float32)
    right = np.full(1000, -0.25, dtype=np.float32)
    samples, _ = rc.decode_clip(wav_bytes(np.stack([left, right], axis=1), 16000, "FLOAT"))
    assert samples.shape == (1000,)
    np.testing.assert_allclose(samples, 0.125)


@pytest.mark.parametrize("payload", [b"", b"not audio at all", b"RIFF\x00\x00"])
def test_undecodable_audio_is_a_reference_error(payload):
    with pytest.raises(rc.ReferenceAudioError):
        rc.decode_clip(payload)


def test_empty_wav_is_a_reference_error():
    with pytest.raises(rc.ReferenceAudioError, match="empty"):
        rc.decode_clip(wav_bytes(np.zeros(0, dtype=np.int16), 16000))


# --------------------------------------------------------------------------------------- HuBERT


def test_soxr_resampling_length_follows_librosa_ceil_rule():
    # 44.1 kHz -> 16 kHz of 44101 samples: ceil(44101 * 16000 / 44100) = 16001.
    out = af.resample_soxr_hq(np.zeros(44101, dtype=np.float32), 44100, 16000)
    assert out.shape == (16001,) and out.dtype == np.float32


def test_soxr_resampling_keeps_a_tone():
    out = af.resample_soxr_hq(tone(1.0, 48000, freq=1000.0), 48000, 16000)
    expected = tone(1.0, 16000, freq=1000.0)
    # away from the edges the resampled tone is the tone sampled at 16 kHz
    np.testing.assert_allclose(out[1000:-1000], expected[1000:-1000], atol=1e-3)


def test_hubert_input_at_16k_is_the_audio_plus_zeros_counted_at_the_model_rate():
    samples = tone(4.0, 16000)
    wav = af.hubert_input(samples, 16000, model_sampling_rate=32000)
    assert wav.shape == (1, 64000 + 9600)  # 0.3 s at 32 kHz = 9600 zeros, appended at 16 kHz
    assert wav.dtype == torch.float32
    np.testing.assert_array_equal(wav[0, :64000].numpy(), samples)
    assert torch.count_nonzero(wav[0, 64000:]) == 0


def test_hubert_input_resamples_other_rates_to_16k():
    wav = af.hubert_input(tone(4.5, 48000), 48000, model_sampling_rate=24000)
    assert wav.shape == (1, 72000 + 7200)


@pytest.mark.parametrize("seconds", [3.0, 10.0])
def test_hubert_input_accepts_the_limits(seconds):
    assert af.hubert_input(tone(seconds, 16000), 16000, 32000).shape[1] == int(seconds * 16000) + 9600


# ----------------------------------------------------------------------------- model-rate audio


def test_model_rate_audio_leaves_quiet_audio_alone_at_the_model_rate():
    samples = tone(1.0, 32000, amplitude=0.9)
    audio = af.model_rate_audio(samples, 32000, 32000)
    assert audio.shape == (1, 32000)
    np.testing.assert_array_equal(audio[0].numpy(), samples)


@pytest.mark.parametrize(("peak", "divisor"), [(1.5, 1.5), (3.0, 2.0)])
def test_model_rate_audio_divides_by_the_peak_but_never_by_more_than_two(peak, divisor):
    samples = tone(0.5, 32000, amplitude=1.0)
    samples = samples / np.abs(samples).max() * peak
    audio = af.model_rate_audio(samples, 32000, 32000)
    np.testing.assert_allclose(audio[0].numpy(), samples / divisor, rtol=1e-6)


def test_model_rate_audio_resamples_with_torchaudio_transform():
    import torchaudio

    samples = tone(1.0, 16000)
    audio = af.model_rate_audio(samples, 16000, 32000)
    expected = torchaudio.transforms.Resample(16000, 32000)(torch.from_numpy(samples)[None])
    assert audio.shape == (1, 32000)
    torch.testing.assert_close(audio, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------- spectrogram

CFG = af.SpectrogramConfig(sampling_rate=32000, filter_length=2048, hop_length=640, win_length=2048)


def test_spectrogram_config_reads_a_sovits_config_or_its_data_section():
    data = {"sampling_rate": 32000, "filter_length": 2048, "hop_length": 640, "win_length": 2048, "x": 1}
    assert af.SpectrogramConfig.from_sovits_config({"data": data, "model": {}}) == CFG
    assert af.SpectrogramConfig.from_sovits_config(data) == CFG


def test_spectrogram_shape_is_one_frame_per_hop():
    spec = af.spectrogram(tone(4.0, 32000), 32000, CFG)
    assert spec.shape == (1, 1025, 200)
    assert spec.dtype == torch.float32


def test_spectrogram_peaks_at_the_tone_frequency():
    bin_hz = 32000 / 2048
    spec = af.spectrogram(tone(1.0, 32000, freq=100 * bin_hz), 32000, CFG)
    assert int(spec[0, :, 10:-10].mean(dim=1).argmax()) == 100


def test_spectrogram_of_silence_is_the_epsilon_floor():
    spec = af.linear_spectrogram(torch.zeros(1, 32000), 2048, 640, 2048)
    torch.testing.assert_close(spec, torch.full_like(spec, 1e-4))


def test_spectrogram_matches_a_direct_dft_of_one_frame():
    audio = torch.from_numpy(tone(1.0, 32000, freq=523.0))[None]
    spec = af.linear_spectrogram(audio, 2048, 640, 2048)
    pad = (2048 - 640) // 2
    padded = torch.nn.functional.pad(audio[None], (pad, pad), mode="reflect")[0, 0]
    frame = padded[5 * 640 : 5 * 640 + 2048].double() * torch.hann_window(2048, dtype=torch.float64)
    magnitude = torch.fft.rfft(frame).abs()
    torch.testing.assert_close(spec[0, :, 5].double(), torch.sqrt(magnitude**2 + 1e-8), atol=1e-3, rtol=1e-4)


# ------------------------------------------------------------------------------------ SV input


def test_sv_input_round_trips_through_the_model_rate():
    samples = tone(5.0, 16000)
    wav = af.sv_input(samples, 16000, model_sampling_rate=32000)
    assert wav.shape == (1, 80000)
    # 16k -> 32k -> 16k is close to, but not exactly, the original (upstream's double resampling)
    assert not torch.equal(wav[0], torch.from_numpy(samples))
    torch.testing.assert_close(wav[0, 100:-100], torch.from_numpy(samples)[100:-100], atol=2e-3, rtol=0)


def test_combined_helper_equals_the_separate_functions():
    samples = tone(3.5, 48000)
    spec, wav16k = af.reference_spec_and_sv_input(samples, 48000, CFG)
    torch.testing.assert_close(spec, af.spectrogram(samples, 48000, CFG), rtol=0, atol=0)
    torch.testing.assert_close(wav16k, af.sv_input(samples, 48000, 32000), rtol=0, atol=0)
    assert wav16k.shape == (1, 56000)
