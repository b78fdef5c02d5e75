"""Phone symbol tables of GPT-SoVITS and the phone -> id mapping.

A phone id is an index into one of two tables:

* v1 (322 symbols): Mandarin initials and toned finals, Japanese phones, English ARPAbet, punctuation
  and the special pause/unknown marks, all sorted by Python's string order.
* v2 (732 symbols, also used by v2Pro, v2ProPlus, v3 and v4): the v1 table, then the Japanese pitch
  marks "[" and "]", then the Korean jamo, then the Cantonese (Jyutping) phones. These groups were
  appended after the sorted block so that v1's ids kept their values; each group is sorted inside.

The tables are built from the phone inventories below; the order of construction is what fixes the ids,
so it must not change.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

Version = Literal["v1", "v2"]

PAD = "_"
# Punctuation that survives normalisation as a phone of its own.
PUNCTUATION: tuple[str, ...] = ("!", "?", "…", ",", ".", "-")
# SP/SP2/SP3 are pauses (SP2 and SP3 come from "￥" and "^" in Chinese text); UNK is any phone the
# table does not know.
SPECIAL: tuple[str, ...] = ("SP", "SP2", "SP3", "UNK")

# --- Mandarin -----------------------------------------------------------------------------------
# Pinyin initials; "AA", "EE", "OO" stand for the glottal onset of syllables with no initial.
ZH_INITIALS: tuple[str, ...] = (
    "AA", "EE", "OO",
    "b", "c", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "n",
    "p", "q", "r", "s", "sh", "t", "w", "x", "y", "z", "zh",
)  # fmt: skip
# Finals without tone; every one of them exists with each of the five tones (5 = neutral).
ZH_FINALS: tuple[str, ...] = (
    "E", "En", "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er",
    "i", "i0", "ia", "ian", "iang", "iao", "ie", "in", "ing", "iong", "ir", "iu",
    "o", "ong", "ou", "u", "ua", "uai", "uan", "uang", "ui", "un", "uo",
    "v", "van", "ve", "vn",
)  # fmt: skip
ZH_TONES = "12345"

# --- Japanese (pyopenjtalk phones) ----------------------------------------------------------------
JA_PHONES: tuple[str, ...] = (
    "I", "N", "U", "a", "b", "by", "ch", "cl", "d", "dy", "e", "f", "g", "gy", "h", "hy",
    "i", "j", "k", "ky", "m", "my", "n", "ny", "o", "p", "py", "r", "ry",
    "s", "sh", "t", "ts", "u", "v", "w", "y", "z",
)  # fmt: skip
# v2 only: rising and falling pitch marks.
JA_PITCH_MARKS: tuple[str, ...] = ("[", "]")

# --- English (CMU ARPAbet) ------------------------------------------------------------------------
# Vowels carry a stress digit 0/1/2; two bare vowels ("ER", "IH") also occur in the inventory.
EN_VOWELS: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)  # fmt: skip
EN_BARE_VOWELS: tuple[str, ...] = ("ER", "IH")
EN_CONSONANTS: tuple[str, ...] = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG",
    "P", "R", "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip

# --- Korean (v2 only) -----------------------------------------------------------------------------
# Compatibility jamo plus two markers: "空" (space) and "停" (pause).
KO_PHONES = "ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎㄲㄸㅃㅆㅉㅏㅓㅗㅜㅡㅣㅐㅔ空停"

# --- Cantonese (v2 only) --------------------------------------------------------------------------
# Jyutping units prefixed with "Y" so they cannot collide with Mandarin phones. Finals normally carry a
# tone digit 1-6; some units also occur without a tone, and the plain initials only occur without one.
YUE_PREFIX = "Y"
YUE_TONES = "123456"
YUE_TONED_ONLY: tuple[str, ...] = (
    "aai", "aak", "aam", "aan", "aang", "aap", "aat", "aau",
    "am", "an", "ang", "ap", "at",
    "ei", "ek", "eng", "eoi", "eon", "eot",
    "i", "ik", "im", "in", "ing", "ip", "it", "iu",
    "oe", "oek", "oeng", "ong", "ot",
    "u", "ui", "un", "ung", "ut",
    "yu", "yun", "yut",
)  # fmt: skip
YUE_TONED_AND_BARE: tuple[str, ...] = (
    "a", "aa", "ai", "ak", "au", "e", "g", "k", "m", "n", "o", "oi", "ok", "on", "ou", "p", "t", "uk",
)  # fmt: skip
YUE_BARE_ONLY: tuple[str, ...] = (
    "b", "c", "d", "f", "gw", "h", "j", "kw", "l", "ng", "s", "w", "z",
)  # fmt: skip


def _english_phones() -> set[str]:
    stressed = {vowel + stress for vowel in EN_VOWELS for stress in "012"}
    return stressed | set(EN_BARE_VOWELS) | set(EN_CONSONANTS)


def _cantonese_phones() -> set[str]:
    units = {unit + tone for unit in YUE_TONED_ONLY + YUE_TONED_AND_BARE for tone in YUE_TONES}
    units |= set(YUE_TONED_AND_BARE) | set(YUE_BARE_ONLY)
    return {YUE_PREFIX + unit for unit in units}


def _build_v1() -> tuple[str, ...]:
    zh_finals = {final + tone for final in ZH_FINALS for tone in ZH_TONES}
    # Several inventories share spellings (e.g. "a", "ch", "sh"); the set keeps one of each.
    inventory = {PAD, *ZH_INITIALS, *zh_finals, *JA_PHONES, *PUNCTUATION, *SPECIAL} | _english_phones()
    return tuple(sorted(inventory))


def _build_v2() -> tuple[str, ...]:
    return _build_v1() + JA_PITCH_MARKS + tuple(sorted(KO_PHONES)) + tuple(sorted(_cantonese_phones()))


SYMBOLS_V1: tuple[str, ...] = _build_v1()
SYMBOLS_V2: tuple[str, ...] = _build_v2()


# Upstream tells v1 checkpoints apart by these table sizes (text-embedding rows).
V1_SYMBOL_COUNT = len(SYMBOLS_V1)  # 322
V2_SYMBOL_COUNT = len(SYMBOLS_V2)  # 732


def text_version(model_version: str) -> Version:
    """The symbol table (and language modules) a model version reads: "v1" for v1 models, "v2" for
    every later one (v2, v2Pro, v2ProPlus, v3, v4). The one place this decision is made."""
    return "v1" if model_version == "v1" else "v2"


def text_version_of_table(n_symbols: int) -> Version:
    """The symbol table a text embedding of ``n_symbols`` rows was trained on (upstream's rule)."""
    return "v1" if n_symbols == V1_SYMBOL_COUNT else "v2"


def text_version_of_gpt(phone_vocab_size: int) -> Version:
    """The table a GPT can read, from its phone embedding size. v1 GPTs have 512 rows (room for the
    322 v1 symbols), v2 and later 732, so only a table that fits every id is possible."""
    return "v2" if phone_vocab_size >= V2_SYMBOL_COUNT else "v1"


def symbols_for(version: str) -> tuple[str, ...]:
    """The symbol table of a model version."""
    return SYMBOLS_V1 if text_version(version) == "v1" else SYMBOLS_V2


@cache
def _ids(version: Version) -> dict[str, int]:
    return {symbol: index for index, symbol in enumerate(symbols_for(version))}


def symbol_to_id(version: str) -> dict[str, int]:
    """Mapping phone -> id for a model version (shared, do not mutate)."""
    return _ids(text_version(version))


def phones_to_ids(phones: list[str], version: str) -> list[int]:
    """Phone ids of cleaned phones (upstream's cleaned_text_to_sequence).

    Raises KeyError for a phone outside the table; the cleaner maps those to "UNK" first, so this only
    happens on a programming error.
    """
    table = symbol_to_id(version)
    return [table[phone] for phone in phones]
