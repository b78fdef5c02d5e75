"""Cantonese frontend: behaviour that follows from the rules in app/engine/text/yue.py."""

from __future__ import annotations

import importlib

import pytest

from app.engine.text import yue


def _has_zh_normalizer() -> bool:
    try:
        importlib.import_module("app.engine.text.zh.normalizer")
    except ImportError:
        return False
    return True


needs_zh_normalizer = pytest.mark.skipif(
    not _has_zh_normalizer(), reason="the Mandarin normaliser (app.engine.text.zh) is not there yet"
)


@pytest.mark.parametrize(
    ("text", "phones"),
    [
        ("我", ["Yng", "Yo5"]),  # ngo5: initial ng, final o, tone on the final
        ("乖", ["Ygw", "Yaai1"]),  # gw is tried before g
        ("鱼", ["Yj", "Yyu4"]),
        ("嗌", ["Yaa", "Yi3"]),  # aai3: the vowel-initial "aa" is the first prefix that matches
        ("爱", ["Yoi", "Yi3"]),
        ("唔", ["Ym", "Ym4"]),  # m4 is only an initial: its last letter doubles as the final
        ("嗯", ["Yng", "Yg6"]),
    ],
)
def test_syllables_split_into_prefixed_initial_and_toned_final(text, phones):
    assert yue.g2p(text) == (phones, [2])


def test_punctuation_is_one_phone_and_word2ph_counts_per_character():
    phones, word2ph = yue.g2p("好,好!")
    assert phones == ["Yh", "You2", ",", "Yh", "You2", "!"]
    assert word2ph == [2, 1, 2, 1]
    assert sum(word2ph) == len(phones)


def test_two_syllable_reading_is_kept_as_one_unit_like_upstream():
    # ToJyutping reads 卅 as "saa1 aa6"; upstream splits that string as one syllable.
    assert yue.g2p("卅") == (["Ys", "Yaa1 aa6"], [2])


def test_characters_without_a_reading_are_refused():
    with pytest.raises(ValueError, match="Cantonese reading"):
        yue.g2p("a")
    with pytest.raises(ValueError):
        yue.g2p("好，")  # full-width comma: g2p expects normalised text


@needs_zh_normalizer
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("「你好」", "你好"),  # quotes become "'", which is not kept
        ("好～", "好-"),  # Cantonese maps the wave dash to "-" (Mandarin maps it to "…")
        ("嗯", "嗯"),  # Mandarin respells 嗯 as 恩; Cantonese does not
        ("我係ABC", "我系"),  # simplified; Latin letters dropped
        ("25歲", "二十五岁"),  # numbers read out by the Mandarin rules
        ("你好，我係香港人。", "你好,我系香港人."),
    ],
)
def test_normalize(text, expected):
    assert yue.normalize(text) == expected


@needs_zh_normalizer
def test_normalized_text_is_accepted_by_g2p():
    norm_text = yue.normalize("今日天氣好好，我哋去飲茶啦！")
    phones, word2ph = yue.g2p(norm_text)
    assert len(word2ph) == len(norm_text)
    assert sum(word2ph) == len(phones)
