"""Korean frontend against the golden corpus made by upstream GPT-SoVITS.

Every v2 lang_segment with lang "ko" is fed to our normalize + g2p. (v1 has no Korean module: upstream's
cleaner reads such pieces as the English text " ", so v1 "ko" pieces say nothing about this module and
are left out by that rule.) The golden phones are after upstream's cleaner, which turns any phone missing from the
version's symbol table into "UNK"; the test applies that same rule to our phones before comparing.
"""

from __future__ import annotations

import json

import pytest

from app.engine.text import ko
from tests.conftest import corpus_language_pieces, corpus_piece_texts


def _korean_segments() -> list[tuple[str, str, dict]]:
    # v1 has no Korean module: its cleaner reads such pieces as the English text " ".
    return corpus_language_pieces("ko", versions=("v2",))


SEGMENTS = _korean_segments()


@pytest.fixture(scope="module")
def symbol_tables(conformance) -> dict[str, frozenset[str]]:
    tables = json.loads((conformance / "text" / "symbols.json").read_text(encoding="utf-8"))
    return {"v2": frozenset(tables["v2"]["symbols"])}


def test_every_korean_piece_of_the_corpus_is_tested(conformance):
    """Every v2 "ko" piece the corpus holds (v1 ones are left out by rule, see above)."""
    tested = {(version, piece["text"]) for _, version, piece in SEGMENTS}
    assert tested, "the corpus has no v2 Korean piece to check"
    assert tested == corpus_piece_texts("ko", ("v2",))


@pytest.mark.conformance
@pytest.mark.parametrize(
    ("case_id", "version", "piece"), SEGMENTS, ids=[f"{c}:{p['text']}" for c, _, p in SEGMENTS]
)
def test_matches_upstream(case_id, version, piece, symbol_tables):
    norm_text = ko.normalize(piece["text"])
    assert norm_text == piece["norm_text"]
    known = symbol_tables[version]
    phones = [phone if phone in known else "UNK" for phone in ko.g2p(norm_text)]
    assert phones == piece["phones"]
