"""Checkpoint key names: one table per model, read in both directions.

Upstream's modules nest wrappers that ours flatten (a one-layer ``Sequential``, a flow list whose odd
entries are weightless flips, ...), so some of its state-dict keys differ from ours in a prefix. A
:class:`Rename` pairs upstream's prefix with ours; ``{i}`` in a prefix stands for a layer index. A
:class:`KeyMap` is a model's ordered table of renames (the first that matches wins, in either
direction; keys no rename matches keep their name) plus the layers upstream wraps in weight norm,
whose files store ``weight_g``/``weight_v`` instead of ``weight``.

The model modules own their tables (``sovits.SOVITS_KEYS``, ``sovits_v3.V3_KEYS``): loading reads
them upstream -> ours, and anything that writes upstream's format (the demo weights) reads them
ours -> upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_INDEX = "{i}"


def _template_pattern(template: str, *, whole: bool) -> re.Pattern[str]:
    """``template`` as a regex anchored at the start; each ``{i}`` captures a decimal index."""
    body = r"(\d+)".join(re.escape(part) for part in template.split(_INDEX))
    return re.compile(f"^{body}{'$' if whole else ''}")


def _fill(template: str, indices: list[int]) -> str:
    parts = template.split(_INDEX)
    return parts[0] + "".join(f"{index}{part}" for index, part in zip(indices, parts[1:], strict=True))


@dataclass(frozen=True)
class Rename:
    """Upstream's key prefix and ours for one flattened module.

    Both prefixes hold the same number of ``{i}`` placeholders; upstream's index is ``upstream_stride``
    times ours (upstream's flow list interleaves weightless flips, so coupling ``i`` is its entry ``2i``).
    An exact key (no trailing dot) is a prefix of itself.
    """

    upstream: str
    ours: str
    upstream_stride: int = 1
    _upstream_rx: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _ours_rx: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.upstream.count(_INDEX) != self.ours.count(_INDEX):
            raise ValueError(f"{self.upstream!r} and {self.ours!r} differ in their {_INDEX} placeholders")
        object.__setattr__(self, "_upstream_rx", _template_pattern(self.upstream, whole=False))
        object.__setattr__(self, "_ours_rx", _template_pattern(self.ours, whole=False))

    def to_ours(self, key: str) -> str | None:
        """``key`` with upstream's prefix replaced by ours, or None when the prefix does not match
        (also when an index is no multiple of the stride: such a key has no counterpart of ours)."""
        match = self._upstream_rx.match(key)
        if match is None:
            return None
        indices = [int(g) for g in match.groups()]
        if any(index % self.upstream_stride for index in indices):
            return None
        ours = _fill(self.ours, [index // self.upstream_stride for index in indices])
        return ours + key[match.end() :]

    def to_upstream(self, key: str) -> str | None:
        """``key`` with our prefix replaced by upstream's, or None when the prefix does not match."""
        match = self._ours_rx.match(key)
        if match is None:
            return None
        upstream = _fill(self.upstream, [int(g) * self.upstream_stride for g in match.groups()])
        return upstream + key[match.end() :]


@dataclass(frozen=True)
class KeyMap:
    """A model's renames (in order) and its weight-normed layers (our names, ``{i}`` for any index)."""

    renames: tuple[Rename, ...]
    weight_normed: tuple[str, ...] = ()
    _weight_normed_rx: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = tuple(_template_pattern(layer + ".weight", whole=True) for layer in self.weight_normed)
        object.__setattr__(self, "_weight_normed_rx", patterns)

    def __add__(self, other: KeyMap) -> KeyMap:
        """Both tables, this one's renames first."""
        return KeyMap(self.renames + other.renames, self.weight_normed + other.weight_normed)

    def to_ours(self, key: str) -> str:
        for rename in self.renames:
            if (ours := rename.to_ours(key)) is not None:
                return ours
        return key

    def to_upstream(self, key: str) -> str:
        for rename in self.renames:
            if (upstream := rename.to_upstream(key)) is not None:
                return upstream
        return key

    def is_weight_normed(self, our_key: str) -> bool:
        """Whether upstream stores our ``<layer>.weight`` as ``weight_g`` + ``weight_v``."""
        return any(rx.match(our_key) for rx in self._weight_normed_rx)
