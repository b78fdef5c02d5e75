"""Normalised Chinese text -> phones and the number of phones per character (word2ph).

Per clause (the text is cut after each punctuation mark): jieba words with POS tags, re-grouped
for tone sandhi, read with pypinyin (initials and tone-3 finals, neutral tone = 5), sandhi applied,
erhua applied (v2 only), then each syllable becomes two phones of the Opencpop convention
(initial, final+tone) and each punctuation mark one phone. For v2 the readings come from the g2pW
model instead of pypinyin when it is enabled (g2pw.py); the default is pypinyin.
"""

from __future__ import annotations

import re

from pypinyin import Style, lazy_pinyin

from .erhua import apply_erhua
from .g2pw import active_g2pw
from .g2pw import clause_syllables as g2pw_clause_syllables
from .normalizer import PUNCTUATION
from .segmenter import cut_with_pos
from .syllables import UnknownSyllableError, syllable_to_phones
from .tone_sandhi import apply_sandhi, merge_words, tone3_finals

VERSIONS = ("v1", "v2")

_AFTER_PUNCTUATION = re.compile("(?<=[" + re.escape("".join(PUNCTUATION)) + r"])\s*")
_LATIN = re.compile("[a-zA-Z]+")

# pypinyin spells finals without the y/w letters ("i", "uan", "iou"); these rebuild the written
# syllable that the phone table is keyed by.
_ABBREVIATED_AFTER_INITIAL = {"uei": "ui", "iou": "iu", "uen": "un"}
_WHOLE_ZERO_INITIAL = {"ing": "ying", "i": "yi", "in": "yin", "u": "wu"}
_ZERO_INITIAL_GLIDE = {"v": "yu", "e": "e", "i": "y", "u": "w"}


def written_syllable(initial: str, final: str) -> str:
    """pypinyin (initial, toneless final) -> the syllable as written in pinyin: ("", "uan") -> "wan"."""
    if initial:
        return initial + _ABBREVIATED_AFTER_INITIAL.get(final, final)
    if final in _WHOLE_ZERO_INITIAL:
        return _WHOLE_ZERO_INITIAL[final]
    if final[:1] in _ZERO_INITIAL_GLIDE:
        return _ZERO_INITIAL_GLIDE[final[0]] + final[1:]
    return final


def _syllable_phones(initial: str, final_with_tone: str) -> list[str]:
    if initial == final_with_tone:
        # pypinyin passes non-hanzi through unchanged; after normalisation that is only punctuation
        if initial not in PUNCTUATION:
            raise UnknownSyllableError(f"{initial!r} is neither hanzi nor a known punctuation mark")
        return [initial]
    final, tone = final_with_tone[:-1], final_with_tone[-1:]
    if tone not in ("1", "2", "3", "4", "5"):
        raise UnknownSyllableError(f"pypinyin gave no toned final for {initial + final_with_tone!r}")
    phone_initial, phone_final = syllable_to_phones(written_syllable(initial, final))
    return [phone_initial, phone_final + tone]


def _clause_syllables(clause: str, version: str) -> tuple[list[str], list[str]]:
    initials: list[str] = []
    finals: list[str] = []
    for word, pos in merge_words(cut_with_pos(clause)):
        if pos == "eng":
            continue
        word_initials = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)
        word_finals = tone3_finals(word)
        if "" in word_finals:
            # e.g. 噷 "hm": no vowel, hence no tone and no phones. Upstream fails later on the same
            # input (somewhere in sandhi or the phone lookup); we refuse it here, uniformly.
            raise UnknownSyllableError(f"pypinyin reads no final in {word!r}, which has no phones")
        word_finals = apply_sandhi(word, pos, word_finals)
        if version == "v2":
            word_finals = apply_erhua(word, pos, word_finals)
        initials += word_initials
        finals += word_finals
    return initials, finals


def g2p(norm_text: str, version: str = "v2") -> tuple[list[str], list[int]]:
    """Phones and phones-per-character for text that ``normalize`` produced.

    v1 and v2 differ only in erhua (v2 gives a rhotic 儿 the previous syllable's tone).
    Raises UnknownSyllableError (a ValueError) for a character that has no phones in the inventory.
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown Chinese frontend version {version!r}; expected one of {VERSIONS}")
    phones: list[str] = []
    word2ph: list[int] = []
    clauses = [_LATIN.sub("", c) for c in _AFTER_PUNCTUATION.split(norm_text) if c.strip()]
    # Optional g2pW (v2 only, see g2pw.py): reads all clauses in one model batch, as upstream does.
    g2pw_model = active_g2pw() if version == "v2" else None
    if g2pw_model is not None:
        clause_syllables = iter(g2pw_clause_syllables(g2pw_model, clauses))
    else:
        clause_syllables = (_clause_syllables(clause, version) for clause in clauses)
    for initials, finals in clause_syllables:
        for initial, final in zip(initials, finals, strict=False):
            syllable = _syllable_phones(initial, final)
            phones += syllable
            word2ph.append(len(syllable))
    return phones, word2ph
