"""Cantonese text frontend: text -> Jyutping initials/finals, with phones per character.

Follows GPT-SoVITS (upstream ``text/cantonese.py``):

* Normalisation is the Mandarin normaliser's (traditional -> simplified characters, numbers, dates,
  percentages... read out in Chinese characters) followed by Cantonese's own punctuation mapping; then
  everything but CJK characters and the model's punctuation is dropped.
* ToJyutping gives each character its Jyutping syllable ("ngo5"). A syllable is split into an
  "initial" and a "final" with the tone attached to the final; both get a "Y" prefix so they never
  collide with Mandarin phones: "ngo5" -> ["Yng", "Yo5"]. Punctuation is a phone of its own.
* word2ph counts the phones of every character of the normalised text (2 per syllable, 1 per mark).
"""

from __future__ import annotations

import re

from app.engine.text.marks import COMMON_MARK_TO_SYMBOL
from app.engine.text.symbols import PUNCTUATION

_PUNCTUATION = frozenset(PUNCTUATION)
_PUNCTUATION_CLASS = "[" + re.escape("".join(PUNCTUATION)) + "]"

# Cantonese punctuation mapping: quotes and brackets become "'" -- which is then removed by the filter
# below, since "'" is not one of the model's punctuation symbols.
_MARK_TO_SYMBOL = {
    **COMMON_MARK_TO_SYMBOL,
    "...": "…",
    "$": ".",
    "“": "'",
    "”": "'",
    '"': "'",
    "‘": "'",
    "’": "'",
    "（": "'",
    "）": "'",
    "(": "'",
    ")": "'",
    "《": "'",
    "》": "'",
    "【": "'",
    "】": "'",
    "[": "'",
    "]": "'",
    "—": "-",
    "～": "-",
    "~": "-",
    "「": "'",
    "」": "'",
}
_MARK = re.compile("|".join(re.escape(mark) for mark in _MARK_TO_SYMBOL))
# Upstream keeps CJK Unified Ideographs U+4E00-U+9FA5 only (not the few later additions up to U+9FFF).
_NOT_KEPT = re.compile(r"[^\u4e00-\u9fa5" + re.escape("".join(PUNCTUATION)) + r"]+")

_ALL_PUNCTUATION = re.compile(f"^{_PUNCTUATION_CLASS}+$")
# One or more toned syllables; ToJyutping reads a few characters as two ("卅" -> "saa1 aa6").
_JYUTPING = re.compile(r"^([a-z]+[1-6]+[ ]?)+$")

# Onsets tried in this order, the first prefix that matches wins (so "aai" splits as "aa" + "i").
# Besides true initials the list holds vowel-initial rhymes, so a syllable without an initial
# ("aa3", "oi1") is still split in two. "sp", "spl", "spn", "sil" come last and never match a
# syllable that "s" did not match first.
_INITIALS = (
    "aa", "aai", "aak", "aap", "aat", "aau", "ai", "au", "ap", "at", "ak", "a",
    "p", "b", "e", "ts", "t", "dz", "d", "kw", "k", "gw", "g", "f", "h", "l", "m", "ng", "n",
    "s", "y", "w", "c", "z", "j",
    "ong", "on", "ou", "oi", "ok", "o", "uk", "ung",
    "sp", "spl", "spn", "sil",
)  # fmt: skip
_PREFIX = "Y"  # marks Cantonese phones apart from Mandarin ones in the shared table


def normalize(text: str) -> str:
    """Mandarin normalisation, then Cantonese punctuation mapping and filtering."""
    from app.engine.text.zh.normalizer import _clauses, normalize_clause

    # Clause boundaries do not matter here: the punctuation mapping below is the same per clause or on
    # the joined text (a clause never ends in "." so "..." cannot straddle two clauses).
    spoken = "".join(normalize_clause(clause) for clause in _clauses(text))
    return _NOT_KEPT.sub("", _MARK.sub(lambda m: _MARK_TO_SYMBOL[m.group()], spoken))


def g2p(norm_text: str) -> tuple[list[str], list[int]]:
    """Phones and the number of phones of each character of ``norm_text``."""
    phones: list[str] = []
    word2ph: list[int] = []
    for unit in _jyutping_units(norm_text):
        if unit in _PUNCTUATION:
            phones.append(unit)
            word2ph.append(1)
            continue
        pair = _split_syllable(unit)
        if pair is None:
            # Upstream silently emits nothing here; the cleaner's length check then fails.
            continue
        phones.extend(pair)
        word2ph.append(2)
    return phones, word2ph


def _jyutping_units(text: str) -> list[str]:
    """Per character: its Jyutping (one or more syllables) or the punctuation mark itself."""
    import ToJyutping  # its dictionary loads at import; Python's import lock makes that once-only

    units: list[str] = []
    for word, jyutping in ToJyutping.get_jyutping_list(text):
        if _ALL_PUNCTUATION.match(word):
            units.extend(word)
        elif jyutping is None or not _JYUTPING.match(jyutping):
            raise ValueError(f"no Cantonese reading for {word!r}")
        else:
            units.append(jyutping)
    return units


def _split_syllable(jyutping: str) -> tuple[str, str] | None:
    """ "gwong2" -> ("Ygw", "Yong2"). The tone is the last character.

    Upstream quirks kept: a syllable that is only an initial keeps that initial's last letter as its
    final ("m4" -> "Ym", "Ym4"; "ng6" -> "Yng", "Yg6"), and a two-syllable reading is split as if it
    were one syllable ("saa1 aa6" -> "Ys", "Yaa1 aa6", which the symbol table does not know).
    """
    tone, toneless = jyutping[-1], jyutping[:-1]
    for initial in _INITIALS:
        if toneless.startswith(initial):
            final = toneless[len(initial) :] or initial[-1]
            return _PREFIX + initial, _PREFIX + final + tone
    return None
