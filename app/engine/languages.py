"""The language codes a request may name, and which of them each symbol table can speak.

Codes are upstream's (``all_zh``, ``en``, ``zh`` = Chinese-English mix, ``auto`` ...), in the order its
web UI lists them; the UI's labels for them (``中文`` ...) belong to the surfaces (``app/schemas``).
"""

from __future__ import annotations

LANGUAGES: tuple[str, ...] = (
    "all_zh", "en", "all_ja", "all_yue", "all_ko", "zh", "ja", "yue", "ko", "auto", "auto_yue",
)  # fmt: skip
# Languages a v1 model can speak (upstream's dict_language_v1).
V1_LANGUAGES: tuple[str, ...] = ("all_zh", "en", "all_ja", "zh", "ja", "auto")


def languages_for(text_version: str) -> tuple[str, ...]:
    """The codes a model with this symbol table (``v1``/``v2``) can speak, in the UI's order."""
    return tuple(c for c in LANGUAGES if c in V1_LANGUAGES) if text_version == "v1" else LANGUAGES
