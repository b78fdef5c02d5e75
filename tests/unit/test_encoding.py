"""Output encoders: every media type, whole and streamed, decoded back with PyAV (and soundfile where
it reads the format) and checked for rate, length, exact samples (lossless) and pitch (lossy)."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
import soundfile

from app.engine.audio import encode_wav
from app.engine.encoding import MEDIA_TYPES, StreamEncoder, encode

RATES = (32000, 24000)
LOSSLESS = ("wav", "raw", "flac")
LOSSY = ("ogg", "aac", "mp3")
TONE_HZ = 440.0
# Lossy codecs only ever add audio (AAC priming, MP3 encoder delay when streamed, whole last frames);
# this is how much, at most.
LOSSY_PADDING_S = 0.1
HEADER_MAGIC = {"wav": b"RIFF", "ogg": b"OpusHead", "mp3": b"ID3", "flac": b"fLaC"}


def _tone(sample_rate: int, seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def _uneven_chunks(samples: np.ndarray) -> list[np.ndarray]:
    """Pieces of every awkward size: empty (twice), one sample, not a multiple of any frame size."""
    return np.split(samples, [0, 1, 1, 778, 5003, 5004, 17000])


def _stream(media_type: str, sample_rate: int, chunks: list[np.ndarray]) -> tuple[bytes, list[bytes]]:
    encoder = StreamEncoder(media_type, sample_rate)
    parts = [encoder.start(), *(encoder.write(chunk) for chunk in chunks), encoder.finish()]
    return b"".join(parts), parts


def _decode(data: bytes, media_type: str, sample_rate: int) -> tuple[np.ndarray, int]:
    """Samples (float, in int16 units) and rate of ``data``, read back with PyAV."""
    if media_type == "raw":
        return np.frombuffer(data, dtype="<i2").astype(np.float64), sample_rate
    # Very short ADTS streams are not recognised by probing; a client knows the type from the header.
    with av.open(io.BytesIO(data), format="aac" if media_type == "aac" else None) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
        sample_format = stream.codec_context.format.name
    audio = np.concatenate(frames) if frames else np.zeros(0)
    if sample_format.startswith("flt"):  # lossy decoders give float in [-1, 1]
        audio = audio * 32768.0
    return audio.astype(np.float64), rate


def _expected_rate(media_type: str, sample_rate: int) -> int:
    return 48000 if media_type == "ogg" else sample_rate  # Opus decodes at 48 kHz


def _dominant_hz(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Strongest frequency and the share of the signal's energy within 10 Hz of it."""
    power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / sample_rate)
    peak = float(freqs[np.argmax(power)])
    return peak, float(power[np.abs(freqs - peak) <= 10].sum() / power.sum())


def _check_decodes_to(data: bytes, media_type: str, sample_rate: int, samples: np.ndarray) -> None:
    decoded, rate = _decode(data, media_type, sample_rate)
    assert rate == _expected_rate(media_type, sample_rate)
    if media_type in LOSSLESS:
        np.testing.assert_array_equal(decoded, samples.astype(np.float64))
        return
    extra_s = decoded.size / rate - samples.size / sample_rate
    assert 0 <= extra_s <= LOSSY_PADDING_S, f"decoded {extra_s:+.3f} s off the input's length"
    # The tone must come through: right pitch, carrying nearly all the energy, at about its level.
    peak_hz, share = _dominant_hz(decoded, rate)
    assert abs(peak_hz - TONE_HZ) < 3, peak_hz
    assert share > 0.9, share
    level = np.sqrt(np.mean(decoded**2))
    assert level == pytest.approx(np.sqrt(np.mean(samples.astype(np.float64) ** 2)), rel=0.15)


def test_media_types_and_their_content_types():
    assert MEDIA_TYPES == {
        "wav": "audio/wav",
        "raw": "audio/raw",
        "ogg": "audio/ogg",
        "aac": "audio/aac",
        "mp3": "audio/mpeg",
        "flac": "audio/flac",
    }


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("media_type", list(MEDIA_TYPES))
def test_whole_answer_decodes_back(media_type, sample_rate):
    samples = _tone(sample_rate)
    _check_decodes_to(encode(samples, sample_rate, media_type), media_type, sample_rate, samples)


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("media_type", list(MEDIA_TYPES))
def test_stream_in_uneven_chunks_is_one_file_that_decodes_back(media_type, sample_rate):
    samples = _tone(sample_rate)
    data, _ = _stream(media_type, sample_rate, _uneven_chunks(samples))
    # One file, not one per chunk: a single container header (ADTS has none; one file per chunk
    # would show there as extra priming in the length check).
    if media_type in HEADER_MAGIC:
        assert data.count(HEADER_MAGIC[media_type]) == 1
    _check_decodes_to(data, media_type, sample_rate, samples)


@pytest.mark.parametrize("sample_rate", RATES)
def test_whole_wav_and_flac_have_exact_sizes_for_soundfile(sample_rate):
    samples = _tone(sample_rate)
    wav = encode(samples, sample_rate, "wav")
    assert wav == encode_wav(samples, sample_rate)
    for data in (wav, encode(samples, sample_rate, "flac")):
        with soundfile.SoundFile(io.BytesIO(data)) as file:
            assert (file.samplerate, file.channels, file.frames) == (sample_rate, 1, samples.size)
            np.testing.assert_array_equal(file.read(dtype="int16"), samples)


