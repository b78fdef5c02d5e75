"""Untrusted reference clips: rules checked from the header before decoding, bounded decoding, and
resampling whose memory does not depend on the client's rate. Hostile files run in a child process
under an address-space limit (tests/bounded.py), so a regression fails here instead of exhausting
the machine."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine import resampling
from app.engine.errors import InvalidRequest, TooLarge
from app.engine.reference_clips import (
    ReferenceAudioError,
    ReferenceBudget,
    decode_clip,
    processing_bytes,
    read_header,
)
from tests.audio_files import clip, flac_claiming, silent_flac, wav_header
from tests.bounded import run_bounded

MAX_GROWTH_MB = 300  # peak memory growth allowed for any single clip


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises((InvalidRequest, TooLarge)) as caught:
        call(*args, **kwargs)
    return caught.value.code


# ------------------------------------------------------------------------------- header, then samples


def test_a_long_claim_is_refused_from_the_header_alone():
    """5 minutes x 8 channels of silence is 38 kB of FLAC: refused before any sample is decoded."""
    bomb = silent_flac(300)
    assert len(bomb) < 100_000 and read_header(bomb).seconds == 300
    assert code_of(decode_clip, bomb) == "ref_audio_length"
    lying = flac_claiming(2**36 - 1, clip(4.0, 16000, fmt="FLAC"))
    assert read_header(lying).frames == 2**36 - 1
    assert code_of(decode_clip, lying) == "ref_audio_length"


def test_an_unknown_length_is_refused_before_decoding():
    """A FLAC that does not say its length (written as a stream): libsndfile would size a whole read
    by ~2**63 frames, and fails near the end of a blockwise one."""
    for seconds in (4.0, 60.0):
        unknown = flac_claiming(0, clip(seconds, 16000, fmt="FLAC"))
        assert not read_header(unknown).length_known
        assert code_of(decode_clip, unknown) == "ref_audio_length_unknown"


def test_a_file_longer_than_it_claims_is_read_no_further_than_the_rule(monkeypatch):
    """Decoding stops one frame past the maximum whatever the header said (here the header is believed
    smaller than the rule by lowering the rule's check, as a container whose count is wrong would)."""
    import app.engine.reference_clips as rc

    monkeypatch.setattr(rc, "check_header", lambda *args, **kwargs: None)
    with pytest.raises(InvalidRequest, match="lasts more than 10 s"):
        rc.decode_clip(clip(60.0, 16000, fmt="FLAC"))


@pytest.mark.parametrize("rate", [1, 7999, 192_001, 2_147_483_647])
def test_rates_outside_the_range_are_refused_from_the_header(rate):
    data = wav_header(rate, 1, data_bytes=8000 * 2 * 4) + bytes(8000 * 2 * 4)
    with pytest.raises((InvalidRequest, ReferenceAudioError)) as caught:
        decode_clip(data)
    assert caught.value.code in ("ref_audio_sample_rate", "invalid_reference_audio")


def test_many_channels_are_averaged_block_by_block():
    data = clip(3.5, 16000, channels=12)
    samples, rate = decode_clip(data)
    full, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(samples, full.mean(axis=1, dtype=np.float32))
    assert rate == 16000


def test_the_budget_is_charged_from_headers_before_decoding():
    data = clip(4.0, 48000)
    cost = processing_bytes(read_header(data))
    budget = ReferenceBudget(cost * 2)
    decode_clip(data, budget=budget)
    decode_clip(data, budget=budget)
    assert budget.used == 2 * cost
    assert code_of(decode_clip, data, budget=budget) == "reference_budget_exceeded"
    # the worst clip the rules allow costs a bounded, small amount
    worst = wav_header(192_000, 255, data_bytes=10 * 192_000 * 255 * 2)
    assert processing_bytes(read_header(worst + bytes(255 * 2 * 10))) < 64 * 2**20


# ----------------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    "sr, target", [(44100, 32000), (16000, 32000), (48000, 16000), (22050, 32000), (999, 1000), (3000, 7001)]
)
def test_banded_kernels_compute_what_torchaudios_transform_computes(sr, target):
    audio = torch.randn(1, sr * 2 + 123, generator=torch.Generator().manual_seed(sr))
    expected = torchaudio.transforms.Resample(sr, target)(audio)
    got = resampling.BandedKernel.build(sr, target, torch.device("cpu"))(audio)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)


def test_common_rates_use_torchaudios_own_kernel_bit_exactly():
    """The conformance corpus's rates (16, 32, 48 kHz) and other usual ones keep upstream's arithmetic."""
    audio = torch.randn(1, 44100 * 2)
    for sr, target in [(16000, 32000), (48000, 32000), (44100, 32000), (32000, 16000), (44100, 24000)]:
        assert resampling.dense_kernel_bytes(sr, target) <= resampling.DENSE_KERNEL_BYTES
        expected = torchaudio.transforms.Resample(sr, target)(audio)
        assert torch.equal(resampling.resample_sinc(audio, sr, target), expected)


