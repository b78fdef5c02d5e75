"""Windowed-sinc resampling as upstream does it (``torchaudio.transforms.Resample``), in bounded memory.

torchaudio builds one filter per output phase over a whole input period: ``new × (orig + 2·width)``
floats for the rates reduced by their gcd. For the rates people record at that is small (44.1 → 32 kHz:
320 × 461), but a clip at 50,021 Hz makes it 32,000 × 50,041 floats (6.4 GB), and the rate is the
client's choice. Each of those filters is zero (exactly the clamped window edge, ~1e-22) outside a
band of ``2·width + 2`` taps around its phase, so the same numbers come from the band alone:

- :func:`resample_sinc` uses torchaudio's transform itself (bit-exact with upstream) when its kernel
  fits :data:`DENSE_KERNEL_BYTES`, and the banded form of the same kernel otherwise;
- kernels of both forms live in one least-recently-used cache with a byte budget
  (:data:`KERNEL_CACHE_BYTES`), so a stream of odd rates cannot pile them up.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass

import torch
import torchaudio

# torchaudio.transforms.Resample's defaults (upstream constructs it with none given).
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99

DENSE_KERNEL_BYTES = 16 * 1024 * 1024  # larger torchaudio kernels are computed as bands instead
KERNEL_CACHE_BYTES = 64 * 1024 * 1024  # every cached kernel together
BANDED_WORK_BYTES = 16 * 1024 * 1024  # the gathered input of one banded step, at most


def reduced(sr: int, target_sr: int) -> tuple[int, int]:
    g = math.gcd(sr, target_sr)
    return sr // g, target_sr // g


def filter_width(orig: int, new: int) -> int:
    """Half the filter's length in input samples (torchaudio's ``width``), for reduced rates."""
    return math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))


def dense_kernel_bytes(sr: int, target_sr: int) -> int:
    """What torchaudio's kernel for this pair of rates takes, float32."""
    orig, new = reduced(sr, target_sr)
    return new * (orig + 2 * filter_width(orig, new)) * 4


@dataclass(frozen=True)
class BandedKernel:
    """torchaudio's kernel restricted to the taps that are not zero: output phase ``j`` of each input
    period reads ``taps`` consecutive padded-input samples from ``start[j]``, weighted by ``weights[j]``."""

    orig: int  # input samples per period (reduced)
    new: int  # output samples per period (reduced)
    width: int
    start: torch.Tensor  # [new] int64
    weights: torch.Tensor  # [new, taps] float32

    @property
    def taps(self) -> int:
        return self.weights.shape[1]

    @property
    def nbytes(self) -> int:
        return self.start.numel() * 8 + self.weights.numel() * 4

    @classmethod
    def build(cls, sr: int, target_sr: int, device: torch.device) -> BandedKernel:
        orig, new = reduced(sr, target_sr)
        width = filter_width(orig, new)
        base = min(orig, new) * ROLLOFF
        phases = torch.arange(new, dtype=torch.int64)
        # Filter j is non-zero where |k - width - j·orig/new| < width (k: index into the padded input).
        start = (phases * orig) // new
        k = start[:, None] + torch.arange(2 * width + 2, dtype=torch.int64)
        # The same arithmetic as torchaudio's kernel: the phase term in float32, the rest in float64.
        t = (-phases.to(torch.float32) / new).to(torch.float64)[:, None] + (k - width).to(torch.float64) / orig
        t = (t * base).clamp_(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
        window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
        t = t * math.pi
        weights = torch.where(t == 0, torch.ones_like(t), t.sin() / t) * (window * (base / orig))
        # torchaudio's filter has orig + 2·width taps; the band's last one can fall past it.
        weights[k >= orig + 2 * width] = 0.0
        return cls(orig, new, width, start.to(device), weights.to(device=device, dtype=torch.float32))

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio`` ``[batch, n]`` → ``[batch, ceil(n · new / orig)]``, as torchaudio's transform."""
        batch, length = audio.shape
        periods = -(-length // self.orig) + 1  # torchaudio's conv covers one period more, then trims
        # torchaudio pads (width, width + orig); a band may read one sample further.
        need = (periods - 1) * self.orig + self.orig + 2 * self.width + 2
        padded = torch.nn.functional.pad(audio, (self.width, need - length - self.width))
        index = self.start[:, None] + torch.arange(self.taps, device=audio.device)  # [new, taps]
        per_period = self.new * self.taps * audio.element_size()
        step = max(1, BANDED_WORK_BYTES // max(1, per_period * batch))
        out = []
        for first in range(0, periods, step):
            count = min(step, periods - first)
            # [batch, count, orig + 2·width + 2]: overlapping views of the input periods (no copy).
            frames = padded[:, first * self.orig :].unfold(1, self.orig + 2 * self.width + 2, self.orig)[:, :count]
            out.append((frames[:, :, index] * self.weights).sum(-1).reshape(batch, -1))
        target = math.ceil(self.new * length / self.orig)
        return torch.cat(out, 1)[:, :target]


Kernel = torchaudio.transforms.Resample | BandedKernel


class KernelCache:
    """Least-recently-used kernels, bounded by their bytes together (thread-safe)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple[int, int, str], tuple[Kernel, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def get(self, sr: int, target_sr: int, device: torch.device) -> Kernel:
        key = (sr, target_sr, str(device))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        kernel, size = _make_kernel(sr, target_sr, device)
        with self._lock:
            self._items[key] = (kernel, size)
            self._items.move_to_end(key)
            while len(self._items) > 1 and sum(s for _, s in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return kernel

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _make_kernel(sr: int, target_sr: int, device: torch.device) -> tuple[Kernel, int]:
    if dense_kernel_bytes(sr, target_sr) <= DENSE_KERNEL_BYTES:
        dense = torchaudio.transforms.Resample(sr, target_sr).to(device)
        return dense, dense.kernel.numel() * dense.kernel.element_size()
    banded = BandedKernel.build(sr, target_sr, device)
    return banded, banded.nbytes


kernels = KernelCache(KERNEL_CACHE_BYTES)


def resample_sinc(audio: torch.Tensor, sr: int, target_sr: int) -> torch.Tensor:
    """``audio`` ``[batch, n]`` resampled from ``sr`` to ``target_sr`` as
    ``torchaudio.transforms.Resample(sr, target_sr)`` does (upstream's resampler), in memory that
    does not grow with the rates' ratio."""
    if sr == target_sr:
        return audio
    return kernels.get(int(sr), int(target_sr), audio.device)(audio)
