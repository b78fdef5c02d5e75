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
from tests.conftest import conformance_dir, read_jsonl

_CLEANER_PAUSE_MARKS = ("￥", "^")


def _mandarin_segments() -> list[tuple[str, str, dict]]:
    path = conformance_dir() / "text" / "frontend.jsonl"
    if not path.is_file():
        return []
    found: dict[tuple[str, str], tuple[str, str, dict]] = {}
    for case in read_jsonl(path):
        for segment in case.get("segments") or []:
            for piece in segment["lang_segments"]:
                if piece["lang"] != "zh" or any(mark in piece["text"] for mark in _CLEANER_PAUSE_MARKS):
                    continue
                found.setdefault((case["version"], piece["text"]), (case["id"], case["version"], piece))
    return list(found.values())


SEGMENTS = _mandarin_segments()


def test_corpus_has_mandarin_segments_of_both_versions():
    versions = {version for _, version, _ in SEGMENTS}
    assert len(SEGMENTS) >= 100 and versions == {"v1", "v2"}


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
