"""`/to_cut` equals upstream on every case of the shared corpus (text/to_cut.jsonl)."""

import pytest

from app.engine.text.cut import to_cut
from tests.conftest import conformance_dir, read_jsonl

pytestmark = pytest.mark.conformance


def _cases():
    path = conformance_dir() / "text" / "to_cut.jsonl"
    return read_jsonl(path) if path.exists() else []


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_to_cut_matches_upstream(case):
    assert to_cut(case["input"], case["method_code"]) == case["output"]


def test_corpus_is_complete(conformance):
    cases = read_jsonl(conformance / "text" / "to_cut.jsonl")
    assert {c["method_code"] for c in cases} == {f"cut{i}" for i in range(6)}
