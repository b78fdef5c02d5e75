"""clean_text: module choice per version, the special pause marks, the English rule and UNK mapping."""

from __future__ import annotations

import pytest

from app.engine.text.cleaner import CleanedText, clean_text, supported_languages
from app.engine.text.symbols import symbol_to_id


def test_languages_per_version() -> None:
    assert supported_languages("v1") == {"zh", "ja", "en"}
    for version in ("v2", "v2Pro", "v3", "v4"):
        assert supported_languages(version) == {"zh", "ja", "en", "ko", "yue"}


def test_result_unpacks_like_upstream() -> None:
    phones, word2ph, norm_text = clean_text("こんにちは。", "ja", "v2")
    assert isinstance(clean_text("こんにちは。", "ja", "v2"), CleanedText)
    assert word2ph is None
    assert norm_text == "こんにちは。"
    assert phones[-1] == "."


def test_phones_outside_the_table_become_unk() -> None:
    v2 = clean_text("こんにちは。", "ja", "v2").phones
    v1 = clean_text("こんにちは。", "ja", "v1").phones
    # The pitch marks exist only in the v2 table.
    assert any(p in ("[", "]") for p in v2)
    assert v1 == ["UNK" if p in ("[", "]") else p for p in v2]
    for version, phones in (("v1", v1), ("v2", v2)):
        assert all(p in symbol_to_id(version) for p in phones)


def test_korean_is_a_v2_language() -> None:
    phones = clean_text("안녕하세요.", "ko", "v2").phones
    assert "ㅏ" in phones and "UNK" not in phones


def test_language_unknown_to_the_version_reads_as_a_pause() -> None:
    # v1 has no Korean: upstream reads the text as English " ", which is padded to a single comma.
    cleaned = clean_text("안녕하세요.", "ko", "v1")
    assert cleaned.phones[0] == ","
    assert "ㅏ" not in cleaned.phones
    assert clean_text("bonjour", "fr", "v2").phones == cleaned.phones


def test_short_english_gets_a_leading_comma() -> None:
    short = clean_text("a", "en", "v2").phones
    assert short[0] == "," and len(short) >= 2
    long = clean_text("This is a long enough sentence.", "en", "v2").phones
    assert long[0] != ","


@pytest.mark.parametrize(("mark", "pause"), [("￥", "SP2"), ("^", "SP3")])
def test_chinese_special_marks_become_pauses(mark: str, pause: str) -> None:
    plain = clean_text("你好，世界", "zh", "v2")
    special = clean_text(f"你好{mark}世界", "zh", "v2")
    assert special.phones == [pause if p == "," else p for p in plain.phones]
    assert special.norm_text == plain.norm_text
    assert special.word2ph == plain.word2ph
    # Only Chinese text honours the marks.
    assert pause not in clean_text(f"こんにちは{mark}", "ja", "v2").phones


def test_chinese_word2ph_covers_every_character() -> None:
    for version in ("v1", "v2"):
        cleaned = clean_text("今天是2024年1月1日。", "zh", version)
        assert cleaned.word2ph is not None
        assert len(cleaned.word2ph) == len(cleaned.norm_text)
        assert sum(cleaned.word2ph) == len(cleaned.phones)
