"""Korean frontend: behaviour that follows from the rules in app/engine/text/ko.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from app.engine.text import ko
from tests.conftest import ROOT


def jamo(text: str) -> str:
    return "".join(ko.g2p(text))


def test_normalize_is_the_identity():
    text = "안녕하세요!  ABC 123。"
    assert ko.normalize(text) == text


def test_latin_letters_are_read_by_their_korean_names():
    assert ko.g2p("abc") == ko.g2p("에이비시")
    assert ko.g2p("ABC") == ko.g2p("abc")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("값이", "ㄱㅏㅂㅆㅣ."),  # compound coda splits across the syllable boundary, ㅅ tensed
        ("국물", "ㄱㅜㅇㅁㅜㄹ."),  # nasalisation: ㄱ before ㅁ is read ㅇ
        ("신라", "ㅅㅣㄹㄹㅏ."),  # lateralisation: ㄴ before ㄹ is read ㄹ
        ("같이", "ㄱㅏㅊㅣ."),  # palatalisation
        ("좋다", "ㅈㅗㅌㅏ."),  # aspiration: ㅎ + ㄷ
    ],
)
def test_pronunciation_rules_are_applied(text, expected):
    assert jamo(text) == expected


def test_numbers_are_read_with_native_numerals_before_counters():
    assert jamo("3개") == jamo("세개")


def test_compound_vowels_become_two_simple_vowels():
    assert ko.g2p("와") == ["ㅇ", "ㅗ", "ㅏ", "."]
    assert jamo("여") == "ㅇㅣㅓ."
    assert jamo("의사") == "ㅇㅡㅣㅅㅏ."


def test_a_closing_dot_is_added_only_after_a_final_jamo():
    assert ko.g2p("와!")[-1] == "!"
    assert ko.g2p("와!").count(".") == 0


def test_spaces_and_punctuation_map_to_model_symbols():
    assert ko.g2p("네 네") == ["ㄴ", "ㅔ", "空", "ㄴ", "ㅔ", "."]
    assert ko.g2p("네。")[-1] == "."
    assert ko.g2p("네，네")[2] == ","


def test_characters_outside_the_table_become_ting():
    assert ko.g2p("漢字") == ["停", "停"]
    assert jamo("가'나") == "ㄱㅏ停ㄴㅏ."


def test_cross_word_lateralisation_after_eul_is_undone():
    # g2pk2 itself reads "를 너무" as "를 러무"; the ㄴ is restored.
    assert jamo("를 너무") == "ㄹㅡㄹ空ㄴㅓㅁㅜ."


def test_no_download_is_attempted_when_nltk_data_is_missing(tmp_path):
    # A fresh interpreter with an empty NLTK search path: importing g2pk2 would normally call
    # nltk.download("cmudict"). Any network access goes through nltk.downloader.urlopen, recorded here.
    script = textwrap.dedent(
        f"""
        import nltk, nltk.downloader
        nltk.data.path[:] = [{str(tmp_path)!r}]
        calls = []
        def refuse(*args, **kwargs):
            calls.append(args)
            raise OSError("network disabled in test")
        nltk.downloader.urlopen = refuse
        from app.engine.text import ko
        phones = ko.g2p("값이 abc")
        assert calls == [], calls
        print("".join(phones))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ㄱㅏㅂㅆㅣ空ㅇㅔㅇㅣㅂㅣㅅㅣ."
