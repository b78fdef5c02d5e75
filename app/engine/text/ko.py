"""Korean text frontend: text -> Hangul jamo phones.

Follows GPT-SoVITS (upstream ``text/korean.py``; only its ``g2p`` path is used at synthesis time):

1. Latin letters are replaced by their Korean letter names ("a" -> "에이"), case-insensitively.
2. g2pk2 applies Korean pronunciation rules (liaison, assimilation, tensification, numbers read out),
   using the MeCab tagger of python-mecab-ko with the mecab-ko-dic dictionary it ships.
3. Syllables are split into compatibility jamo; diphthongs become two vowels (ㅘ -> ㅗㅏ), because the
   model only has the simple vowels.
4. Each character is one phone: punctuation mapped to the model's symbols, a space becomes "空", and
   any character missing from the v2 symbol table becomes "停".

Upstream has no Korean normalisation step: ``normalize`` returns the text unchanged.
"""

from __future__ import annotations

import importlib
import re
import threading
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from jamo import h2j, j2hcj

from app.engine.text.marks import COMMON_MARK_TO_SYMBOL
from app.engine.text.symbols import symbols_for

# Korean names of the Latin letters, as read in Korean ("w" -> "더블유").
_LETTER_NAMES = {
    "a": "에이", "b": "비", "c": "시", "d": "디", "e": "이", "f": "에프", "g": "지", "h": "에이치",
    "i": "아이", "j": "제이", "k": "케이", "l": "엘", "m": "엠", "n": "엔", "o": "오", "p": "피",
    "q": "큐", "r": "아르", "s": "에스", "t": "티", "u": "유", "v": "브이", "w": "더블유",
    "x": "엑스", "y": "와이", "z": "제트",
}  # fmt: skip
# One case-insensitive pattern per letter, applied one after the other like upstream. (re's Unicode
# case-insensitivity also catches e.g. the Kelvin sign "K" as "k"; kept for exactness.)
_LETTER_PATTERNS = [(re.compile(letter, re.IGNORECASE), name) for letter, name in _LETTER_NAMES.items()]

# Compound vowels (compatibility jamo) spelled as the two simple vowels the model knows.
_SPLIT_VOWELS = {
    "ㅘ": "ㅗㅏ", "ㅙ": "ㅗㅐ", "ㅚ": "ㅗㅣ", "ㅝ": "ㅜㅓ", "ㅞ": "ㅜㅔ", "ㅟ": "ㅜㅣ", "ㅢ": "ㅡㅣ",
    "ㅑ": "ㅣㅏ", "ㅒ": "ㅣㅐ", "ㅕ": "ㅣㅓ", "ㅖ": "ㅣㅔ", "ㅛ": "ㅣㅗ", "ㅠ": "ㅣㅜ",
}  # fmt: skip
_COMPOUND_VOWEL = re.compile("|".join(_SPLIT_VOWELS))

# g2pk2 applies the ㄹ+ㄴ -> ㄹ+ㄹ assimilation across a word boundary ("를 너무" -> "를 러무").
# Upstream undoes it, but only after the endings 을/를 (jamo "ㅇㅡㄹ"/"ㄹㅡㄹ"; "책을" is already
# re-syllabified to "글" and keeps the slip). Reproduced as is.
_G2PK2_RIEUL_SLIP = re.compile(r"([ㅇㄹ]ㅡㄹ) ㄹ")
# A text ending in a jamo gets a closing "." (upstream; `$` also matches before a final "\n").
_TRAILING_JAMO = re.compile(r"([\u3131-\u3163])$")

# g2pk2's convert_num finds each "number + word tagged /B" with re.findall(r"([\d][\d,]*)([ㄱ-힣]+)/B"),
# which retries every position of a digit run: quadratic, minutes for 100,000 digits. See _convert_num.
_NUMBER_RUN = re.compile(r"[\d,]+")
_DIGIT = re.compile(r"\d")
_TAGGED_WORD = re.compile(r"([ㄱ-힣]+)/B")

_CHAR_TO_SYMBOL = {
    **COMMON_MARK_TO_SYMBOL,
    " ": "空",  # word boundary
}
_UNKNOWN = "停"  # Korean's own stand-in for characters the table lacks (before the cleaner's UNK)


def normalize(text: str) -> str:
    """Upstream has no Korean normalisation; the text is returned unchanged."""
    return text