def test_the_kernel_cache_keeps_to_its_byte_budget():
    """Odd rates make kernels of up to DENSE_KERNEL_BYTES each (dense) or a few MB (banded)."""
    budget = 2 * resampling.DENSE_KERNEL_BYTES
    cache = resampling.KernelCache(max_bytes=budget)
    made = 0
    for sr in range(8001, 8101, 3):
        cache.get(sr, 32000, torch.device("cpu"))
        made += 1
        assert cache.nbytes <= budget
    assert 1 < len(cache) < made


# -------------------------------------------------------------------------- hostile files, bounded


def _hostile_files() -> dict[str, bytes]:
    real = clip(4.0, 16000, fmt="FLAC")
    return {
        "wav-50021hz-4s": clip(4.0, 50_021),  # 12.8 GB of torchaudio kernel before
        "wav-8004hz-4s": clip(4.0, 8004),
        "wav-8012hz-4s": clip(4.0, 8012),
        "wav-191999hz-4s": clip(4.0, 191_999),
        "wav-2147483647hz": wav_header(2_147_483_647, 1, data_bytes=64000) + bytes(64000),
        "flac-5min-8ch": silent_flac(300),
        "flac-claims-2^36-1": flac_claiming(2**36 - 1, real),
        "flac-unknown-length-60s": flac_claiming(0, clip(60.0, 16000, fmt="FLAC")),
        "flac-300s": clip(300.0, 16000, fmt="FLAC"),
        "wav-claims-4GB": wav_header(16000, 1, data_bytes=2**32 - 1) + bytes(64000 * 2),
        "wav-255ch-claims-2GB": wav_header(16000, 255, data_bytes=2**31) + bytes(100_000),
        "wav-600-samples": clip(600 / 32000, 32000),
        "ogg-4s": clip(4.0, 44100, fmt="OGG", subtype="VORBIS"),
    }


# libsndfile believes the file's length over a data size it cannot hold: 4 s
ACCEPTED = {"wav-50021hz-4s", "wav-8004hz-4s", "wav-8012hz-4s", "wav-191999hz-4s", "ogg-4s", "wav-claims-4GB"}


def test_hostile_clips_are_refused_or_accepted_in_bounded_memory(tmp_path):
    """Accepted clips also go through every model input (spectrogram and speaker input at 32 kHz, the
    16 kHz HuBERT input) in the child: a 4 s clip at 50,021 Hz made a 12.8 GB resampling kernel."""
    cases = []
    for name, data in _hostile_files().items():
        (tmp_path / name).write_bytes(data)
        cases.append({"id": name, "file": str(tmp_path / name)})
    results = run_bounded("clips", cases, tmp_path)
    for name, result in results.items():
        assert result["growth_mb"] < MAX_GROWTH_MB, result
        if name in ACCEPTED:
            assert result["outcome"] == "accepted", result
        else:
            assert result["outcome"] in ("InvalidRequest", "ReferenceAudioError", "TooLarge"), result


def _wav(rate: int, channels: int, bits: int, frames: int, truncate: float) -> bytes:
    data_bytes = frames * channels * bits // 8
    present = min(int(data_bytes * truncate), 200_000)
    return wav_header(rate, channels, bits, data_bytes) + bytes(present)


def _flac(rate: int, channels: int, frames: int, truncate: float) -> bytes:
    """A real FLAC's STREAMINFO rewritten: 20-bit rate, 3-bit channels, 36-bit frame count."""
    real = bytearray(clip(3.5, 16000, channels=min(channels, 8), fmt="FLAC"))
    bits_per_sample = int.from_bytes(real[18:26], "big") & (0x1F << 36)  # kept: the frames match it
    packed = (rate << 44) | ((min(channels, 8) - 1) << 41) | bits_per_sample | frames
    real[18:26] = packed.to_bytes(8, "big")
    return bytes(real[: max(42, int(len(real) * truncate))])


headers = st.one_of(
    st.builds(
        _wav,
        rate=st.integers(1, 2**32 - 1) | st.sampled_from([8000, 16000, 44100, 48000, 50021, 192000]),
        channels=st.integers(1, 255),
        bits=st.sampled_from([8, 16, 24, 32]),
        frames=st.integers(0, 2**40),
        truncate=st.floats(0, 1),
    ),
    st.builds(
        _flac,
        rate=st.integers(1, 2**20 - 1),
        channels=st.integers(1, 8),
        frames=st.integers(0, 2**36 - 1),
        truncate=st.floats(0.05, 1),
    ),
)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(headers, min_size=25, max_size=25))
def test_random_headers_and_truncations_are_a_4xx_in_bounded_memory(files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("headers")
    cases = []
    for i, data in enumerate(files):
        (folder / f"{i}.bin").write_bytes(data)
        cases.append({"id": str(i), "file": str(folder / f"{i}.bin")})
    for result in run_bounded("clips", cases, folder).values():
        assert result["outcome"] in ("accepted", "InvalidRequest", "ReferenceAudioError", "TooLarge"), result
        assert result["growth_mb"] < MAX_GROWTH_MB, result


def test_wav_header_helper_round_trips():
    header = wav_header(16000, 2, 16, 64000)
    assert header[:4] == b"RIFF" and struct.unpack("<I", header[24:28])[0] == 16000
    assert read_header(header + bytes(64000)).frames == 16000
