"""Service-wide behaviour: error shape, request ids, probes, docs, enum spellings in OpenAPI."""

import json
import logging
import re

import pytest
from fastapi import APIRouter

from app.schemas.enums import CUT_METHOD_LABELS, LANGUAGE_LABELS


def test_every_response_carries_a_request_id(client):
    r = client.get("/healthz")
    assert len(r.headers["x-request-id"]) >= 16


def test_a_sane_client_request_id_is_echoed_and_logged(client, caplog):
    with caplog.at_level(logging.INFO):
        r = client.post("/to_cut", json={"text_inp": "x", "how_to_cut": "nope"}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["error"]["request_id"] == "abc-123"
    lines = [rec.getMessage() for rec in caplog.records if getattr(rec, "request_id", None) == "abc-123"]
    # One line per request, saying what was refused and why.
    assert len(lines) == 1, lines
    assert "POST /to_cut -> 422" in lines[0] and "validation_error" in lines[0]


def test_an_unsafe_client_request_id_is_replaced(client):
    r = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


def test_unknown_route_uses_the_error_shape(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_wrong_method_uses_the_error_shape(client):
    r = client.get("/to_cut")
    assert r.status_code == 405
    assert set(r.json()["error"]) >= {"code", "message", "request_id"}


def test_invalid_json_is_422_not_500(client):
    r = client.post("/to_cut", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_unhandled_errors_become_500_without_a_stack_trace(client):
    router = APIRouter()

    @router.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    client.app.include_router(router)
    r = client.get("/boom")
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["code"] == "internal_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    assert body["request_id"] == r.headers["x-request-id"]


def test_healthz_and_readyz_without_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")  # the weights root is empty: nothing could be synthesised
    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    assert "no model selected" in " ".join(ready.json()["problems"])


def test_readyz_is_503_when_the_weights_root_is_missing(make_client, weights_root):
    weights_root.rmdir()
    r = make_client().get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "not_ready" and r.json()["problems"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_render_offline(client, page):
    """Every script, style sheet and icon the docs page references is served by the service itself
    (no CDN), so the page renders on a machine without internet access."""
    html = client.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    assets += re.findall(r"""url:\s*["']([^"']+)["']""", html.text)  # Swagger UI's spec address
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert "://" not in asset and not asset.startswith("//"), f"{page} loads {asset} from elsewhere"
        r = client.get(asset)
        assert r.status_code == 200 and r.content, asset
    assert client.get("/openapi.json").status_code == 200


def test_openapi_lists_both_spellings_of_cut_methods(client):
    schema = client.get("/openapi.json").json()
    text = str(schema)
    for label, code in CUT_METHOD_LABELS.items():
        assert label in text and code in text


def test_language_enum_has_both_spellings():
    from typing import get_args

    from app.schemas.enums import LanguageSpelling

    assert set(get_args(LanguageSpelling)) == set(LANGUAGE_LABELS) | set(LANGUAGE_LABELS.values())


def test_every_operation_documents_an_example(client):
    schema = client.get("/openapi.json").json()
    components = schema.get("components", {}).get("schemas", {})

    def has_example(ref_or_schema):
        if not ref_or_schema:
            return False
        if "$ref" in ref_or_schema:
            target = components[ref_or_schema["$ref"].split("/")[-1]]
            return has_example(target)
        if "examples" in ref_or_schema or "example" in ref_or_schema:
            return True
        if any(has_example(part) for key in ("allOf", "anyOf", "oneOf") for part in ref_or_schema.get(key, [])):
            return True
        return any("examples" in p or "example" in p for p in ref_or_schema.get("properties", {}).values())

    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {})
            if not body and "204" in op.get("responses", {}):  # nothing goes either way to show
                continue
            ok = op.get("responses", {}).get("200", {}).get("content", {})
            schemas = [c.get("schema") for c in list(body.values()) + list(ok.values())]
            assert any(has_example(s) for s in schemas), f"{method.upper()} {path} has no example"


@pytest.mark.parametrize("path", ["/to_cut", "/change_choices"])
def test_upstream_endpoints_are_post(client, path):
    schema = client.get("/openapi.json").json()
    assert "post" in schema["paths"][path]


# Every string field of every JSON body. A lone surrogate is valid JSON but not text.
JSON_STRING_FIELDS = [
    ("/to_cut", {"text_inp": "a", "how_to_cut": "cut1"}, "text_inp"),
    ("/to_cut", {"text_inp": "a", "how_to_cut": "cut1"}, "how_to_cut"),
    ("/phonemize", {"text": "a", "text_lang": "zh"}, "text"),
    ("/phonemize", {"text": "a", "text_lang": "zh"}, "text_lang"),
    ("/phonemize", {"text": "a", "text_lang": "zh"}, "text_split_method"),
    ("/phonemize", {"text": "a", "text_lang": "zh"}, "version"),
    ("/init_t2s_weights", {}, "weights_path"),
    ("/change_sovits_weights", {}, "sovits_path"),
    ("/change_sovits_weights", {"sovits_path": "x.pth"}, "prompt_language"),
    ("/change_sovits_weights", {"sovits_path": "x.pth"}, "text_language"),
    ("/stop", {}, "request_id"),
]


@pytest.mark.parametrize(("path", "base", "field"), JSON_STRING_FIELDS, ids=lambda v: v if isinstance(v, str) else "")
def test_lone_surrogates_are_422_in_every_json_field(client, path, base, field):
    body = json.dumps({**base, field: "ok \ud800 then"})  # ensure_ascii: the JSON escape \ud800
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error" and field in error["message"]


def test_request_models_all_refuse_invalid_unicode():
    """Each body model the routes accept derives from RequestModel (so the rule cannot be forgotten)."""
    from app.main import create_app
    from app.schemas.base import RequestModel

    app = create_app()
    bodies = [
        route.body_field.field_info.annotation if route.body_field else None
        for route in app.routes
        if getattr(route, "body_field", None) is not None
    ]
    for model in bodies:
        for candidate in getattr(model, "__args__", (model,)):
            if isinstance(candidate, type) and candidate.__module__.startswith("app."):
                assert issubclass(candidate, RequestModel), candidate


def test_json_that_is_not_utf8_is_422(client):
    r = client.post("/to_cut", content=b'{"text_inp": "\xff\xfe", "how_to_cut": "cut1"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_unicode"
