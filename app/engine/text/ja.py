"""Japanese text frontend: text -> phones with pitch-accent marks.

Follows GPT-SoVITS (upstream ``text/japanese.py``, the prosody path its synthesis uses):

* Runs of "Japanese" characters (kana, kanji, ASCII/full-width letters and digits) go through
  OpenJTalk (the ``pyopenjtalk`` module of the ``pyopenjtalk-plus`` package, which bundles its
  dictionary, so nothing is downloaded). The full-context labels become phones plus prosody marks:
  ``[`` pitch rises, ``]`` pitch falls, ``#`` accent-phrase border, ``_`` pause.
* Every other character (punctuation, symbols, spaces) is passed through on its own, with full-width
  punctuation mapped to the ASCII symbol the model knows. Spaces are dropped.

No user dictionary is loaded (upstream loads one only when ``ja_userdic/userdict.csv`` exists).
Phones that are not in the model's symbol table (``#``, ``「`` ...) are left as they are: turning them
into ``UNK`` is the cleaner's job.
"""

from __future__ import annotations

import re
from functools import cache
from types import ModuleType

from app.engine.text.marks import COMMON_MARK_TO_SYMBOL
from app.engine.text.symbols import PUNCTUATION

# Runs of the model's punctuation symbols. Only those: full-width "！？" are *not* folded.
_PUNCTUATION_CLASS = "[" + re.escape("".join(PUNCTUATION)) + "]"
_REPEATED_PUNCTUATION = re.compile(f"({_PUNCTUATION_CLASS}){_PUNCTUATION_CLASS}+")

# Characters OpenJTalk is asked to read. Everything else is a "mark" passed through one by one.
# \d is Unicode-aware, so it also covers full-width digits (the explicit U+FF11-FF19 range is upstream's).
_JAPANESE_CLASS = (
    r"A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d"
)
# One token = a run of Japanese characters, or a single other character (a "mark").
_TOKEN = re.compile(f"(?P<japanese>[{_JAPANESE_CLASS}]+)|(?P<mark>[^{_JAPANESE_CLASS}])")

# Marks mapped to the symbol the model was trained with.
_MARK_TO_SYMBOL = {
    **COMMON_MARK_TO_SYMBOL,
}

# Vowels, moraic nasal and geminate closure: the phones after which an accent-phrase border is marked.
_MORA_FINAL_PHONES = frozenset(["a", "e", "i", "o", "u", "A", "E", "I", "O", "U", "N", "cl"])

_DEVOICED_VOWELS = frozenset("AEIOU")

# Pieces of an OpenJTalk full-context label (HTS format "p1^p2-p3+p4=p5/A:a1+a2+a3/.../F:f1_...").
_CURRENT_PHONE = re.compile(r"-(.+?)\+")
_ACCENT_DISTANCE = re.compile(r"/A:([0-9\-]+)\+")  # a1: mora position relative to the accent nucleus
_MORA_FORWARD = re.compile(r"\+(\d+)\+")  # a2: mora position in the accent phrase, from the front
_MORA_BACKWARD = re.compile(r"\+(\d+)/")  # a3: mora position in the accent phrase, from the back
_PHRASE_MORAE = re.compile(r"/F:(\d+)_")  # f1: number of morae in the accent phrase
_IS_QUESTION = re.compile(r"!(\d+)_")  # e3: 1 when the utterance ends as a question
_MISSING = -50  # value used when a feature is "xx" (not defined for this label)


def normalize(text: str) -> str:
    """Upstream's Japanese normalisation only folds runs of punctuation (e.g. "!!!" -> "!").

    Avoids the model echoing repeated punctuation from the reference audio.
    """
    return _REPEATED_PUNCTUATION.sub(r"\1", text)


def g2p(norm_text: str) -> list[str]:
    """Phones (with prosody marks) for normalised Japanese text."""
    # "％" is read out; only the full-width percent sign (upstream's single rule). Then lower-case
    # Latin letters, which OpenJTalk reads better.
    text = norm_text.replace("％", "パーセント").lower()
    phones: list[str] = []
    for match in _TOKEN.finditer(text):
        mark = match.group("mark")
        if mark is None:
            # Drop the utterance start ("^") and end ("$" or "?") symbols: sentence punctuation
            # comes from the marks instead.
            phones.extend(_prosody_phones(match.group("japanese"))[1:-1])
        elif mark != " ":  # a plain space would otherwise become an unknown phone
            phones.append(_MARK_TO_SYMBOL.get(mark, mark))
    return phones


@cache
def _openjtalk() -> ModuleType:
    # Imported on first use: loading the dictionary is slow. pyopenjtalk itself creates its global
    # OpenJTalk instance once and guards it with a lock, so concurrent calls are safe.
    import pyopenjtalk

    return pyopenjtalk


def _feature(pattern: re.Pattern[str], label: str) -> int:
    match = pattern.search(label)
    return int(match.group(1)) if match else _MISSING


def _prosody_phones(text: str) -> list[str]:
    """Phones with accent marks from OpenJTalk's labels (the ESPnet/r9y9 "prosody" scheme).

    Returns the sequence including the leading "^" and the trailing "$"/"?".
    """
    openjtalk = _openjtalk()
    labels = openjtalk.make_label(openjtalk.run_frontend(text))
    phones: list[str] = []
    for index, label in enumerate(labels):
        phone = _CURRENT_PHONE.search(label).group(1)
        if phone in _DEVOICED_VOWELS:  # devoiced vowels are treated as ordinary vowels
            phone = phone.lower()

        if phone == "sil":
            if index == 0:
                phones.append("^")
            elif index == len(labels) - 1:
                question = _feature(_IS_QUESTION, label)
                # Upstream appends nothing for any other value; the caller then drops the last real
                # phone with its [1:-1] slice. Reproduced as is.
                if question == 0:
                    phones.append("$")
                elif question == 1:
                    phones.append("?")
            continue
        if phone == "pau":
            phones.append("_")
            continue
        phones.append(phone)

        accent_distance = _feature(_ACCENT_DISTANCE, label)
        mora_forward = _feature(_MORA_FORWARD, label)
        mora_backward = _feature(_MORA_BACKWARD, label)
        phrase_morae = _feature(_PHRASE_MORAE, label)
        next_mora_forward = _feature(_MORA_FORWARD, labels[index + 1])

        if mora_backward == 1 and next_mora_forward == 1 and phone in _MORA_FINAL_PHONES:
            phones.append("#")  # last mora of an accent phrase, the next phrase starts
        elif accent_distance == 0 and next_mora_forward == mora_forward + 1 and mora_forward != phrase_morae:
            phones.append("]")  # pitch falls after the accent nucleus
        elif mora_forward == 1 and next_mora_forward == 2:
            phones.append("[")  # pitch rises after the first mora
    return phones
