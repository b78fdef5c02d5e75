import pytest

from app.schemas.enums import CUT_METHOD_LABELS


@pytest.mark.parametrize("label,code", list(CUT_METHOD_LABELS.items()))
def test_label_and_code_spellings_give_the_same_answer(client, label, code):
    text = "第一句。第二句，还有。Third one. 3.14 stays. 最后一句！再来一句？五。六。"
    by_label = client.post("/to_cut", json={"text_inp": text, "how_to_cut": label})
    by_code = client.post("/to_cut", json={"text_inp": text, "how_to_cut": code})
    assert by_label.status_code == by_code.status_code == 200
    assert by_label.json() == by_code.json()


def test_cuts_by_chinese_full_stop(client):
    r = client.post("/to_cut", json={"text_inp": "你好。世界。", "how_to_cut": "按中文句号。切"})
    assert r.json() == {"text": "你好\n世界"}


def test_default_method_is_four_sentences(client):
    text = "一。二。三。四。五。六。七。八。九。"
    default = client.post("/to_cut", json={"text_inp": text}).json()
    explicit = client.post("/to_cut", json={"text_inp": text, "how_to_cut": "cut1"}).json()
    assert default == explicit and default["text"].count("\n") == 1


def test_blank_text_gives_empty_text(client):
    assert client.post("/to_cut", json={"text_inp": "  \n ", "how_to_cut": "cut5"}).json() == {"text": ""}


def test_unknown_method_is_422_naming_accepted_values(client):
    r = client.post("/to_cut", json={"text_inp": "x", "how_to_cut": "cut9"})
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["code"] == "validation_error"
    for spelling in ("凑四句一切", "cut0", "cut5", "按标点符号切"):
        assert spelling in body["message"]


@pytest.mark.parametrize("payload", [{}, {"how_to_cut": "cut1"}, {"text_inp": 5}, {"text_inp": None}])
def test_malformed_bodies_are_422(client, payload):
    r = client.post("/to_cut", json=payload)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


def test_text_over_the_limit_is_413(make_client):
    client = make_client(max_text_chars=1000)
    r = client.post("/to_cut", json={"text_inp": "好" * 1001, "how_to_cut": "cut1"})
    assert r.status_code == 413
    assert "1000" in r.json()["error"]["message"]


def test_one_megabyte_of_text_is_refused_cleanly_with_default_limits(client):
    r = client.post("/to_cut", json={"text_inp": "今天天气很好，" * 150_000, "how_to_cut": "cut2"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_body_larger_than_the_body_limit_is_413(make_client):
    client = make_client(max_body_bytes=2048)
    r = client.post("/to_cut", json={"text_inp": "a" * 5000, "how_to_cut": "cut0"})
    assert r.status_code == 413
