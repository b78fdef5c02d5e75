"""Punctuation every language module maps onto the model's punctuation symbols.

Upstream repeats this core table in each language module and extends it per language; here the core
lives once and each module adds its own entries after it (order matters where a module builds an
alternation regex from its table: multi-character marks such as "..." come after the core)."""

from __future__ import annotations

COMMON_MARK_TO_SYMBOL: dict[str, str] = {
    "：": ",",
    "；": ",",
    "，": ",",
    "。": ".",
    "！": "!",
    "？": "?",
    "\n": ".",
    "·": ",",
    "、": ",",
}
