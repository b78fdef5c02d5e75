"""Property: arbitrary unicode never makes the frontend raise anything but TextRejected."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.text.cut import SPLITS
from app.engine.text.preprocess import (
    LANGUAGES,
    TextRejected,
    fold_repeated_punctuation,
    pre_segment,
    preprocess,
)

# Text that mixes the scripts the frontend knows with everything it does not: emoji, control
# characters, combining marks, private use, surrogates excluded (not encodable), long punctuation runs.
_PUNCTUATION = "，。？！,.?!~:：—…、;；-￥^\"'「」《》()（）\n\t "
_ALPHABETS = st.sampled_from(
    [
        "你好世界今天天气很好一二三",
        "こんにちはカタカナ漢字",
        "안녕하세요한국어",
        "Hello world ABC xyz",
        "0123456789%$€.",
        _PUNCTUATION,
        "😀🎉👍🏽\u200b\u200d\ufeff\u0301\u0000\u001b\x7f",
    ]
)
mixed_text = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.tuples(_ALPHABETS, st.integers(min_value=1, max_value=12)).flatmap(
            lambda pair: st.text(alphabet=pair[0], min_size=1, max_size=pair[1])
        ),
        max_size=8,
    ).map("".join),
    st.text(alphabet=_PUNCTUATION, max_size=40),
)
methods = st.sampled_from(["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"])


@settings(max_examples=300, deadline=None)
@given(text=mixed_text, lang=st.sampled_from(LANGUAGES), method=methods)
def test_pre_segment_only_refuses(text: str, lang: str, method: str) -> None:
    try:
        pieces = pre_segment(fold_repeated_punctuation(text), lang, method)
    except TextRejected:
        return
    # Inputs here are shorter than BERT's window, so no piece is split further: each one holds a word
    # character and ends with a sentence mark.
    for piece in pieces:
        assert re.sub(r"\W+", "", piece)
        assert piece[-1] in SPLITS


def test_symbols_and_emoji_only_are_refused() -> None:
    for text in ("😀🎉👍", "。。。！", "\u0000\u001b", "——……", ""):
        with pytest.raises(TextRejected):
            preprocess(text, "auto")


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=mixed_text,
    lang=st.sampled_from(LANGUAGES),
    method=methods,
    version=st.sampled_from(["v1", "v2"]),
)
def test_preprocess_only_refuses(text: str, lang: str, method: str, version: str) -> None:
    try:
        segments = preprocess(text, lang, method, version)
    except TextRejected:
        return
    assert segments
    for segment in segments:
        assert segment.norm_text
        assert len(segment.phone_ids) == len(segment.phones)
        if segment.word2ph is not None:
            assert sum(segment.word2ph) == len(segment.phones)
