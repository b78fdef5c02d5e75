"""English text normalisation: spell out numbers, money, times and units; keep only what g2p reads.

The pipeline follows GPT-SoVITS's English frontend step by step, quirks included, because the
acoustic models were trained on its output. Where a quirk is reproduced on purpose, a comment names it.
Each rewrite sees the output of the previous one, so the order of ``_STEPS`` matters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache

import inflect

# Punctuation that survives as a phone of its own (the project's phone tables call it PUNCTUATION).
_KEPT_PUNCTUATION = "!?…,.-"

# Upstream meant these keys as character classes ("any of ;:：，；" -> ","), but it escapes them before
# joining them into one pattern, so the bracketed keys only match their own literal text. In practice
# only the single full-width marks are mapped; "，", ";", ":" and quotes are dropped later by the
# character filter instead. Reproduced as written.
_LITERAL_REPLACEMENTS = {
    "[;:：，；]": ",",
    '["’]': "'",
    "。": ".",
    "！": "!",
    "？": "?",
}
_LITERAL_RE = re.compile("|".join(re.escape(key) for key in _LITERAL_REPLACEMENTS))

# A run of punctuation after a punctuation mark or a space collapses to its first character.
_PUNCT_CLASS = re.escape(_KEPT_PUNCTUATION)
_REPEATED_PUNCT_RE = re.compile(rf"([{_PUNCT_CLASS}\s])[{_PUNCT_CLASS}]+")

# Unit suffix -> (singular, plural). Matched right after a number, e.g. "20h", "1.2s", "0.1km".
_UNITS = {
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "ft": ("feet", "feet"),
    "L": ("liter", "liters"),
    "tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"),
    "h": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "s": ("second", "seconds"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
}
# The alternatives are tried in this order (first match wins, so "m" is tried before "min").
_UNIT_ALTERNATION = "m|km|km/h|ft|L|tbsp|tsp|h|min|s|°C|°F"

# Superscripts allowed after an arithmetic operand ("x²", "2ⁿ").
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"-?\d+(?:\.\d+)?[{_SUPERSCRIPTS}]*|\.\d+[{_SUPERSCRIPTS}]*|[A-Za-z][{_SUPERSCRIPTS}]*"
# Linear time: several patterns below start a number with a lookbehind that rejects a start inside a
# run of the characters the number is made of. A leftmost match never starts there (it would already
# have matched one character earlier, and no earlier match ends inside such a run, since each ends
# with a greedy run or a non-run character), so substitutions are unchanged; without the lookbehind
# every position of a long run is retried, quadratic (cubic for the money patterns).
_LEFT_OPERAND = _OPERAND.replace("-?", "-?(?<!\\d)", 1)
_ARITHMETIC_RE = re.compile(rf"(?P<left>{_LEFT_OPERAND})\s+(?P<op>[+\-×÷=])\s+(?P<right>{_OPERAND})")
# "=" reads as "Equals" with a capital E in upstream; the capital survives into the normalised text.
_OPERATOR_WORDS = {"+": " plus ", "-": " minus ", "×": " times ", "÷": " divided by ", "=": " Equals "}

# A minus sign at the start or after whitespace. The whitespace is part of the match and is NOT put
# back (upstream quirk), so "from -5" becomes "fromnegative 5".
_NEGATIVE_RE = re.compile(r"(?:^|(?<!\s)\s+)-(\d+)")

_LIST_NUMBER_RE = re.compile(r"\b([0-9]+)\. ")  # "1. item" -> "1st, item"
_GROUPED_NUMBER_RE = re.compile(r"([0-9][0-9,]+[0-9])")  # "12,000" -> "12000"
_CLOCK_RE = re.compile(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])\b")
_MEASUREMENT_RE = re.compile(rf"\b([0-9]+(\.[0-9]+)?({_UNIT_ALTERNATION}))\b")
_POUNDS_BEFORE_RE = re.compile(r"£([0-9.,]*[0-9]+)")
# "[0-9.,]*[0-9]+" matches what "[0-9.,]*[0-9]" does; the latter backtracks in linear time.
_POUNDS_AFTER_RE = re.compile(r"(?<![0-9.,])([0-9.,]*[0-9])£")
_DOLLARS_BEFORE_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
# Upstream's class also admits "(" here (a typo in the reference, kept for identical output).
_DOLLARS_AFTER_RE = re.compile(r"(?<![(0-9.,])([(0-9.,]*[0-9])\$")
_DECIMAL_RE = re.compile(r"(?<![0-9])([0-9]+\.\s*[0-9]+)")
_FRACTION_RE = re.compile(r"(?<![0-9])([0-9]+/[0-9]+)")
_ORDINAL_RE = re.compile(r"(?<![0-9])[0-9]+(st|nd|rd|th)")
_INTEGER_RE = re.compile(r"[0-9]+")

_NOT_READABLE_RE = re.compile(r"[^ A-Za-z'.,?!\-]")
_IE_RE = re.compile(r"(?i)i\.e\.")
_EG_RE = re.compile(r"(?i)e\.g\.")
# A capital letter glued to the previous character starts a new word: "iPhone" -> "i Phone",
# "NASA" -> "N A S A" (spelled out letter by letter).
_GLUED_CAPITAL_RE = re.compile(r"(?<!^)(?<!\s)([A-Z])")


@cache
def _inflect() -> inflect.engine:
    return inflect.engine()


def _words(number: int | str, **options) -> str:
    return _inflect().number_to_words(number, **options)


def _list_number(m: re.Match) -> str:
    return _inflect().ordinal(m.group(1)) + ", "


def _arithmetic(m: re.Match) -> str:
    return m.group("left") + _OPERATOR_WORDS[m.group("op")] + m.group("right")


def _negative(m: re.Match) -> str:
    return f"negative {m.group(1)}"


def _ungroup(m: re.Match) -> str:
    return m.group(1).replace(",", "")


def _clock(m: re.Match) -> str:
    """24-hour time to words: "13:30" -> "one thirty p.m.", "4:00" -> "four o'clock a.m."."""
    hours, minutes = int(m.group(1)), int(m.group(2))
    period = "a.m." if hours < 12 else "p.m."
    if hours > 12:
        hours -= 12
    if minutes == 0:
        return f"{_words(hours)} o'clock {period}"
    return f"{_words(hours)} {_words(minutes)} {period}"


def _measurement(m: re.Match) -> str:
    """Unit after a number: "20h" -> "20 hours", "1L" -> "1 liter" (the number is spelled out later)."""
    amount, fraction, unit = m.group(1), m.group(2), m.group(3)
    # Upstream drops the decimal point to get an integer: only a whole "1" is singular.
    singular = fraction is None and int(amount.replace(unit, "").replace(".", "")) == 1
    singular_word, plural_word = _UNITS[unit]
    return amount.replace(unit, " " + (singular_word if singular else plural_word))


def _money(amount: str, unit: tuple[str, str], subunit: tuple[str, str]) -> str:
    """Amount in a currency: "12.5" with dollars and cents -> "12 dollars and 50 cents"."""
    parts = amount.split(".")
    if len(parts) > 2:
        return f"{amount} {unit[1]}"  # not a money amount after all ("1.2.3")
    whole = int(parts[0]) if parts[0] else 0
    # The fraction is hundredths: ".5" is 50 cents.
    hundredths = int(parts[1].ljust(2, "0")) if len(parts) > 1 and parts[1] else 0
    whole_text = f"{whole} {unit[0] if whole == 1 else unit[1]}"
    hundredths_text = f"{hundredths} {subunit[0] if hundredths == 1 else subunit[1]}"
    if whole and hundredths:
        return f"{whole_text} and {hundredths_text}"
    if whole:
        return whole_text
    if hundredths:
        return hundredths_text
    return f"zero {unit[1]}"


def _pounds(m: re.Match) -> str:
    return _money(m.group(1), ("pound", "pounds"), ("penny", "pence"))


def _dollars(m: re.Match) -> str:
    return _money(m.group(1), ("dollar", "dollars"), ("cent", "cents"))


def _decimal(m: re.Match) -> str:
    """Decimal: "3.14" -> "3 point 1 4"; the digits after the point are read one by one."""
    whole, fraction = m.group(1).split(".")
    # Any space after the point is "read" too (joined like a digit), as upstream does.
    return whole + " point " + " ".join(fraction)


def _fraction(m: re.Match) -> str:
    """Fraction: "1/2" -> "one half", "3/4" -> "three fourths", "6/1" -> "six"."""
    numerator, denominator = (int(part) for part in m.group(0).split("/"))
    numerator_words = _words(numerator)
    if denominator == 1:
        return numerator_words
    if denominator == 2:
        return f"{numerator_words} {'half' if numerator == 1 else 'halves'}"
    denominator_words = _inflect().ordinal(_words(denominator))
    if numerator > 1:
        denominator_words += "s"
    return f"{numerator_words} {denominator_words}"


def _ordinal(m: re.Match) -> str:
    return _words(m.group(0))  # inflect reads "23rd" as "twenty-third"


def _integer(m: re.Match) -> str:
    """Integers; 1001-2999 are read like years ("nineteen ninety-nine", "two thousand eight")."""
    number = int(m.group(0))
    if not 1000 < number < 3000:
        return _words(number, andword="")
    if number == 2000:
        return "two thousand"
    if 2000 < number < 2010:
        return "two thousand " + _words(number % 100)
    if number % 100 == 0:
        return _words(number // 100) + " hundred"
    return _words(number, andword="", zero="oh", group=2).replace(", ", " ")


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")


def _rewrite_arithmetic(text: str) -> str:
    # Repeat until stable: "1 + 2 + 3" needs two passes because matches cannot overlap.
    while _ARITHMETIC_RE.search(text):
        text = _ARITHMETIC_RE.sub(_arithmetic, text)
    return text


_Step = Callable[[str], str]


def _sub(pattern: re.Pattern, replacement: str | Callable[[re.Match], str]) -> _Step:
    return lambda text: pattern.sub(replacement, text)


_STEPS: tuple[_Step, ...] = (
    _sub(_LIST_NUMBER_RE, _list_number),
    _rewrite_arithmetic,
    _sub(_NEGATIVE_RE, _negative),
    _sub(_GROUPED_NUMBER_RE, _ungroup),
    _sub(_CLOCK_RE, _clock),
    _sub(_MEASUREMENT_RE, _measurement),
    _sub(_POUNDS_BEFORE_RE, _pounds),
    _sub(_POUNDS_AFTER_RE, _pounds),
    _sub(_DOLLARS_BEFORE_RE, _dollars),
    _sub(_DOLLARS_AFTER_RE, _dollars),
    _sub(_DECIMAL_RE, _decimal),
    _sub(_FRACTION_RE, _fraction),
    _sub(_ORDINAL_RE, _ordinal),
    _sub(_INTEGER_RE, _integer),
    _strip_accents,
    lambda text: text.replace("%", " percent"),
    _sub(_NOT_READABLE_RE, ""),
    _sub(_IE_RE, "that is"),
    _sub(_EG_RE, "for example"),
    _sub(_GLUED_CAPITAL_RE, r" \1"),
)


def normalize(text: str) -> str:
    """Rewrite English ``text`` into the words and punctuation that :func:`g2p` reads.

    Numbers, money, times, fractions and units become words; characters other than ASCII letters,
    spaces and ``' . , ? ! -`` are removed; capitals glued to a previous character are split off
    (acronyms are spelled out); runs of punctuation collapse to their first mark.
    """
    text = _LITERAL_RE.sub(lambda m: _LITERAL_REPLACEMENTS[m.group(0)], text)
    for step in _STEPS:
        text = step(text)
    # Avoid repeated punctuation, which upstream notes can leak the reference audio into the output.
    return _REPEATED_PUNCT_RE.sub(r"\1", text)
