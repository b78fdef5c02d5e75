"""Japanese frontend against the golden corpus made by upstream GPT-SoVITS.

Every lang_segment with lang "ja" (v1 and v2: both use the same Japanese module) is fed to our
normalize + g2p. The golden phones are after upstream's cleaner, which turns any phone missing from the
version's symbol table into "UNK"; the test applies that same rule to our phones before comparing.
"""

from __future__ import annotations

import json

import pytest

from app.engine.text import ja
from tests.conftest import corpus_language_pieces, corpus_piece_texts


def _japanese_segments() -> list[tuple[str, str, dict]]:
    return corpus_language_pieces("ja")


SEGMENTS = _japanese_segments()


@pytest.fixture(scope="module")
def symbol_tables(conformance) -> dict[str, frozenset[str]]:
    tables = json.loads((conformance / "text" / "symbols.json").read_text(encoding="utf-8"))
    return {version: frozenset(tables[version]["symbols"]) for version in ("v1", "v2")}


def test_every_japanese_piece_of_the_corpus_is_tested(conformance):
    tested = {(version, piece["text"]) for _, version, piece in SEGMENTS}
    assert tested, "the corpus has no Japanese piece to check"
    assert tested == corpus_piece_texts("ja", ("v1", "v2"))


@pytest.mark.conformance
@pytest.mark.parametrize(
    ("case_id", "version", "piece"), SEGMENTS, ids=[f"{c}:{p['text']}" for c, _, p in SEGMENTS]
)
def test_matches_upstream(case_id, version, piece, symbol_tables):
    norm_text = ja.normalize(piece["text"])
    assert norm_text == piece["norm_text"]
    known = symbol_tables[version]
    phones = [phone if phone in known else "UNK" for phone in ja.g2p(norm_text)]
    assert phones == piece["phones"]
