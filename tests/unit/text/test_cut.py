"""Cut methods on inputs whose answers follow from the rules (the corpus test covers upstream parity)."""

import pytest

from app.engine.text.cut import cut_text, split_big_text, split_sentences, to_cut


def test_split_sentences_keeps_marks_and_closes_the_last_sentence():
    assert split_sentences("a,b。c") == ["a,", "b。", "c。"]
    assert split_sentences("") == []


def test_four_sentences_per_piece_and_the_last_group_joins_its_predecessor():
    assert cut_text("1。2。3。4。5。6。7。8。9。", "cut1") == "1。2。3。4。\n5。6。7。8。9。"
    assert cut_text("1。2。3。", "cut1") == "1。2。3。"


def test_fifty_characters_piece_and_short_tail_merges():
    long = "字" * 49 + "，"
    out = cut_text(long * 3 + "短。", "cut2").split("\n")
    assert all(len(p) > 50 for p in out[:-1]) and out[-1].endswith("短。")


def test_english_full_stop_cut_keeps_decimals():
    assert cut_text("Pi is 3.14 today. Next.", "cut4") == "Pi is 3.14 today\n Next"


def test_punctuation_cut_keeps_marks_and_drops_mark_only_pieces():
    assert cut_text("a,b。。c", "cut5") == "a,\nb。\nc"


def test_no_cut_turns_filler_only_text_into_newline():
    assert cut_text("...", "cut0") == "\n" and cut_text("hi", "cut0") == "hi"


def test_unknown_method_raises_value_error():
    with pytest.raises(ValueError, match="cut0"):
        cut_text("x", "nope")


def test_to_cut_of_blank_is_empty():
    assert to_cut(" \n", "cut1") == ""


@pytest.mark.parametrize("method", ["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"])
def test_a_megabyte_of_text_is_handled(method):
    # Linear algorithms: a quadratic one would not finish this in any reasonable time.
    text = "今天天气很好，我们去公园。Then we go home. 3.5 km! " * 20_000
    assert len(text) > 1_000_000 // 2
    assert isinstance(cut_text(text, method), str)


def test_split_big_text_bounds_chunks_at_marks():
    text = ("句" * 100 + "。") * 20
    chunks = split_big_text(text, 510)
    assert "".join(chunks) == text
    assert all(len(c) <= 510 for c in chunks)
