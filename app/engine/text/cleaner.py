"""Text of one language -> phones (upstream's ``clean_text``).

Each language module provides ``normalize(text) -> str`` and ``g2p(norm_text)``; this module picks the
module for a language and model version, applies the few rules that live outside the modules, and
checks the result against the version's symbol table:

* v1 models know Chinese, Japanese and English only; v2 and later add Korean and Cantonese. A language
  the version does not know is read as English " " (upstream does this rather than failing), which
  yields a single pause.
* In Chinese text, "￥" and "^" are special pause marks: the text is read with a comma in their place,
  and every comma phone of the result becomes "SP2" ("￥") or "SP3" ("^").
* English with fewer than four phones gets a leading "," (very short English is otherwise unstable).
* A phone outside the symbol table becomes "UNK".

The language modules are imported on first use so the frontend loads without optional ones.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

from app.engine.text.symbols import symbol_to_id

# Language code -> module (under app.engine.text) and the versions that support it.
_MODULES: dict[str, str] = {
    "zh": "app.engine.text.zh",
    "ja": "app.engine.text.ja",
    "en": "app.engine.text.en",
    "ko": "app.engine.text.ko",
    "yue": "app.engine.text.yue",
}
V1_LANGUAGES = frozenset({"zh", "ja", "en"})
V2_LANGUAGES = frozenset(_MODULES)

# Chinese special marks, checked in this order; only the first one present is honoured.
ZH_SPECIAL_PAUSES: tuple[tuple[str, str], ...] = (("￥", "SP2"), ("^", "SP3"))

# Languages whose g2p also returns word2ph (phones per character of the normalised text).
_WITH_WORD2PH = frozenset({"zh", "yue"})

MIN_ENGLISH_PHONES = 4


class CleanedText(NamedTuple):
    """Unpacks like upstream's result: ``phones, word2ph, norm_text = clean_text(...)``."""

    phones: list[str]
    word2ph: list[int] | None  # Chinese and Cantonese only
    norm_text: str


def supported_languages(version: str) -> frozenset[str]:
    return V1_LANGUAGES if version == "v1" else V2_LANGUAGES


def language_module(language: str) -> ModuleType:
    """The frontend module of a language code ("zh", "ja", "en", "ko", "yue")."""
    return importlib.import_module(_MODULES[language])


def _g2p(
    module: ModuleType, language: str, norm_text: str, version: str
) -> tuple[list[str], list[int] | None]:
    if language == "zh":
        phones, word2ph = module.g2p(norm_text, version="v1" if version == "v1" else "v2")
    elif language == "yue":
        phones, word2ph = module.g2p(norm_text)
    else:
        phones, word2ph = module.g2p(norm_text), None
    phones = list(phones)
    if word2ph is not None:
        word2ph = list(word2ph)
        # Upstream asserts these; a mismatch would misalign the BERT features with the phones.
        if sum(word2ph) != len(phones) or len(word2ph) != len(norm_text):
            raise RuntimeError(
                f"{language} g2p returned inconsistent word2ph for {norm_text!r}: "
                f"{len(phones)} phones, word2ph {word2ph}"
            )
    return phones, word2ph


def _normalize(module: ModuleType, text: str) -> str:
    # Upstream's Korean module has no normalisation step; a module without one reads the text as is.
    normalize = getattr(module, "normalize", None)
    return normalize(text) if normalize is not None else text


def _clean_with_special_pause(text: str, mark: str, pause: str, version: str) -> CleanedText:
    module = language_module("zh")
    norm_text = _normalize(module, text.replace(mark, ","))
    phones, word2ph = _g2p(module, "zh", norm_text, version)
    # Upstream does not map unknown phones to UNK on this path (it asserts they are known); the
    # Chinese g2p only produces known phones, so the "UNK" mapping below would be a no-op anyway.
    table = symbol_to_id(version)
    phones = [pause if phone == "," else phone if phone in table else "UNK" for phone in phones]
    return CleanedText(phones, word2ph, norm_text)


def clean_text(text: str, language: str, version: str = "v2") -> CleanedText:
    """Normalise ``text`` in ``language`` and convert it to phones of the ``version`` symbol table."""
    if language not in supported_languages(version):
        language, text = "en", " "
    if language == "zh":
        for mark, pause in ZH_SPECIAL_PAUSES:
            if mark in text:
                return _clean_with_special_pause(text, mark, pause, version)

    module = language_module(language)
    norm_text = _normalize(module, text)
    phones, word2ph = _g2p(module, language, norm_text, version)
    if language == "en" and len(phones) < MIN_ENGLISH_PHONES:
        phones = [",", *phones]
    table = symbol_to_id(version)
    phones = [phone if phone in table else "UNK" for phone in phones]
    return CleanedText(phones, word2ph, norm_text)
