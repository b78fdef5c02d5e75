"""Japanese frontend: behaviour that follows from the rules in app/engine/text/ja.py."""

from __future__ import annotations

import pytest

from app.engine.text import ja


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("はい!!!", "はい!"),
        ("え?!…本当", "え?本当"),
        ("a,,b..c--d", "a,b.c-d"),
        # Full-width marks are not in the punctuation set, so they are not folded.
        ("はい！！", "はい！！"),
        ("ひとつ。", "ひとつ。"),
    ],
)
def test_normalize_folds_runs_of_ascii_punctuation_only(text, expected):
    assert ja.normalize(text) == expected


def test_pitch_accent_marks_distinguish_minimal_pairs():
    # 箸 (chopsticks) is head-high: pitch falls after the first mora; 橋 (bridge) rises after it.
    assert ja.g2p("箸") == ["h", "a", "]", "sh", "i"]
    assert ja.g2p("橋") == ["h", "a", "[", "sh", "i"]
    assert ja.g2p("雨") == ["a", "]", "m", "e"]
    assert ja.g2p("飴") == ["a", "[", "m", "e"]


def test_accent_phrase_border_is_marked_with_hash():
    phones = ja.g2p("田中と申します")
    border = phones.index("#")
    # The border follows the last mora of 田中と and precedes 申します.
    assert phones[border - 2 : border + 3] == ["t", "o", "#", "m", "o"]


def test_full_width_punctuation_becomes_model_symbols():
    phones = ja.g2p("はい、そう。本当！いいえ？")
    marks = [p for p in phones if not p.isalpha() and p not in "[]#"]
    assert marks == [",", ".", "!", "?"]


def test_unknown_marks_pass_through_for_the_cleaner():
    phones = ja.g2p("「はい」")
    assert phones[0] == "「" and phones[-1] == "」"


def test_spaces_are_dropped_between_runs():
    assert " " not in ja.g2p("はい はい")
    assert ja.g2p("はい はい") == ja.g2p("はい") * 2


def test_full_width_percent_is_read_out_but_ascii_percent_is_a_mark():
    assert ja.g2p("５０％") == ja.g2p("５０パーセント")
    assert ja.g2p("50%")[-1] == "%"


def test_latin_letters_are_read_case_insensitively():
    assert ja.g2p("ABC") == ja.g2p("abc")


def test_prosody_sequence_is_framed_by_start_and_end_symbols():
    full = ja._prosody_phones("こんにちは")
    assert full[0] == "^" and full[-1] == "$"
    assert ja.g2p("こんにちは") == full[1:-1]


def test_text_without_readable_characters_gives_no_phones():
    assert ja.g2p("") == []
    assert ja.g2p(" ") == []
