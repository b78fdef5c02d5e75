"""Mandarin frontend against the golden corpus made by upstream GPT-SoVITS (g2pW off).

Every lang_segment with lang "zh" gives (text, norm_text, phones, word2ph) for its case's version;
we run normalize + g2p on the text and compare all three exactly.

Left out, by rule: pieces containing "￥" or "^". Upstream's cleaner turns those marks into pauses
(SP2/SP3) before the language module sees the text, so the golden values are the cleaner's, not this
module's (tests of the cleaner cover them). Golden phones have also been through the cleaner's
"unknown phone -> UNK" mapping; the Mandarin module only produces known phones, so no case needs it.
"""

from __future__ import annotations

import pytest

from app.engine.text import zh
from tests.conftest import corpus_language_pieces, corpus_piece_texts

_CLEANER_PAUSE_MARKS = ("￥", "^")


def _mandarin_segments() -> list[tuple[str, str, dict]]:
    # Pieces with the cleaner's pause marks are the cleaner's business (tested there), not zh's.
    return [
        item for item in corpus_language_pieces("zh") if not any(mark in item[2]["text"] for mark in _CLEANER_PAUSE_MARKS)
    ]


SEGMENTS = _mandarin_segments()


def test_every_mandarin_piece_of_the_corpus_is_tested(conformance):
    """Every v1 and v2 "zh" piece the corpus holds, less those the pause-mark rule leaves out."""
    expected = {
        (version, text)
        for version, text in corpus_piece_texts("zh", ("v1", "v2"))
        if not any(mark in text for mark in _CLEANER_PAUSE_MARKS)
    }
    tested = {(version, piece["text"]) for _, version, piece in SEGMENTS}
    assert tested, "the corpus has no Mandarin piece to check"
    assert tested == expected


@pytest.mark.conformance
@pytest.mark.parametrize(
    ("case_id", "version", "piece"), SEGMENTS, ids=[f"{c}:{p['text']}" for c, _, p in SEGMENTS]
)
def test_matches_upstream(case_id, version, piece):
    norm_text = zh.normalize(piece["text"])
    assert norm_text == piece["norm_text"]
    phones, word2ph = zh.g2p(norm_text, version=version)
    assert phones == piece["phones"]
    assert word2ph == piece["word2ph"]
