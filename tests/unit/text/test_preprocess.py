"""The frontend entry point: cutting, language handling per code, retry rule and refusals."""

from __future__ import annotations

import pytest

from app.engine.text.preprocess import (
    LANGUAGES,
    TextRejected,
    fold_repeated_punctuation,
    merge_short_pieces,
    phones_for_piece,
    pre_segment,
    preprocess,
    split_languages,
)

# --- stage 1: cutting (no language module needed) ---------------------------------------------------


def test_repeated_punctuation_folds_into_its_first_mark() -> None:
    assert fold_repeated_punctuation("what?!... really,,, ok--") == "what? really, ok-"
    assert fold_repeated_punctuation("好！！！") == "好！！！"  # full-width marks are not folded here


def test_merge_short_pieces() -> None:
    assert merge_short_pieces(["ab", "cd", "efgh", "ij"]) == ["abcdefghij"]  # the short tail joins the last piece
    assert merge_short_pieces(["ab", "cde", "fghij", "k"]) == ["abcde", "fghijk"]
    assert merge_short_pieces(["a", "b"]) == ["ab"]
    assert merge_short_pieces(["a"]) == ["a"]
    assert merge_short_pieces([]) == []


def test_short_opening_gets_a_full_stop() -> None:
    assert pre_segment("好的，我们走吧", "all_zh", "cut0") == ["。好的，我们走吧。"]
    assert pre_segment("Hi, how are you", "en", "cut0") == [".Hi, how are you."]
    assert pre_segment("今天天气很好", "all_zh", "cut0") == ["今天天气很好。"]


def test_pieces_are_closed_and_pure_symbol_pieces_dropped() -> None:
    pieces = pre_segment("第一句话很长。第二句话也很长。！？", "all_zh", "cut5")
    assert pieces == ["第一句话很长。", "第二句话也很长。"]
    assert all(piece[-1] in "。." for piece in pieces)


def test_newlines_separate_pieces() -> None:
    for method in ("cut0", "cut1"):
        assert pre_segment("第一行文字\n\n\n第二行文字", "zh", method) == ["第一行文字。", "第二行文字。"]


def test_long_piece_is_split_for_bert() -> None:
    text = "这是一个很长的句子，" * 80
    pieces = pre_segment(text, "all_zh", "cut0")
    assert len(pieces) > 1
    assert all(len(piece) <= 510 for piece in pieces)
    assert "".join(pieces) == text  # ends with "，", so no full stop is added


def test_blank_input_is_empty_and_blank_cut_is_rejected() -> None:
    assert pre_segment("", "all_zh", "cut1") == []
    assert pre_segment("\n\n", "all_zh", "cut1") == []
    with pytest.raises(TextRejected):
        pre_segment("。。。", "all_zh", "cut3")
    with pytest.raises(TextRejected):
        preprocess("", "all_zh")
    with pytest.raises(TextRejected):
        preprocess("   ", "en")


def test_text_rejected_is_a_value_error() -> None:
    assert issubclass(TextRejected, ValueError)


def test_unknown_codes_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        preprocess("hello", "klingon")
    with pytest.raises(ValueError, match="unknown cut method"):
        preprocess("hello there my friend", "en", "cut9")


# --- stage 2: language handling (language splitting only) -------------------------------------------


def test_user_language_wins_for_everything_but_english() -> None:
    parts = split_languages("我喜欢 music 和 まいご", "ja")
    assert [p.lang for p in parts] == ["ja", "en", "ja"]
    assert "".join(p.text for p in parts) == "我喜欢 music 和 まいご"


def test_cantonese_codes_relabel_chinese() -> None:
    assert {p.lang for p in split_languages("你好呀", "all_yue")} == {"yue"}
    assert [p.lang for p in split_languages("我好钟意 apple", "auto_yue")] == ["yue", "en"]


def test_en_code_does_not_split() -> None:
    assert [(p.lang, p.text) for p in split_languages("你好 hello", "en")] == [("en", "你好 hello")]


def test_every_language_code_is_handled() -> None:
    for lang in LANGUAGES:
        parts = split_languages("Hello 你好。", lang)
        assert parts and all(p.lang in {"zh", "ja", "en", "ko", "yue"} for p in parts)


# --- stage 2: phones (needs language modules) -------------------------------------------------------


def test_short_piece_is_retried_with_a_dot() -> None:
    segment = phones_for_piece("。ね。", "all_ja")
    assert segment.retried_with_dot_prefix
    assert segment.text == "。ね。"
    assert segment.lang_segments[0].text == ".。ね。"
    long_segment = phones_for_piece("こんにちは、元気ですか。", "all_ja")
    assert not long_segment.retried_with_dot_prefix


def test_double_spaces_fold_before_reading() -> None:
    assert phones_for_piece("Hello   there  friend.", "en").phones == phones_for_piece(
        "Hello there friend.", "en"
    ).phones


def test_segment_fields_are_consistent() -> None:
    for segment in preprocess("ねえ、知ってる？最近、僕は Python を勉強してるんだ。", "all_ja", "cut5"):
        assert segment.phones == [p for part in segment.lang_segments for p in part.phones]
        assert segment.norm_text == "".join(part.norm_text for part in segment.lang_segments)
        assert len(segment.phone_ids) == len(segment.phones)
        assert all(part.bert_kind == "zeros" for part in segment.lang_segments)
        assert segment.word2ph is None


def test_chinese_parts_get_bert_and_word2ph() -> None:
    (segment,) = preprocess("我今天很高兴。", "all_zh")
    assert [part.bert_kind for part in segment.lang_segments] == ["bert"]
    assert segment.word2ph is not None and sum(segment.word2ph) == len(segment.phones)
    (mixed,) = preprocess("我今天学习 English 很高兴。", "zh")
    assert [part.bert_kind for part in mixed.lang_segments] == ["bert", "zeros", "bert"]
    assert mixed.word2ph is None


def test_cantonese_gets_zero_features() -> None:
    (segment,) = preprocess("你好，我係香港人。", "all_yue")
    assert [part.bert_kind for part in segment.lang_segments] == ["zeros"]
    assert segment.word2ph is not None


# --- refusals instead of crashes ---------------------------------------------------------------------


def test_overlong_run_without_punctuation_is_cut_without_an_empty_piece() -> None:
    pieces = pre_segment("A" * 600, "en", "cut0")
    assert pieces and all(pieces)
    assert pieces[0] == "A" * 600


def test_chinese_too_long_for_bert_is_refused() -> None:
    with pytest.raises(TextRejected, match="too long"):
        preprocess("你" * 600, "all_zh", "cut0")
    # The same length in Japanese gets no BERT, so it is accepted.
    assert preprocess("あ" * 600, "all_ja", "cut0")


def test_text_a_language_module_cannot_read_is_refused() -> None:
    # inflect cannot spell numbers this large; upstream crashes, we refuse.
    with pytest.raises(TextRejected):
        preprocess("1" * 200, "en")