def g2p(norm_text: str) -> list[str]:
    """One phone per jamo / punctuation character of the pronounced form of ``norm_text``."""
    text = _spell_latin_letters(norm_text)
    text = _pronouncer()(text)
    text = _COMPOUND_VOWEL.sub(lambda m: _SPLIT_VOWELS[m.group()], j2hcj(h2j(text)))
    text = _G2PK2_RIEUL_SLIP.sub(r"\1 ㄴ", text)
    text = _TRAILING_JAMO.sub(r"\1.", text)
    known = _known_symbols()
    return [phone if phone in known else _UNKNOWN for phone in (_CHAR_TO_SYMBOL.get(c, c) for c in text)]


def _spell_latin_letters(text: str) -> str:
    for pattern, name in _LETTER_PATTERNS:
        text = pattern.sub(name, text)
    return text


def _numbers_before_tagged_words(string: str) -> list[tuple[str, str]]:
    """What g2pk2's re.findall above returns, in the same order, in linear time.

    A match could start at any digit of a run of digits and commas, so the leftmost one starts at
    the run's first digit; it needs the run to be followed by hangul and "/B".
    """
    found = []
    for run in _NUMBER_RUN.finditer(string):
        digit = _DIGIT.search(string, run.start(), run.end())
        tagged = _TAGGED_WORD.match(string, run.end())
        if digit is not None and tagged is not None:
            found.append((string[digit.start() : run.end()], tagged.group(1)))
    return found


def _convert_num(string: str) -> str:
    """g2pk2.numerals.convert_num (spell out numbers) with the token search above; same steps."""
    from g2pk2 import numerals

    for number, word in set(_numbers_before_tagged_words(string)):
        # "in" on BOUND_NOUNS, a space-separated string, is a substring test there too.
        spelled = numerals.process_num(number, sino=word not in numerals.BOUND_NOUNS)
        string = string.replace(f"{number}{word}/B", f"{spelled}{word}/B")
    for digit, name in zip("0123456789", "영일이삼사오육칠팔구", strict=True):
        string = string.replace(digit, name)
    return string


@cache
def _known_symbols() -> frozenset[str]:
    return frozenset(symbols_for("v2"))


_pronouncer_lock = threading.Lock()
_pronouncer_instance: Any = None


def _pronouncer() -> Any:
    """The g2pk2 converter, built once on first use (loading MeCab and the rule tables is slow)."""
    global _pronouncer_instance
    if _pronouncer_instance is None:
        with _pronouncer_lock:
            if _pronouncer_instance is None:
                _pronouncer_instance = _build_pronouncer()
    return _pronouncer_instance


@contextmanager
def _nltk_downloads_disabled():
    """Importing g2pk2 calls ``nltk.download("cmudict")`` when NLTK's CMU dictionary is missing.

    A server must not reach the network, and the dictionary is not needed here (see
    ``_build_pronouncer``), so the download is replaced by a no-op for the duration of the import.
    """
    import nltk

    original = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        yield
    finally:
        nltk.download = original


def _build_pronouncer() -> Any:
    import mecab

    with _nltk_downloads_disabled():
        import g2pk2
    # G2p.__call__ looks convert_num up in its module: use the linear one (g2pk2 is pinned).
    importlib.import_module("g2pk2.g2pk2").convert_num = _convert_num
    from g2pk2.utils import get_rule_id2text, parse_table

    class KoreanPronouncer(g2pk2.G2p):
        """g2pk2's converter without the side effects of its constructor.

        ``G2p.__init__`` pip-installs MeCab when it cannot find it, prints to stdout, silently keeps a
        ``None`` tagger when MeCab fails to load (the first call then crashes), and loads NLTK's CMU
        dictionary. Upstream works around MeCab only on Windows (copying the dictionary to an ASCII
        path for eunjeon). Here the same attributes are set up directly: python-mecab-ko finds the
        dictionary of its mecab-ko-dic package by itself and raises a clear error if it cannot.
        """

        def __init__(self) -> None:
            self.use_konlpy = False
            self.mecab_path = None
            self.mecab = mecab.MeCab()
            # Compiled once: g2pk2 applies these ~400 patterns with re.sub(string, ...) on every call;
            # with its other patterns that is more than re's cache holds (512), so every call
            # recompiled them (~40 ms per call).
            self.table = [(re.compile(pattern), repl, rule_ids) for pattern, repl, rule_ids in parse_table()]
            # English words go through the CMU dictionary in g2pk2; none reach it here because every
            # Latin letter was already spelled out in Hangul, so an empty dictionary is equivalent.
            self.cmu: dict[str, list[list[str]]] = {}
            self.rule2text = get_rule_id2text()
            self.idioms_path = str(Path(g2pk2.__file__).with_name("idioms.txt"))

    return KoreanPronouncer()
