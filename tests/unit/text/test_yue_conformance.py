"""Cantonese frontend against the golden corpus made by upstream GPT-SoVITS.

Every lang_segment with lang "yue" (v2 only: v1 has none) is checked in two steps: g2p on the golden
norm_text (phones and word2ph), and normalize on the golden input text. The golden phones are after
upstream's cleaner, which turns any phone missing from the v2 symbol table into "UNK"; the test applies
that same rule to our phones before comparing.
"""

from __future__ import annotations

import json

import pytest

from app.engine.text import yue
from tests.conftest import corpus_language_pieces, corpus_piece_texts

PIECES = corpus_language_pieces("yue")  # (case id, version, piece)
SEGMENTS = [(case_id, piece) for case_id, _, piece in PIECES]
IDS = [f"{case_id}:{piece['text']}" for case_id, piece in SEGMENTS]


@pytest.fixture(scope="module")
def v2_symbols(conformance) -> frozenset[str]:
    tables = json.loads((conformance / "text" / "symbols.json").read_text(encoding="utf-8"))
    return frozenset(tables["v2"]["symbols"])


def test_every_cantonese_piece_of_the_corpus_is_tested(conformance):
    tested = {(version, piece["text"]) for _, version, piece in PIECES}
    assert tested, "the corpus has no Cantonese piece to check"
    assert tested == corpus_piece_texts("yue", ("v1", "v2"))


@pytest.mark.conformance
@pytest.mark.parametrize(("case_id", "piece"), SEGMENTS, ids=IDS)
def test_g2p_matches_upstream(case_id, piece, v2_symbols):
    phones, word2ph = yue.g2p(piece["norm_text"])
    assert [phone if phone in v2_symbols else "UNK" for phone in phones] == piece["phones"]
    assert word2ph == piece["word2ph"]


@pytest.mark.conformance
@pytest.mark.parametrize(("case_id", "piece"), SEGMENTS, ids=IDS)
def test_normalize_matches_upstream(case_id, piece):
    assert yue.normalize(piece["text"]) == piece["norm_text"]
