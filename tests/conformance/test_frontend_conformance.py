"""The text frontend equals upstream's TextPreprocessor.preprocess on the shared corpus (frontend.jsonl).

Per case: identical cut pieces (pre_seg), and per segment identical text, norm_text, phones, phone ids,
word2ph, "." retry flag and language parts. Where the reference raised, we refuse with TextRejected;
where it returned no segment at all, we refuse too (the product does not synthesise silence).

Cases that read English are skipped only without NLTK's tagger (the service then degrades on
purpose). The match rate per version/language is printed at the end of the module.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from app.engine.text.preprocess import (
    Segment,
    TextRejected,
    fold_repeated_punctuation,
    pre_segment,
    preprocess,
)
from tests.conftest import conformance_dir, english_parity_skip_reason, read_jsonl

pytestmark = pytest.mark.conformance

# "version/lang" -> [cases matched, cases run]
_RATES: dict[str, list[int]] = defaultdict(lambda: [0, 0])


def _cases() -> list[dict]:
    path = conformance_dir() / "text" / "frontend.jsonl"
    return read_jsonl(path) if path.exists() else []


def _known_english_miss(case: dict) -> str | None:
    """Why the case is expected to differ, for the English dictionary-edition misses documented by the
    English module's own conformance test (a rule on the words its English parts read), or None."""
    from tests.unit.text.test_en_conformance import dictionary_edition_miss

    english = [
        part for seg in case["segments"] or [] for part in seg["lang_segments"] if part["lang"] == "en"
    ]
    reasons = [reason for part in english if (reason := dictionary_edition_miss(part["norm_text"]))]
    return "; ".join(reasons) or None


def _frontend_params() -> list:
    params = []
    for case in _cases():
        marks = []
        if miss := _known_english_miss(case):
            marks.append(pytest.mark.xfail(reason=f"English dictionary edition: {miss}", strict=True))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


def _needed_languages(case: dict) -> set[str]:
    needed = {part["lang"] for seg in case["segments"] or [] for part in seg["lang_segments"]}
    if "yue" in needed:
        needed.add("zh")  # Cantonese normalisation reuses the Mandarin one
    if case["version"] == "v1":
        needed.add("en")  # v1 reads languages it does not know (Korean, Cantonese) as English
    if not case["segments"]:
        needed |= {"zh", "en"}  # nothing recorded: the text may still be read before it is dropped
    return needed


def _as_golden(segment: Segment) -> dict:
    return {
        "text": segment.text,
        "norm_text": segment.norm_text,
        "phones": segment.phones,
        "phone_ids": segment.phone_ids,
        "word2ph": segment.word2ph,
        "bert_shape": [1024, len(segment.phones)],
        "retried_with_dot_prefix": segment.retried_with_dot_prefix,
        "lang_segments": [
            {
                "lang": part.lang,
                "text": part.text,
                "norm_text": part.norm_text,
                "phones": part.phones,
                "phone_ids": part.phone_ids,
                "word2ph": part.word2ph,
                "bert_shape": [1024, len(part.phones)],
                "bert_kind": part.bert_kind,
            }
            for part in segment.lang_segments
        ],
    }


@pytest.fixture(scope="module", autouse=True)
def _report_match_rate(request: pytest.FixtureRequest):
    yield
    if not _RATES:
        return
    lines = ["", "frontend conformance match rate (version/lang: matched/run):"]
    for key in sorted(_RATES):
        matched, run = _RATES[key]
        lines.append(f"  {key:14s} {matched:3d}/{run:<3d} ({100 * matched / run:.0f}%)")
    # Output capture would swallow the summary; suspend it for these lines.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_pre_seg_matches_upstream(case: dict) -> None:
    """The cutting stage needs no language module, so it runs for every case."""
    text, lang, method = fold_repeated_punctuation(case["text"]), case["lang"], case["text_split_method"]
    if case.get("error"):
        with pytest.raises(TextRejected):
            pre_segment(text, lang, method)
    else:
        assert pre_segment(text, lang, method) == case["pre_seg"]


@pytest.mark.parametrize("case", _frontend_params())
def test_frontend_matches_upstream(case: dict) -> None:
    if "en" in _needed_languages(case) and (reason := english_parity_skip_reason()):
        pytest.skip(reason)

    rate = _RATES[f"{case['version']}/{case['lang']}"]
    rate[1] += 1
    text, lang, method, version = case["text"], case["lang"], case["text_split_method"], case["version"]

    if case.get("error"):
        with pytest.raises(TextRejected):
            preprocess(text, lang, method, version)
        rate[0] += 1
        return

    assert pre_segment(fold_repeated_punctuation(text), lang, method) == case["pre_seg"]
    if not case["segments"]:
        with pytest.raises(TextRejected):
            preprocess(text, lang, method, version)
        rate[0] += 1
        return

    got = [_as_golden(segment) for segment in preprocess(text, lang, method, version)]
    assert got == case["segments"]
    rate[0] += 1


def test_corpus_covers_every_language_code(conformance) -> None:
    from app.engine.text.preprocess import LANGUAGES

    cases = read_jsonl(conformance / "text" / "frontend.jsonl")
    assert {c["lang"] for c in cases} == set(LANGUAGES)
