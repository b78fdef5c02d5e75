"""Output audio assembly: pauses, per-fragment peak limiting, int16 conversion, WAV encoding."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import soundfile
import torch

from app.engine.audio import assemble_fragments, encode_wav, peak_limited, silence_samples, to_int16


def test_silence_length_is_truncated_rate_times_seconds():
    assert silence_samples(32000, 0.3) == 9600
    assert silence_samples(32000, 0.01) == 320
    assert silence_samples(24000, 0.35) == int(24000 * 0.35)
    assert silence_samples(32000, 0) == 0


def test_peak_limiting_only_touches_loud_fragments():
    quiet = np.array([0.5, -1.0, 0.25], dtype=np.float32)
    np.testing.assert_array_equal(peak_limited(quiet), quiet)
    loud = np.array([2.0, -4.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(peak_limited(loud), [0.5, -1.0, 0.25])
    assert peak_limited(np.zeros(0, dtype=np.float32)).size == 0


def test_fragments_are_joined_in_order_each_followed_by_a_pause():
    a = np.full(3, 0.1, dtype=np.float32)
    b = torch.full((2,), -0.2)
    audio = assemble_fragments([a, b], pause_samples=4)
    expected = np.array([0.1] * 3 + [0] * 4 + [-0.2] * 2 + [0] * 4, dtype=np.float32)
    np.testing.assert_allclose(audio, expected)
    assert audio.dtype == np.float32


def test_each_fragment_is_limited_on_its_own():
    loud = np.array([3.0, -1.5], dtype=np.float32)
    quiet = np.array([0.9], dtype=np.float32)
    audio = assemble_fragments([loud, quiet], pause_samples=0)
    np.testing.assert_allclose(audio, [1.0, -0.5, 0.9])


def test_no_fragments_give_empty_audio():
    assert assemble_fragments([], pause_samples=10).shape == (0,)


def test_int16_conversion_truncates_toward_zero_like_upstream():
    audio = np.array([0.0, 0.5, -0.5, 0.99999, -0.99999, 1e-5, -1e-5, -1.0], dtype=np.float32)
    ours = to_int16(audio)
    assert ours.dtype == np.int16
    # Upstream: (audio * 32768).astype(np.int16), in float32.
    np.testing.assert_array_equal(ours, (audio * np.float32(32768)).astype(np.int16))
    assert ours[-1] == -32768


def test_a_full_scale_positive_sample_is_clipped_not_wrapped():
    # Upstream's cast wraps 32768 to -32768 (a click); we keep the sign.
    assert to_int16(np.array([1.0], dtype=np.float32))[0] == 32767


def test_wav_round_trip():
    audio = to_int16(np.sin(np.linspace(0, 20, 1000, dtype=np.float32)) * 0.5)
    data = encode_wav(audio, 32000)
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 32000)
    decoded, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 32000
    np.testing.assert_array_equal(decoded, audio)


def test_wav_encoding_refuses_float_samples():
    with pytest.raises(ValueError, match="int16"):
        encode_wav(np.zeros(10, dtype=np.float32), 16000)
