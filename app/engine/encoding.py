"""Output encoders: mono int16 samples → the bytes of one audio file or stream in the asked media type.

``encode`` makes a whole answer in one go; ``StreamEncoder`` makes the same kind of answer piece by
piece as the audio is synthesised: ``start()``, ``write()`` per chunk, ``finish()``, whose outputs
joined are one continuous file (not one file per chunk), so a client can play it as it arrives.

``wav`` and ``raw`` are written here by hand (PCM needs no codec). The compressed types are encoded
and muxed with PyAV (FFmpeg's libraries, in process, no ffmpeg subprocess). When streaming, the muxer
writes into a sink with ``write()`` and no ``seek()``, so PyAV tells FFmpeg the output is not
seekable and nothing already sent is rewritten: the FLAC header keeps "length unknown" and no MD5,
MP3 goes without its Xing/LAME frame (so decoders do not trim the encoder delay). FFmpeg-based
players accept both; libsndfile (soundfile) refuses a FLAC of unknown length. ``encode`` has the whole answer, so it gives the muxer a seekable buffer and gets complete
headers. Lossy codecs pad: the decoded audio is a few tens of ms longer (AAC priming, whole frames).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from app.engine.audio import encode_wav

MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "raw": "audio/raw",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
}


@dataclass(frozen=True)
class _Codec:
    """How one compressed media type is made with PyAV."""

    container: str  # FFmpeg muxer name
    codec: str  # FFmpeg encoder name
    bit_rate: int | None  # None: lossless, no bit rate to set
    muxer_options: dict[str, str] = field(default_factory=dict)


_CODECS: dict[str, _Codec] = {
    # 64 kb/s mono Opus is near-transparent for speech (Opus is good from ~24 kb/s on speech).
    # The Ogg muxer holds packets until a page spans page_duration (default 1 s, µs here): 100 ms
    # pages let a stream start sooner, for ~3% more bytes of page headers.
    "ogg": _Codec("ogg", "libopus", 64_000, {"page_duration": "100000"}),
    # FFmpeg's native AAC-LC encoder (libfdk_aac is not in PyAV's wheels); it is weak at low bit
    # rates, so 128 kb/s rather than the 64-96 kb/s that would do for speech with a better encoder.
    "aac": _Codec("adts", "aac", 128_000),
    # LAME. 128 kb/s: the common default that every player handles well.
    "mp3": _Codec("mp3", "libmp3lame", 128_000),
    # Lossless: the samples come back exactly. The muxer reserves 8 KiB of padding for tags to be
    # added in place later; nothing is added later.
    "flac": _Codec("flac", "flac", None, {"metadata_header_padding": "0"}),
}


def _encoder_rate(codec_name: str, sample_rate: int) -> int:
    """The rate to encode input at ``sample_rate`` with: the same when the encoder takes it, else the
    nearest rate above it (never lose bandwidth), else the highest. Opus takes only 8/12/16/24/48
    kHz, so 32 kHz goes to 48 kHz; MP3 and AAC take 32 and 24 kHz as they are."""
    rates = av.codec.Codec(codec_name, "w").audio_rates  # None: any rate
    if not rates or sample_rate in rates:
        return sample_rate
    higher = [rate for rate in rates if rate > sample_rate]
    return min(higher) if higher else max(rates)


def _check_media_type(media_type: str) -> str:
    if media_type not in MEDIA_TYPES:
        accepted = ", ".join(MEDIA_TYPES)
        raise ValueError(f"unknown media type {media_type!r}; accepted: {accepted}")
    return media_type


def _int16_mono(samples: np.ndarray) -> np.ndarray:
    """``samples`` as little-endian int16; anything but a 1-D int16 array is refused (no guessing at
    the scale of float audio or at how channels are laid out)."""
    pcm = np.asarray(samples)
    if pcm.dtype != np.int16:
        raise ValueError(f"expected int16 samples, got {pcm.dtype}")
    if pcm.ndim != 1:
        raise ValueError(f"expected mono samples (a 1-D array), got shape {pcm.shape}")
    return pcm.astype("<i2", copy=False)


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte mono 16-bit PCM WAV header for a stream of unknown length: the RIFF and data sizes
    are 0xFFFFFFFF, the usual convention, which players read as 'until the end of the data'."""
    unknown = 0xFFFFFFFF
    byte_rate = sample_rate * 2
    return (
        struct.pack("<4sI4s", b"RIFF", unknown, b"WAVE")
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, byte_rate, 2, 16)
        + struct.pack("<4sI", b"data", unknown)
    )


