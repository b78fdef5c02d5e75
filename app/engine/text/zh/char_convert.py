"""Character-level clean-up before any rule runs: traditional -> simplified, full-width -> half-width.

The traditional -> simplified table is PaddleSpeech's one-character-to-one-character table (GPT-SoVITS
uses the very same table). It is not phrase-aware like OpenCC, and it has its own choices
(e.g. 於 stays 於, 餘 becomes 馀), which change what the text reads as, so no other converter gives
identical results. We read it from the `paddlespeech` wheel (pure Python, install it with --no-deps:
its dependencies are not needed) without importing any of paddlespeech's code: the module is parsed,
not executed. Without the package the text is left as written and a warning is logged once.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import string
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_TABLE_MODULE = ("t2s", "frontend", "zh_normalization", "char_convert.py")
_SIMPLIFIED_NAME = "simplified_charcters"  # sic, the variable's name in that module
_TRADITIONAL_NAME = "traditional_characters"

_FULL_TO_HALF_WIDTH = str.maketrans(
    {chr(ord(c) + 0xFEE0): c for c in string.ascii_letters + string.digits} | {"\u3000": " "}
)

_lock = threading.Lock()
_table: dict[int, str] | None = None


def _table_source() -> Path | None:
    spec = importlib.util.find_spec("paddlespeech")  # locates the package, runs none of its code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_TABLE_MODULE)
    return path if path.is_file() else None


def _load_table() -> dict[int, str]:
    source = _table_source()
    if source is None:
        log.warning("paddlespeech is not installed: traditional Chinese characters are not simplified")
        return {}
    strings: dict[str, str] = {}
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            strings[node.targets[0].id] = node.value.value
    simplified, traditional = strings[_SIMPLIFIED_NAME], strings[_TRADITIONAL_NAME]
    if len(simplified) != len(traditional):
        raise ValueError(f"{source}: the two character lists differ in length")
    # The lists are parallel; a traditional character listed twice keeps its LAST partner.
    table = {ord(trad): simp for trad, simp in zip(traditional, simplified, strict=True)}
    return {code: simp for code, simp in table.items() if chr(code) != simp}


def traditional_table() -> dict[int, str]:
    global _table
    if _table is None:
        with _lock:
            if _table is None:
                _table = _load_table()
    return _table


def has_traditional_table() -> bool:
    return bool(traditional_table())


def to_simplified(text: str) -> str:
    return text.translate(traditional_table())


def to_half_width(text: str) -> str:
    """Full-width Latin letters, digits and the ideographic space become ASCII; punctuation stays."""
    return text.translate(_FULL_TO_HALF_WIDTH)
