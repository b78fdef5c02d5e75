import pytest

from app.engine.text.symbols import phones_to_ids
from tests.conftest import conformance_dir, read_jsonl


def test_chinese_text_gives_phones_ids_and_parts(client):
    r = client.post("/phonemize", json={"text": "我今年25岁。", "text_lang": "中文"})
    assert r.status_code == 200
    (segment,) = r.json()["segments"]
    assert "二十五" in segment["norm_text"]
    assert segment["lang"] == "zh"
    assert segment["phone_ids"] == phones_to_ids(segment["phones"], "v2")
    assert sum(segment["parts"][0]["word2ph"]) == len(segment["phones"])


def test_mixed_text_has_one_part_per_language(client):
    r = client.post("/phonemize", json={"text": "我喜欢Python编程。", "text_lang": "zh", "text_split_method": "cut0"})
    (segment,) = r.json()["segments"]
    assert [p["lang"] for p in segment["parts"]] == ["zh", "en", "zh"]
    assert segment["lang"] == "zh+en"


def test_label_and_code_spellings_agree(client):
    body = {"text": "Hello there. How are you today? Fine.", "text_split_method": "cut4"}
    by_label = client.post("/phonemize", json={**body, "text_lang": "英文"}).json()
    by_code = client.post("/phonemize", json={**body, "text_lang": "en"}).json()
    assert by_label == by_code and len(by_code["segments"]) >= 1


def test_v1_uses_the_v1_symbol_table(client):
    v1 = client.post("/phonemize", json={"text": "你好世界。", "text_lang": "all_zh", "version": "v1"}).json()
    v2 = client.post("/phonemize", json={"text": "你好世界。", "text_lang": "all_zh", "version": "v2"}).json()
    seg1, seg2 = v1["segments"][0], v2["segments"][0]
    assert seg1["phone_ids"] == phones_to_ids(seg1["phones"], "v1")
    assert seg2["phone_ids"] == phones_to_ids(seg2["phones"], "v2")
    assert max(seg1["phone_ids"]) < 322


@pytest.mark.parametrize("text", ["", "。。。", "!!!???", "   "])
def test_nothing_speakable_is_422(client, text):
    r = client.post("/phonemize", json={"text": text, "text_lang": "en"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] in ("no_speakable_text", "validation_error")


def test_language_missing_from_v1_is_422(client):
    r = client.post("/phonemize", json={"text": "안녕하세요", "text_lang": "韩文", "version": "v1"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "language_not_supported"


@pytest.mark.parametrize(
    "payload",
    [{"text": "x", "version": "v3"}, {"text": "x", "text_lang": "klingon"}, {"text": "x", "text_split_method": "cut7"}, {}],
)
def test_bad_enumerations_are_422(client, payload):
    assert client.post("/phonemize", json=payload).status_code == 422


def test_too_long_text_is_413(make_client):
    assert make_client(max_text_chars=10).post("/phonemize", json={"text": "a" * 11}).status_code == 413


def _one_case_per_language():
    path = conformance_dir() / "text" / "frontend.jsonl"
    if not path.exists():
        return []
    chosen = {}
    for case in read_jsonl(path):
        if case.get("segments") and len(case["segments"]) > 1:
            chosen.setdefault((case["lang"], case["version"]), case)
    return list(chosen.values())


@pytest.mark.conformance
@pytest.mark.parametrize("case", _one_case_per_language(), ids=lambda c: c["id"])
def test_endpoint_serves_what_upstream_computes(client, case):
    r = client.post(
        "/phonemize",
        json={"text": case["text"], "text_lang": case["lang"], "text_split_method": case["text_split_method"], "version": case["version"]},
    )
    if r.status_code == 200:
        got = [(s["norm_text"], s["phones"], s["phone_ids"]) for s in r.json()["segments"]]
        want = [(s["norm_text"], s["phones"], s["phone_ids"]) for s in case["segments"]]
        if got != want:
            pytest.xfail("frontend mismatch; tests/conformance/test_frontend_conformance.py reports the cause")
    assert r.status_code == 200
