"""Mandarin tone sandhi, erhua, syllable->phone rules and the g2p contract, on small hand-made inputs.

Expected tones are derived from the rules (the tone pypinyin gives in isolation, then the sandhi rule).
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.text.zh import UnknownSyllableError, g2p, normalize
from app.engine.text.zh.erhua import apply_erhua
from app.engine.text.zh.g2p import written_syllable
from app.engine.text.zh.syllables import syllable_to_phones
from app.engine.text.zh.tone_sandhi import apply_sandhi, merge_words


def phones_of(text: str, version: str = "v2") -> list[str]:
    phones, _ = g2p(normalize(text), version)
    return phones


# --- 一 ---------------------------------------------------------------------------------------------


def test_yi_before_fourth_tone_is_second_tone():
    assert apply_sandhi("一段", "m", ["i1", "uan4"]) == ["i2", "uan4"]


def test_yi_before_other_tones_is_fourth_tone():
    assert apply_sandhi("一天", "m", ["i1", "ian1"]) == ["i4", "ian1"]
    assert apply_sandhi("一年", "m", ["i1", "ian2"]) == ["i4", "ian2"]


def test_yi_in_numbers_and_ordinals_keeps_first_tone():
    assert apply_sandhi("十一", "m", ["ir2", "i1"]) == ["ir2", "i1"]
    assert apply_sandhi("一零一", "m", ["i1", "ing2", "i1"]) == ["i1", "ing2", "i1"]
    assert apply_sandhi("第一", "m", ["i4", "i1"]) == ["i4", "i1"]


def test_yi_between_a_repeated_verb_is_neutral():
    assert apply_sandhi("看一看", "v", ["an4", "i1", "an4"]) == ["an4", "i5", "an4"]
    # and the segmenter's 看/一/看 is first merged into one word for that rule to see
    assert merge_words([("看", "v"), ("一", "m"), ("看", "v")]) == [("看一看", "v")]
    assert phones_of("看一看") == ["k", "an4", "y", "i5", "k", "an4"]


def test_lone_yi_joins_the_next_word():
    assert merge_words([("一", "m"), ("天", "q")]) == [("一天", "m")]


# --- 不 ---------------------------------------------------------------------------------------------


def test_bu_before_fourth_tone_is_second_tone():
    assert apply_sandhi("不怕", "v", ["u4", "a4"]) == ["u2", "a4"]
    assert apply_sandhi("不好", "a", ["u4", "ao3"]) == ["u4", "ao3"]  # not before other tones


def test_bu_inside_a_verb_complement_is_neutral():
    assert apply_sandhi("看不懂", "v", ["an4", "u4", "ong3"]) == ["an4", "u5", "ong3"]


def test_bu_joins_the_next_word_and_a_trailing_bu_stays():
    assert merge_words([("不", "d"), ("去", "v")]) == [("不去", "v")]
    assert merge_words([("好", "a"), ("不", "d")]) == [("好", "a"), ("不", "d")]


# --- neutral tone -------------------------------------------------------------------------------


def test_neutral_tone_suffixes_and_particles():
    assert apply_sandhi("我们", "r", ["o3", "en2"]) == ["o3", "en5"]
    assert apply_sandhi("桌子", "n", ["uo1", "i3"]) == ["uo1", "i5"]
    assert apply_sandhi("了", "ul", ["e5"]) == ["e5"]
    assert apply_sandhi("过", "ug", ["uo4"]) == ["uo5"]
    assert apply_sandhi("过", "p", ["uo4"]) == ["uo4"]  # only as an aspect particle
    assert apply_sandhi("好吧", "l", ["ao3", "a1"]) == ["ao3", "a5"]
    assert apply_sandhi("出去", "v", ["u1", "v4"]) == ["u1", "v5"]
    assert apply_sandhi("两个", "m", ["iang3", "e4"]) == ["iang3", "e5"]


def test_neutral_tone_reduplication_and_lexical_words():
    assert apply_sandhi("奶奶", "n", ["ai3", "ai3"]) == ["ai3", "ai5"]
    assert apply_sandhi("东西", "n", ["ong1", "i1"]) == ["ong1", "i5"]
    # listed exceptions keep full tones
    assert apply_sandhi("男子", "n", ["an2", "i3"]) == ["an2", "i3"]
    assert apply_sandhi("人人", "n", ["en2", "en2"]) == ["en2", "en2"]


# --- third tone ---------------------------------------------------------------------------------------


def test_two_third_tones():
    assert apply_sandhi("你好", "l", ["i3", "ao3"]) == ["i2", "ao3"]


def test_three_third_tones_follow_the_word_structure():
    assert apply_sandhi("展览馆", "n", ["an3", "an3", "uan3"]) == ["an2", "an2", "uan3"]  # 展览/馆
    assert apply_sandhi("纸老虎", "n", ["ir3", "ao3", "u3"]) == ["ir3", "ao2", "u3"]  # 纸/老虎


def test_four_syllables_are_two_pairs():
    assert apply_sandhi("展览很好", "l", ["an3", "an3", "en3", "ao3"]) == ["an2", "an3", "en2", "ao3"]


def test_short_third_tone_words_are_merged_before_sandhi():
    assert merge_words([("很", "d"), ("好", "a")]) == [("很好", "d")]
    assert phones_of("很好") == ["h", "en2", "h", "ao3"]


# --- erhua --------------------------------------------------------------------------------------------


def test_erhua_takes_the_previous_tone():
    assert apply_erhua("哪儿", "r", ["a3", "er2"]) == ["a3", "er3"]
    assert apply_erhua("媳妇儿", "nr", ["i2", "u4", "er2"]) == ["i2", "u4", "er4"]  # always rhotic


def test_erhua_is_not_applied_where_er_is_a_word():
    assert apply_erhua("女儿", "n", ["v3", "er2"]) == ["v3", "er2"]
    assert apply_erhua("张儿", "nr", ["ang1", "er2"]) == ["ang1", "er2"]  # a name
    assert apply_erhua("女儿", "n", ["v3", "er1"]) == ["v3", "er2"]  # er1 is still corrected


def test_erhua_only_in_v2():
    assert phones_of("哪儿", "v2") == ["n", "a3", "EE", "er3"]
    assert phones_of("哪儿", "v1") == ["n", "a3", "EE", "er2"]


# --- syllables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "final", "written"),
    [
        ("", "uan", "wan"),
        ("", "i", "yi"),
        ("", "ing", "ying"),
        ("", "v", "yu"),
        ("", "van", "yuan"),
        ("", "iou", "you"),
        ("", "e", "e"),
        ("", "er", "er"),
        ("d", "uei", "dui"),
        ("j", "iou", "jiu"),
        ("g", "uen", "gun"),
        ("j", "v", "jv"),
    ],
)
def test_written_syllable(initial, final, written):
    assert written_syllable(initial, final) == written


@pytest.mark.parametrize(
    ("syllable", "phones"),
    [
        ("zhi", ("zh", "ir")),
        ("ri", ("r", "ir")),
        ("si", ("s", "i0")),
        ("ju", ("j", "v")),
        ("jv", ("j", "v")),
        ("quan", ("q", "van")),
        ("yan", ("y", "En")),
        ("ye", ("y", "E")),
        ("yu", ("y", "v")),
        ("ang", ("AA", "ang")),
        ("er", ("EE", "er")),
        ("ou", ("OO", "ou")),
        ("wu", ("w", "u")),
        ("lve", ("l", "ve")),
        ("zhong", ("zh", "ong")),
    ],
)
def test_syllable_to_phones(syllable, phones):
    assert syllable_to_phones(syllable) == phones


@pytest.mark.parametrize("syllable", ["hm", "n", "ng", "lue", "biu", "zhii", ""])
def test_syllables_outside_the_inventory_are_refused(syllable):
    with pytest.raises(UnknownSyllableError):
        syllable_to_phones(syllable)


# --- the g2p contract --------------------------------------------------------------------------------


def test_phones_and_word2ph_line_up():
    norm_text = normalize("我今年25岁，今天天气很好！你呢？")
    phones, word2ph = g2p(norm_text)
    assert len(word2ph) == len(norm_text)
    assert sum(word2ph) == len(phones)
    for char, count in zip(norm_text, word2ph, strict=True):
        assert count == (1 if char in ",.!?…-" else 2)
    assert phones[:4] == ["w", "o3", "j", "in1"]
    assert phones[-1] == "?"


def test_respelled_interjections_are_readable():
    assert phones_of("嗯") == ["EE", "en1"]


@pytest.mark.parametrize("norm_text", ["噷", "噷噷", "一噷", "你好,噷."])
def test_character_without_a_syllable_is_refused(norm_text):
    # pypinyin reads 噷 "hm", which has no final; whatever the context, the error is the same kind
    with pytest.raises(UnknownSyllableError):
        g2p(norm_text)


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5) | st.sampled_from(",.!?…"),
        max_size=12,
    )
)
def test_any_normalised_text_lines_up_or_is_refused(text):
    norm_text = normalize(text)
    try:
        phones, word2ph = g2p(norm_text)
    except UnknownSyllableError:
        return
    assert len(word2ph) == len(norm_text)
    assert sum(word2ph) == len(phones)


def test_unknown_version_is_refused():
    with pytest.raises(ValueError):
        g2p("你好", "v3")


def test_concurrent_use_gives_the_same_result():
    text = normalize("一个人不怕，看一看纸老虎，哪儿都好。")
    expected = g2p(text)
    results: list[tuple[list[str], list[int]]] = []

    def work() -> None:
        results.append(g2p(text))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4
