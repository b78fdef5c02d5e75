"""Japanese text frontend: text -> phones with pitch-accent marks.

Follows GPT-SoVITS (upstream ``text/japanese.py``, the prosody path its synthesis uses):

* Runs of "Japanese" characters (kana, kanji, ASCII/full-width letters and digits) go through
  OpenJTalk (the ``pyopenjtalk`` module of the ``pyopenjtalk-plus`` package, which bundles its
  dictionary, so nothing is downloaded). The full-context label fields of its words become phones
  plus prosody marks: ``[`` pitch rises, ``]`` pitch falls, ``#`` accent-phrase border, ``_`` pause.
  The few label fields used are computed directly (``_phone_fields``): OpenJTalk's own label maker
  takes quadratic time in the length of a run.
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

# What JPCommon (OpenJTalk's label maker) does with an NJD word's pronunciation, see _phone_fields.
_LONG_VOWEL = "ー"  # repeats the previous phone as a new mora
_UNVOICE = "’"  # devoices the previous vowel
_PAUSE_WORDS = frozenset(["、", "？", "！"])  # a whole pronunciation: a pause before the next mora
_QUESTION = "？"
_UNVOICED = {"a": "A", "i": "I", "u": "U", "e": "E", "o": "O"}
_LABEL_LIMIT = 49  # label fields are clipped to 1..49 (-49..49 for the accent distance)
_MISSING = -50  # value used when a feature is "xx" (not defined for this label)

# A phone's label fields: accent distance (a1), mora position from the front (a2) and from the back
# (a3) of its accent phrase, morae in the phrase (f1). Pauses and silences have none.
_NO_FIELDS = (_MISSING, _MISSING, _MISSING, _MISSING)


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


def _clip(value: int, low: int = 1, high: int = _LABEL_LIMIT) -> int:
    return min(max(value, low), high)


@cache
def _mora_table() -> dict[str, tuple[str, ...]]:
    """OpenJTalk's katakana mora -> phones table, read from OpenJTalk itself.

    Its morae are one katakana, or one followed by a small kana; each is probed alone.
    """
    openjtalk = _openjtalk()
    template = openjtalk.run_frontend("ア")[0]
    kana = [chr(code) for code in range(0x30A1, 0x30FB)]
    table: dict[str, tuple[str, ...]] = {}
    for mora in kana + [first + small for first in kana for small in "ァィゥェォャュョヮ"]:
        labels = openjtalk.make_label(
            [{**template, "string": mora, "pron": mora, "acc": 0, "chain_flag": -1}]
        )
        fields = [
            (label.split("-", 1)[1].split("+", 1)[0], label.split("/A:", 1)[1].split("/", 1)[0])
            for label in labels[1:-1]
        ]
        if fields and all(field == fields[0][1] for _, field in fields):  # a single mora
            table[mora] = tuple(phone for phone, _ in fields)
    return table


def _phone_fields(features: list[dict]) -> tuple[list[tuple[str, tuple[int, int, int, int]]], bool]:
    """Phones of NJD words with the accent-phrase fields of their full-context labels, and whether
    the utterance ends as a question; what OpenJTalk's make_label would give, in linear time.

    make_label counts positions by walking the whole utterance for every phone: quadratic, seconds
    for a few thousand kana. The fields read here depend only on the accent phrase, so they are
    computed while following JPCommonLabel_push_word's rules: a pronunciation "、"/"？"/"！" puts a
    pause before the next mora ("？" also marks the phrase); "ー" repeats the previous phone as a
    mora of the previous word (dropped at the start or after a pause); "’" devoices the previous
    vowel within a word; an unknown mora ends the word. A word starts an accent phrase unless
    chain_flag is 1 (the first word always does); a phrase takes the accent of its first word.
    """
    table = _mora_table()
    phones: list[str] = []
    phone_mora: list[int] = []  # -1 for a pause
    mora_phrase: list[int] = []
    phrase_accent: list[int] = []
    phrase_question: list[bool] = []
    pause = False
    for feature in features:
        pron = feature["pron"]
        if pron in _PAUSE_WORDS:
            if pron == _QUESTION and phones:
                phrase_question[mora_phrase[phone_mora[-1]]] = True
            pause = True
            continue
        word_morae: list[int] = []
        i = 0
        while i < len(pron):
            if pron[i] == _LONG_VOWEL:
                if phones and not pause:
                    phones.append(phones[-1])
                    phone_mora.append(len(mora_phrase))
                    if word_morae:
                        word_morae.append(len(mora_phrase))
                        mora_phrase.append(-1)  # phrase set below
                    else:
                        mora_phrase.append(len(phrase_accent) - 1)
                i += 1
            elif pron[i] == _UNVOICE:
                if word_morae:
                    phones[-1] = _UNVOICED.get(phones[-1], phones[-1])
                i += 1
            else:
                mora = pron[i : i + 2] if pron[i : i + 2] in table else pron[i]
                if mora not in table:
                    break
                if pause and phones:
                    phones.append("pau")
                    phone_mora.append(-1)
                pause = False
                for phone in table[mora]:
                    phones.append(phone)
                    phone_mora.append(len(mora_phrase))
                word_morae.append(len(mora_phrase))
                mora_phrase.append(-1)
                i += len(mora)
        if not word_morae:
            continue
        if not phrase_accent or feature["chain_flag"] != 1:
            phrase_accent.append(feature["acc"])
            phrase_question.append(False)
        for mora in word_morae:
            mora_phrase[mora] = len(phrase_accent) - 1

    phrase_morae = [0] * len(phrase_accent)
    mora_index = []
    for phrase in mora_phrase:
        phrase_morae[phrase] += 1
        mora_index.append(phrase_morae[phrase])
    out = []
    for phone, mora in zip(phones, phone_mora, strict=True):
        if mora < 0:
            out.append((phone, _NO_FIELDS))
            continue
        phrase = mora_phrase[mora]
        index, count, accent = mora_index[mora], phrase_morae[phrase], phrase_accent[phrase]
        nucleus = accent if accent != 0 else count
        fields = (_clip(index - nucleus, -_LABEL_LIMIT), _clip(index), _clip(count - index + 1), _clip(count))
        out.append((phone, fields))
    question = bool(phones) and phrase_question[mora_phrase[phone_mora[-1]]]
    return out, question


def _prosody_phones(text: str) -> list[str]:
    """Phones with accent marks from OpenJTalk's label fields (the ESPnet/r9y9 "prosody" scheme).

    Returns the sequence including the leading "^" and the trailing "$"/"?".
    """
    try:
        features = _openjtalk().run_frontend(text)
    except RuntimeError as error:
        if "too long" not in str(error):
            raise
        # pyopenjtalk refuses a run over its 16 KiB MeCab buffer (about 5,400 characters): the text's
        # fault, so a ValueError (refused with a 4xx) rather than a RuntimeError (our bug, a 500).
        raise ValueError(f"a run of {len(text)} Japanese characters is too long for OpenJTalk") from error
    fields, question = _phone_fields(features)
    if not fields:
        return []
    phones: list[str] = ["^"]
    for index, (phone, (accent_distance, mora_forward, mora_backward, phrase_morae)) in enumerate(fields):
        if phone in _DEVOICED_VOWELS:  # devoiced vowels are treated as ordinary vowels
            phone = phone.lower()
        if phone == "pau":
            phones.append("_")
            continue
        phones.append(phone)
        next_mora_forward = fields[index + 1][1][1] if index + 1 < len(fields) else _MISSING

        if mora_backward == 1 and next_mora_forward == 1 and phone in _MORA_FINAL_PHONES:
            phones.append("#")  # last mora of an accent phrase, the next phrase starts
        elif accent_distance == 0 and next_mora_forward == mora_forward + 1 and mora_forward != phrase_morae:
            phones.append("]")  # pitch falls after the accent nucleus
        elif mora_forward == 1 and next_mora_forward == 2:
            phones.append("[")  # pitch rises after the first mora
    phones.append("?" if question else "$")
    return phones