def test_whole_mp3_carries_its_encoder_delay_so_it_decodes_to_the_exact_length():
    # encode() lets the muxer go back and write the Xing/LAME frame; a stream cannot have it.
    samples = _tone(24000)
    decoded, _ = _decode(encode(samples, 24000, "mp3"), "mp3", 24000)
    assert decoded.size == samples.size


@pytest.mark.parametrize("sample_rate", RATES)
def test_streamed_wav_is_the_unknown_length_header_then_pcm(sample_rate):
    samples = _tone(sample_rate)
    data, parts = _stream("wav", sample_rate, _uneven_chunks(samples))
    header = parts[0]
    assert len(header) == 44 and data.startswith(header)
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", header, 0)
    assert (riff, riff_size, wave_id) == (b"RIFF", 0xFFFFFFFF, b"WAVE")
    fmt = struct.unpack_from("<4sIHHIIHH", header, 12)
    assert fmt == (b"fmt ", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    assert struct.unpack_from("<4sI", header, 36) == (b"data", 0xFFFFFFFF)
    assert data[44:] == samples.astype("<i2").tobytes()
    assert parts[-1] == b""
    # soundfile reads up to the end of the data too (PyAV does: test above).
    read, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == sample_rate
    np.testing.assert_array_equal(read, samples)


def test_raw_is_bare_little_endian_pcm():
    samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    assert encode(samples, 32000, "raw") == b"\x00\x00\x01\x00\xff\xff\xff\x7f\x00\x80"
    data, parts = _stream("raw", 32000, [samples[:2], samples[2:2], samples[2:]])
    assert parts[0] == b"" and parts[-1] == b""
    assert data == encode(samples, 32000, "raw")


@pytest.mark.parametrize("media_type", list(MEDIA_TYPES))
def test_long_streams_yield_bytes_before_finish(media_type):
    sample_rate = 24000
    samples = _tone(sample_rate, seconds=5.0)
    data, parts = _stream(media_type, sample_rate, np.split(samples, 10))
    writes = parts[1:-1]
    # Audio comes out while it is written, not all at the end: at most the first write and a
    # little at finish() are held back.
    assert sum(1 for part in writes if part) >= len(writes) - 1, [len(part) for part in parts]
    assert len(parts[-1]) < len(data) / 4
    _check_decodes_to(data, media_type, sample_rate, samples)


@pytest.mark.parametrize("media_type", list(MEDIA_TYPES))
@pytest.mark.parametrize("length", [0, 1])
def test_empty_and_one_sample_answers_are_valid_files(media_type, length):
    samples = np.full(length, 1000, dtype=np.int16)
    for data in (encode(samples, 32000, media_type), _stream(media_type, 32000, [samples])[0]):
        decoded, _ = _decode(data, media_type, 32000)
        if media_type in LOSSLESS:
            np.testing.assert_array_equal(decoded, samples.astype(np.float64))
        else:  # at most some padding, all of it (near) silent
            assert decoded.size / 32000 <= LOSSY_PADDING_S
            assert np.abs(decoded).max(initial=0) < 2000


def test_rates_the_codec_does_not_take_are_resampled():
    # 22.05 kHz: not an Opus rate (→ 24 kHz inside, 48 kHz decoded); 7 kHz: not an MP3 rate (→ 8 kHz).
    for sample_rate, media_type, decoded_rate in ((22050, "ogg", 48000), (7000, "mp3", 8000)):
        samples = _tone(sample_rate)
        decoded, rate = _decode(encode(samples, sample_rate, media_type), media_type, sample_rate)
        assert rate == decoded_rate
        assert abs(_dominant_hz(decoded, rate)[0] - TONE_HZ) < 3


def test_unknown_media_type_is_refused_with_the_accepted_ones():
    samples = _tone(32000, 0.1)
    for call in (lambda: encode(samples, 32000, "opus"), lambda: StreamEncoder("WAV", 32000)):
        with pytest.raises(ValueError, match="unknown media type") as error:
            call()
        assert all(name in str(error.value) for name in MEDIA_TYPES)


@pytest.mark.parametrize("media_type", ["wav", "raw", "ogg", "flac"])
def test_only_mono_int16_samples_are_taken(media_type):
    floats = np.zeros(100, dtype=np.float32)
    stereo = np.zeros((100, 2), dtype=np.int16)
    for bad in (floats, stereo):
        with pytest.raises(ValueError, match="int16|mono"):
            encode(bad, 32000, media_type)
        encoder = StreamEncoder(media_type, 32000)
        encoder.start()
        with pytest.raises(ValueError, match="int16|mono"):
            encoder.write(bad)


def test_calls_out_of_order_are_refused():
    encoder = StreamEncoder("mp3", 24000)
    with pytest.raises(RuntimeError):
        encoder.write(np.zeros(10, dtype=np.int16))
    encoder.start()
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.write(np.zeros(10, dtype=np.int16))
    with pytest.raises(RuntimeError):
        encoder.finish()