class _Sink:
    """Write-only file-like object that collects what the muxer writes. It has no ``seek``/``tell``,
    so PyAV marks the output as not seekable and FFmpeg never tries to go back."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self, final: bool = False) -> bytes:
        """Everything written since the last ``take``."""
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _WholeFileSink(io.BytesIO):
    """Seekable output for a whole answer: the muxer may go back to complete its header (FLAC's
    length and MD5, MP3's Xing/LAME frame with the encoder delay, for gapless length), so nothing
    is handed out before the end."""

    def take(self, final: bool = False) -> bytes:
        return self.getvalue() if final else b""


class StreamEncoder:
    """Encodes one answer chunk by chunk: ``start()``, then ``write(samples)`` per chunk, then
    ``finish()``; each returns the bytes ready so far, and their concatenation is one file.

    A codec may hold samples back (frame sizes, look-ahead, Ogg pages), so ``write`` can return
    ``b""``; everything held comes out by ``finish()``. Chunks may have any length, empty included.
    """

    def __init__(self, media_type: str, sample_rate: int, *, whole_file: bool = False):
        """``whole_file``: the caller keeps every byte until ``finish()`` (``encode`` does), so the
        muxer may complete headers at the end; the bytes then all come from ``finish()``."""
        self.media_type = _check_media_type(media_type)
        self.sample_rate = int(sample_rate)
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self._started = False
        self._finished = False
        self._samples_in = 0  # input samples so far: the pts of the next frame
        self._samples_encoded = 0  # samples handed to the encoder, at its rate
        self._container = None
        codec = _CODECS.get(media_type)
        if codec is not None:
            self._open(codec, whole_file)

    def _open(self, codec: _Codec, whole_file: bool) -> None:
        self._lossy = codec.bit_rate is not None
        self._sink = _WholeFileSink() if whole_file else _Sink()
        self._container = av.open(
            self._sink,
            mode="w",
            format=codec.container,
            # Hand each muxed packet to the sink at once rather than when PyAV's 32 KiB IO buffer
            # fills (seconds of audio). FFmpeg's "auto" does so too for an unseekable output; the
            # latency of the stream depends on it, so it is not left to a default.
            container_options={"flush_packets": "1", **codec.muxer_options},
        )
        rate = _encoder_rate(codec.codec, self.sample_rate)
        self._stream = self._container.add_stream(codec.codec, rate=rate)
        context = self._stream.codec_context
        context.layout = "mono"
        if codec.bit_rate is not None:
            context.bit_rate = codec.bit_rate
        # Rate and sample format conversion happen here, explicitly; PyAV's encoder then only cuts
        # the frames to the codec's frame size (Opus 960, AAC 1024, MP3 1152 samples) and keeps the
        # remainder until more audio or the flush arrives.
        self._resampler = av.AudioResampler(format=context.format, layout="mono", rate=rate)

    def start(self) -> bytes:
        """Bytes that can be sent before any audio: the WAV header, the container's header."""
        if self._started:
            raise RuntimeError("start() was already called")
        self._started = True
        if self.media_type == "wav":
            return streaming_wav_header(self.sample_rate)
        if self._container is None:
            return b""
        # Writing the header needs no audio; Ogg, FLAC and MP3 (ID3v2 tag) have one, ADTS has none.
        self._container.start_encoding()
        return self._sink.take()

    def write(self, samples: np.ndarray) -> bytes:
        """Encode a chunk of int16 samples; returns the bytes ready so far (possibly ``b""``)."""
        pcm = _int16_mono(samples)
        if not self._started:
            raise RuntimeError("call start() before write()")
        if self._finished:
            raise RuntimeError("write() after finish()")
        if self._container is None:
            return pcm.tobytes()
        if pcm.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.time_base = Fraction(1, self.sample_rate)
        frame.pts = self._samples_in
        self._samples_in += pcm.size
        for resampled in self._resampler.resample(frame):
            self._encode(resampled)
        return self._sink.take()

    def finish(self) -> bytes:
        """Flush the resampler, the encoder and the muxer; returns the rest of the stream."""
        if not self._started:
            raise RuntimeError("call start() before finish()")
        if self._finished:
            raise RuntimeError("finish() was already called")
        self._finished = True
        if self._container is None:
            return b""
        for resampled in self._resampler.resample(None):
            self._encode(resampled)
        if self._samples_encoded == 0 and self._lossy:
            # Decoders refuse an Opus/MP3/AAC stream without a single audio packet (FFmpeg: "Invalid
            # data found", "End of file"); one silent sample keeps an empty answer (or one too short
            # to survive resampling) a valid, silent file. An empty FLAC is valid as it is.
            self._encode(self._silence(1))
        self._encode(None)
        self._container.close()  # writes the trailer
        return self._sink.take(final=True)

    def _silence(self, samples: int) -> av.AudioFrame:
        context = self._stream.codec_context
        frame = av.AudioFrame(format=context.format, layout="mono", samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = context.sample_rate
        return frame

    def _encode(self, frame: av.AudioFrame | None) -> None:
        if frame is not None:
            self._samples_encoded += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def encode(samples: np.ndarray, sample_rate: int, media_type: str) -> bytes:
    """The whole answer in ``media_type`` for int16 ``samples`` at ``sample_rate``. With the length
    known, headers are complete: WAV carries its exact sizes, FLAC its length and MD5, MP3 a
    Xing/LAME frame; otherwise the bytes are the same as the streaming encoder's."""
    _check_media_type(media_type)
    pcm = _int16_mono(samples)
    if media_type == "wav":
        return encode_wav(pcm, sample_rate)
    encoder = StreamEncoder(media_type, sample_rate, whole_file=True)
    return encoder.start() + encoder.write(pcm) + encoder.finish()
