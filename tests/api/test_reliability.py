"""Reliability corpus: bad inputs over every endpoint, each refused quickly with a 4xx and the error shape.

Each case is one request the service must refuse: never a 5xx, never a 2xx, always
``{"error": {"code", "message", "request_id"}}`` (non-empty message, the request id also in the
``X-Request-ID`` header) and within :data:`DEADLINE_S`. The table is :data:`CASES`: a readable id, the
method and path, a builder of the request (``client.request`` keyword arguments; bodies are written by
hand so the bytes are exactly those listed), the statuses accepted, and which client sends it.

Requests run against demo weights (random models, ``app.demo``) so that /inference reaches its
reference-clip and model checks. Every /inference case starts from a request that is accepted (checked by
:func:`test_the_baselines_are_accepted`) and breaks one thing, so a case that answers 200 shows the
service took that one bad thing; the text is tiny so that costs about a second.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.demo import write_demo_weights
from app.engine.jobs import PARAMETER_BOUNDS, SAMPLE_STEPS
from app.main import create_app
from app.settings import Settings

DEADLINE_S = 5.0  # seconds one bad request may take, at most
V1_GPT, V1_SOVITS = "GPT_weights/demo_v1-e15.ckpt", "SoVITS_weights/demo_v1_e8_s200.pth"
V2_GPT, V2_SOVITS = "GPT_weights_v2/demo_v2-e15.ckpt", "SoVITS_weights_v2/demo_v2_e8_s200.pth"
# Symlinks planted in the demo root, pointing out of it.
EVIL_GPT, EVIL_SOVITS = "GPT_weights_v2/evil-e15.ckpt", "SoVITS_weights_v2/evil_e8_s200.pth"
SMALL_TEXT_CHARS = 50  # max_text_chars of the "small" client
MIB = 1024 * 1024
DEFAULT_MAX_BODY = Settings.model_fields["max_body_bytes"].default
DEFAULT_MAX_TEXT = Settings.model_fields["max_text_chars"].default
ANY_4XX = tuple(range(400, 500))
SANE_REQUEST_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


@dataclass(frozen=True)
class Ctx:
    """Paths known only once the fixtures have made them."""

    demo_root: Path
    ref_root: Path


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    build: Callable[[Ctx], dict[str, Any]]  # client.request keyword arguments
    expect: tuple[int, ...] = ANY_4XX
    client: str = "demo"  # "demo", "small" (low text limit) or "refroot" (GSV_REF_AUDIO_ROOT set)
    check: Callable[[Any], str | None] | None = None  # an extra problem to report, or None


# --------------------------------------------------------------------------------------------- bodies


def raw(body: bytes | str, content_type: str | None = "application/json", **headers: Any) -> dict[str, Any]:
    if content_type is not None:
        headers["content-type"] = content_type
    return {"content": body.encode() if isinstance(body, str) else body, "headers": headers}


def js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_object(fields: dict[str, Any], field: str | None = None, literal: str | None = None) -> str:
    """``fields`` as JSON source, with ``field``'s value replaced by the raw JSON ``literal``."""
    items = dict(fields)
    if field is not None:
        items[field] = None
    return "{" + ", ".join(f"{js(k)}: {literal if k == field else js(v)}" for k, v in items.items()) + "}"


def wav_file(rate: int, samples: bytes, *, fmt: int = 1, bits: int = 16, channels: int = 1) -> bytes:
    """A RIFF/WAVE file written by hand (rate, format tag and sample bytes exactly as given)."""
    block = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block % 2**32, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def pcm16(seconds: float, rate: int = 16000) -> bytes:
    return wav_file(rate, (tone(seconds, rate) * 32767).astype("<i2").tobytes())


def float_wav(seconds: float, rate: int, poison: float) -> bytes:
    """IEEE float WAV (format 3) whose samples include ``poison`` (NaN or an infinity)."""
    samples = tone(seconds, rate)
    samples[:: rate // 10] = poison
    return wav_file(rate, samples.astype("<f4").tobytes(), fmt=3, bits=32)


REF = pcm16(4.0)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
NOISE = np.random.default_rng(0).bytes(64 * 1024)
SURROGATE = "\\ud800"  # a lone surrogate, as JSON writes it
SURROGATE_BYTES = "\ud800".encode("utf-8", "surrogatepass")  # b"\xed\xa0\x80", as a careless encoder writes it
BAD_UTF8 = b"\xff\xfe"
BOUNDARY = "reliability-7f3a9c"
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"

FORM = {
    "text": "你好。",
    "text_lang": "all_zh",
    "prompt_text": "这是参考音频。",
    "prompt_lang": "all_zh",
    "text_split_method": "cut1",
    "batch_size": "1",
    "seed": "1",
    "keep_random": "false",
    "gpt_weights": V2_GPT,
    "sovits_weights": V2_SOVITS,
}
MAIN_REF = ("ref_audio_path", "ref.wav", REF, "audio/wav")


def multipart(fields: dict[str, str | bytes], files: list[tuple[str, str, bytes, str]], boundary: str = BOUNDARY) -> bytes:
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    for name, filename, data, content_type in files:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        out += f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
    return bytes(out + f"--{boundary}--\r\n".encode())


def form_body(files: list[tuple[str, str, bytes, str]] | None = None, **overrides: str | bytes | None) -> bytes:
    """The baseline /inference form with ``overrides`` (None drops a field) and ``files`` (default: REF)."""
    fields = {k: v for k, v in {**FORM, **overrides}.items() if v is not None}
    return multipart(fields, [MAIN_REF] if files is None else files)


def inference(files: list[tuple[str, str, bytes, str]] | None = None, **overrides: str | bytes | None):
    """A builder of an /inference request: the baseline form with one thing changed."""
    return lambda ctx: raw(form_body(files, **overrides), MULTIPART_TYPE)


# ------------------------------------------------------------------------------------------- the corpus

CASES: list[Case] = []


def add(id: str, method: str, path: str, build=lambda ctx: {}, expect=ANY_4XX, **kw: Any) -> None:
    CASES.append(Case(id, method, path, build, tuple(expect), **kw))


def add_json(endpoint: str, label: str, body: bytes | str, expect=(422,), content_type="application/json", **kw):
    add(f"{endpoint.strip('/')}-{label}", "POST", endpoint, lambda ctx: raw(body, content_type), expect, **kw)


def add_form(label: str, expect=(422,), files=None, client: str = "demo", **overrides: str | bytes | None):
    add(f"inference-{label}", "POST", "/inference", inference(files, **overrides), expect, client=client)


# A body each JSON endpoint accepts (checked by test_the_baselines_are_accepted), and its string fields.
JSON_BASE: dict[str, dict[str, str]] = {
    "/to_cut": {"text_inp": "你好。", "how_to_cut": "cut1"},
    "/phonemize": {"text": "你好。", "text_lang": "all_zh", "text_split_method": "cut1", "version": "v2"},
    "/init_t2s_weights": {"weights_path": V2_GPT},
    "/change_sovits_weights": {"sovits_path": V2_SOVITS, "prompt_language": "all_zh", "text_language": "en"},
    "/stop": {"request_id": "nobody-here"},
}
FIRST_FIELD = {endpoint: next(iter(fields)) for endpoint, fields in JSON_BASE.items()}

# Lone surrogates in every string field of every JSON endpoint.
for endpoint, fields in JSON_BASE.items():
    for field in fields:
        add_json(endpoint, f"{field}-lone-surrogate", json_object(fields, field, f'"{SURROGATE}"'))
    first = FIRST_FIELD[endpoint]
    add_json(endpoint, f"{first}-surrogate-inside-text", json_object(fields, first, '"ab\\udfffcd"'))

# Broken JSON documents, per endpoint.
for endpoint, fields in JSON_BASE.items():
    first, valid = FIRST_FIELD[endpoint], json_object(fields)
    add_json(endpoint, "invalid-utf8-bytes", json_object(fields, first, '"x"').encode().replace(b'"x"', b'"' + BAD_UTF8 + b'"'))
    add_json(endpoint, "truncated-json", valid[: len(valid) // 2])
    add_json(endpoint, "json-list", f"[{valid}]")
    add_json(endpoint, "json-number", "42")
    add_json(endpoint, "json-string", js("text"))
    if endpoint != "/stop":  # /stop's body is optional: null is no body, "cancel all" (upstream's /stop)
        add_json(endpoint, "json-null", "null")
    add_json(endpoint, "nan-literal", json_object(fields, first, "NaN"))
    add_json(endpoint, "infinity-literal", json_object(fields, first, "Infinity"))
    add_json(endpoint, "float-1e309", json_object(fields, first, "1e309"))
    add_json(endpoint, "int-10e400", json_object(fields, first, "1" + "0" * 400))
    add_json(endpoint, "list-for-string", json_object(fields, first, '["a"]'))
    add_json(endpoint, "object-for-string", json_object(fields, first, '{"a": 1}'))
    add_json(endpoint, "bool-for-string", json_object(fields, first, "true"))
    add_json(endpoint, "form-urlencoded", f"{first}=x", (415, 422), "application/x-www-form-urlencoded")
    add_json(endpoint, "multipart-form", multipart({first: "x"}, []), (415, 422), MULTIPART_TYPE)
    add_json(endpoint, "text-plain", valid, (415, 422), "text/plain")
    add_json(endpoint, "no-content-type", valid, (415, 422), None)
    if endpoint != "/stop":  # /stop's body is optional: an empty one cancels everything, by design
        add_json(endpoint, "empty-body", b"")
add_json("/to_cut", "float-minus-1e308", json_object(JSON_BASE["/to_cut"], "text_inp", "-1e308"))
add_json("/to_cut", "int-5000-digits", json_object(JSON_BASE["/to_cut"], "text_inp", "1" + "0" * 5000))
add_json("/stop", "int-5000-digits", json_object(JSON_BASE["/stop"], "request_id", "1" + "0" * 5000))
add_json("/stop", "minus-infinity-literal", json_object(JSON_BASE["/stop"], "request_id", "-Infinity"))
add_json("/to_cut", "nested-100000-deep", "[" * 100_000 + "]" * 100_000)
add_json("/to_cut", "text_inp-nested-100000-deep", '{"text_inp": ' + "[" * 100_000 + "]" * 100_000 + "}")

# Text that is empty, blank or too long; unknown enumerations.
for label, text in [("empty", ""), ("spaces", "   "), ("newlines-tabs", "\n\t\n"), ("ideographic-space", "\u3000"),
                    ("zero-width-space", "\u200b\u200b")]:  # fmt: skip
    add_json("/phonemize", f"text-{label}", json_object({**JSON_BASE["/phonemize"], "text": text}))
    add_form(f"text-{label}", text=text)
add_form("text-missing", text=None)
add_form("prompt_text-spaces-only", prompt_text="   ")
add_form("prompt_text-ideographic-spaces-only", prompt_text="\u3000\u3000")
add_json("/to_cut", "text_inp-over-max_text_chars", js({"text_inp": "x" * (DEFAULT_MAX_TEXT + 1)}), (413,))
add_json("/to_cut", "text_inp-over-max_text_chars-cjk", js({"text_inp": "你" * (DEFAULT_MAX_TEXT + 1)}), (413,))
add_json("/phonemize", "text-over-max_text_chars", js({"text": "x" * (DEFAULT_MAX_TEXT + 1)}), (413,))
add_form("text-over-max_text_chars", (413,), text="x" * (DEFAULT_MAX_TEXT + 1))
add_form("text-1.5MB-form-field", (400, 413), text="x" * (3 * MIB // 2))
add_form("prompt_text-over-max_text_chars", (413,), client="small", prompt_text="这" * (SMALL_TEXT_CHARS + 1))
add_form("text-over-max_text_chars-small", (413,), client="small", text="你" * (SMALL_TEXT_CHARS + 1))
add_json("/to_cut", "text_inp-missing", js({"how_to_cut": "cut1"}))
add_json("/phonemize", "text-missing", js({"text_lang": "all_zh"}))
add_json("/init_t2s_weights", "weights_path-missing", "{}")
add_json("/change_sovits_weights", "sovits_path-missing", js({"prompt_language": "all_zh"}))
for label, value in [("cut6", "cut6"), ("uppercase-CUT1", "CUT1"), ("empty", ""), ("label-with-space", "凑四句一切 ")]:
    add_json("/to_cut", f"how_to_cut-{label}", json_object({**JSON_BASE["/to_cut"], "how_to_cut": value}))
add_json("/phonemize", "text_split_method-cut9", json_object({**JSON_BASE["/phonemize"], "text_split_method": "cut9"}))
for label, value in [("klingon", "Klingon"), ("uppercase-ZH", "ZH"), ("empty", ""), ("label-with-space", "中文 ")]:
    add_json("/phonemize", f"text_lang-{label}", json_object({**JSON_BASE["/phonemize"], "text_lang": value}))
for value in ("v3", "v2Pro", "V2"):
    add_json("/phonemize", f"version-{value}", json_object({**JSON_BASE["/phonemize"], "version": value}))
for field in ("prompt_language", "text_language"):
    add_json("/change_sovits_weights", f"{field}-klingon", json_object({**JSON_BASE["/change_sovits_weights"], field: "xx"}))
for field in ("text_lang", "prompt_lang"):
    add_form(f"{field}-klingon", **{field: "Klingon"})
    add_form(f"{field}-label-with-space", **{field: "中文 "})
add_form("text_split_method-cut6", text_split_method="cut6")
add_form("korean-text-for-a-v1-model", text="안녕하세요", text_lang="all_ko", gpt_weights=V1_GPT, sovits_weights=V1_SOVITS)

# Numeric form fields: NaN and infinities, beyond each bound, huge and malformed numbers.
INT_FIELDS = ("top_k", "batch_size", "seed", "sample_steps", "streaming_mode", "overlap_length", "min_chunk_length")
FLOAT_FIELDS = ("top_p", "temperature", "speed_factor", "fragment_interval", "repetition_penalty")
for field in INT_FIELDS + FLOAT_FIELDS:
    for value in ("nan", "inf", "-inf"):
        add_form(f"{field}-{value}", **{field: value})
    add_form(f"{field}-10e400", **{field: "1" + "0" * 400})
    add_form(f"{field}-not-a-number", **{field: "abc"})
for field in FLOAT_FIELDS:
    add_form(f"{field}-1e309", **{field: "1e309"})
    add_form(f"{field}-minus-1e308", **{field: "-1e308"})
for field in ("top_k", "batch_size", "seed", "streaming_mode", "min_chunk_length"):
    add_form(f"{field}-fraction", **{field: "1.5"})
add_form("seed-5000-digits", seed="1" + "0" * 5000)
for field, bounds in PARAMETER_BOUNDS.items():
    if field == "batch_threshold":  # not a form field
        continue
    step = 1 if field in INT_FIELDS else 0.01
    fmt = (lambda v: str(int(v))) if field in INT_FIELDS else (lambda v: f"{v:.4g}")
    if bounds.low_exclusive:
        add_form(f"{field}-at-exclusive-low-{fmt(bounds.low)}", **{field: fmt(bounds.low)})
    add_form(f"{field}-below-low-{fmt(bounds.low - step)}", **{field: fmt(bounds.low - step)})
    add_form(f"{field}-above-high-{fmt(bounds.high + step)}", **{field: fmt(bounds.high + step)})
for steps in (0, 5, 2 * max(SAMPLE_STEPS)):
    add_form(f"sample_steps-{steps}", sample_steps=str(steps))
for field, value in [("ref_text_free", "maybe"), ("split_bucket", "2"), ("keep_random", "{}"),
                     ("parallel_infer", "[]"), ("super_sampling", "yes please")]:  # fmt: skip
    add_form(f"{field}-not-a-bool", **{field: value})

# Lone surrogates and invalid UTF-8 in /inference form fields (raw multipart bytes).
for field in ("text", "prompt_text", "text_lang", "prompt_lang", "text_split_method", "gpt_weights", "sovits_weights"):
    add_form(f"{field}-lone-surrogate-bytes", **{field: SURROGATE_BYTES})
for field in ("text", "prompt_text", "gpt_weights"):
    add_form(f"{field}-invalid-utf8", **{field: BAD_UTF8})
add_form("ref_audio_path-name-lone-surrogate-bytes", files=[], client="refroot", ref_audio_path=SURROGATE_BYTES)

# Path tricks in every weight-name field.
# Each trick is a function of (ctx, a real name of the field's kind, a symlink name of that kind).
NAME_TRICKS: list[tuple[str, Callable[[Ctx, str, str], str]]] = [
    ("dotdot", lambda ctx, real, evil: "../../../../etc/passwd"),
    ("dotdot-after-a-folder", lambda ctx, real, evil: real.split("/")[0] + "/../../../../etc/passwd"),
    ("dotdot-back-into-the-root", lambda ctx, real, evil: f"{real.split('/')[0]}/../{real}"),
    ("absolute", lambda ctx, real, evil: "/etc/passwd"),
    ("absolute-to-a-real-weight", lambda ctx, real, evil: str(ctx.demo_root / real)),
    ("backslash-dotdot", lambda ctx, real, evil: "..\\..\\..\\etc\\passwd"),
    ("nul-byte", lambda ctx, real, evil: real + "\x00.txt"),
    ("percent-encoded-dotdot", lambda ctx, real, evil: "%2e%2e/%2e%2e/etc/passwd"),
    ("5000-chars", lambda ctx, real, evil: "a" * 5000),
    ("newline", lambda ctx, real, evil: real.replace("demo", "demo\n", 1)),
    ("tilde", lambda ctx, real, evil: "~/.ssh/id_rsa"),
    ("proc-self-root", lambda ctx, real, evil: "proc/self/root/etc/passwd"),
    ("symlink-out-of-root", lambda ctx, real, evil: evil),
    ("windows-drive", lambda ctx, real, evil: "C:\\Windows\\System32\\config\\SAM"),
    ("a-folder", lambda ctx, real, evil: real.split("/")[0]),
]
NAME_FIELDS = [  # (endpoint, field, real name, symlink name)
    ("/init_t2s_weights", "weights_path", V2_GPT, EVIL_GPT),
    ("/change_sovits_weights", "sovits_path", V2_SOVITS, EVIL_SOVITS),
    ("/inference", "gpt_weights", V2_GPT, EVIL_GPT),
    ("/inference", "sovits_weights", V2_SOVITS, EVIL_SOVITS),
]


def tricky_request(endpoint: str, field: str, name: Callable[[Ctx], str]) -> Callable[[Ctx], dict[str, Any]]:
    if endpoint == "/inference":
        return lambda ctx: inference(**{field: name(ctx)})(ctx)
    return lambda ctx: raw(js({**JSON_BASE[endpoint], field: name(ctx)}))


for label, trick in NAME_TRICKS:
    for endpoint, field, real, evil in NAME_FIELDS:
        name = (lambda t, r, e: lambda ctx: t(ctx, r, e))(trick, real, evil)
        add(f"{endpoint.strip('/')}-{field}-{label}", "POST", endpoint, tricky_request(endpoint, field, name), (404, 422))
for endpoint, field in (("/init_t2s_weights", "weights_path"), ("/change_sovits_weights", "sovits_path")):
    add_json(endpoint, f"{field}-empty", js({field: ""}), (404, 422))

# Reference clips given by name: without a reference root, and trying to leave one.
add_form("ref_audio_path-name-without-ref-root", files=[], ref_audio_path="voice.wav")
add_form("ref_audio_path-dotdot-without-ref-root", files=[], ref_audio_path="../../etc/passwd")
REF_NAME_TRICKS: list[tuple[str, Callable[[Ctx], str], tuple[int, ...]]] = [
    ("dotdot", lambda ctx: "../outside/secret.wav", (422,)),
    ("absolute-etc-passwd", lambda ctx: "/etc/passwd", (422,)),
    ("absolute-to-a-file-inside", lambda ctx: str(ctx.ref_root / "voice.wav"), (422,)),
    ("backslash-dotdot", lambda ctx: "..\\outside\\secret.wav", (422,)),
    ("nul-byte", lambda ctx: "voice.wav\x00.txt", (422,)),
    ("percent-encoded-dotdot", lambda ctx: "%2e%2e/outside/secret.wav", (422,)),
    ("5000-chars", lambda ctx: "a" * 5000, (422,)),
    ("255-char-components-deep", lambda ctx: "/".join(["b" * 255] * 20), (422,)),
    ("newline", lambda ctx: "voice.wav\n", (422,)),
    ("tilde", lambda ctx: "~/secret.wav", (422,)),
    ("symlink-out-of-root", lambda ctx: "link.wav", (422,)),
    ("windows-drive", lambda ctx: "C:\\outside\\secret.wav", (422,)),
    ("a-folder", lambda ctx: "sub", (422,)),
    ("missing-file", lambda ctx: "missing.wav", (422,)),
    ("not-audio", lambda ctx: "notes.txt", (415, 422)),
]
for label, name, expect in REF_NAME_TRICKS:
    add(f"inference-ref_audio_path-name-{label}", "POST", "/inference",
        (lambda n: lambda ctx: inference(files=[], ref_audio_path=n(ctx))(ctx))(name), expect, client="refroot")  # fmt: skip
add_form("aux_ref_audio_paths-as-a-name", client="refroot", aux_ref_audio_paths="voice.wav")

# Reference clips that are not usable audio.
BAD_CLIPS: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("empty-upload", b"", (415, 422)),
    ("text-upload", b"this is not audio, just some text\n" * 10, (415, 422)),
    ("png-upload", PNG, (415, 422)),
    ("random-bytes", NOISE, (415, 422)),
    ("truncated-wav-header", REF[:20], (415, 422)),
    ("wav-with-0-samples", wav_file(16000, b""), (415, 422)),
    ("wav-1hz-5-samples", wav_file(1, b"\x00\x10" * 5), ANY_4XX),
    ("wav-0hz", wav_file(0, b"\x00\x10" * 5), (415, 422)),
    ("wav-4000hz-4s", pcm16(4.0, 4000), (422,)),
    ("wav-max-rate-5-samples", wav_file(2**32 - 1, b"\x00\x10" * 5), (415, 422)),
    ("wav-float-with-nan", float_wav(4.0, 16000, math.nan), (422,)),
    ("wav-float-with-inf", float_wav(4.0, 16000, math.inf), (422,)),
    ("wav-float-with-minus-inf", float_wav(4.0, 16000, -math.inf), (422,)),
    ("wav-0-channels", wav_file(16000, b"\x00\x10" * 100, channels=0), (415, 422)),
    ("wav-2.5s-too-short", pcm16(2.5), (422,)),
    ("wav-11s-too-long", pcm16(11.0), (422,)),
]
for label, clip, expect in BAD_CLIPS:
    add_form(f"ref_audio_path-{label}", expect, files=[("ref_audio_path", "ref.wav", clip, "audio/wav")])
for label, clip, expect in [("png-upload", PNG, (415, 422)), ("empty-upload", b"", (415, 422)),
                            ("wav-float-with-nan", float_wav(4.0, 16000, math.nan), (422,)),
                            ("wav-1hz-5-samples", wav_file(1, b"\x00\x10" * 5), ANY_4XX)]:  # fmt: skip
    add_form(f"aux_ref_audio_paths-{label}", expect, files=[MAIN_REF, ("aux_ref_audio_paths", "aux.wav", clip, "audio/wav")])
add_form("ref_audio_path-missing", files=[])
add_form("aux_ref_audio_paths-1001-files", (400, 413, 415, 422),
         files=[MAIN_REF] + [("aux_ref_audio_paths", f"a{i}.wav", b"x", "audio/wav") for i in range(1001)])  # fmt: skip
add("inference-1001-form-fields", "POST", "/inference",
    lambda ctx: raw(form_body(**{f"junk{i}": "x" for i in range(1001)}), MULTIPART_TYPE),
    (400, 413, 422))  # fmt: skip

# Malformed multipart bodies and wrong content types for /inference.
VALID_FORM = form_body()
for label, body, content_type in [
    ("multipart-boundary-mismatch", VALID_FORM, "multipart/form-data; boundary=some-other-boundary"),
    ("multipart-truncated-in-the-file", VALID_FORM[: len(VALID_FORM) // 2], MULTIPART_TYPE),
    ("multipart-no-closing-boundary", VALID_FORM[: VALID_FORM.rindex(f"--{BOUNDARY}--".encode())], MULTIPART_TYPE),
    ("multipart-no-boundary-param", VALID_FORM, "multipart/form-data"),
    ("multipart-empty-boundary-param", VALID_FORM, "multipart/form-data; boundary="),
    ("multipart-random-bytes", NOISE, MULTIPART_TYPE),
    ("multipart-only-closing-boundary", f"--{BOUNDARY}--\r\n".encode(), MULTIPART_TYPE),
    ("multipart-part-without-disposition", f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(), MULTIPART_TYPE),
    ("multipart-disposition-without-name", f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="r.wav"\r\n\r\n'.encode() + REF + f"\r\n--{BOUNDARY}--\r\n".encode(), MULTIPART_TYPE),
    ("json-body", js({**FORM}).encode(), "application/json"),
    ("urlencoded-body", b"text=%E4%BD%A0%E5%A5%BD&text_lang=all_zh&ref_audio_path=ref.wav", "application/x-www-form-urlencoded"),
    ("text-plain-body", b"hello", "text/plain"),
    ("multipart-body-without-content-type", VALID_FORM, None),
    ("multipart-body-as-octet-stream", VALID_FORM, "application/octet-stream"),
]:  # fmt: skip
    add(f"inference-{label}", "POST", "/inference", (lambda b, t: lambda ctx: raw(b, t))(body, content_type), (400, 415, 422))

# Bodies over max_body_bytes, declared (Content-Length) and streamed (chunked, no Content-Length).
@functools.cache
def oversized_json(field: str = "text_inp") -> bytes:
    """Valid JSON with a one-character string: only its size (whitespace padding) is wrong."""
    return f'{{"{field}": "x"'.encode() + b" " * (DEFAULT_MAX_BODY + MIB) + b"}"


@functools.cache
def oversized_form() -> bytes:
    """The baseline form plus a file part the endpoint ignores: only its size is wrong."""
    padding = ("ignored", "big.bin", b"\x00" * (DEFAULT_MAX_BODY + MIB), "application/octet-stream")
    return form_body(files=[MAIN_REF, padding])


def declared(body: Callable[[], bytes], content_type: str = "application/json"):
    return lambda ctx: raw(body(), content_type)


def chunked(body: Callable[[], bytes], content_type: str = "application/json", size: int = MIB):
    """Sent with Transfer-Encoding: chunked (a generator body has no Content-Length)."""
    return lambda ctx: {
        "content": (data[i : i + size] for data in [body()] for i in range(0, len(data), size)),
        "headers": {"content-type": content_type},
    }


add("to_cut-oversized-body-content-length", "POST", "/to_cut", declared(oversized_json), (413,))
add("to_cut-oversized-body-chunked", "POST", "/to_cut", chunked(oversized_json), (413,))
add("stop-oversized-body-content-length", "POST", "/stop", declared(lambda: oversized_json("request_id")), (413,))
add("stop-oversized-body-chunked", "POST", "/stop", chunked(lambda: oversized_json("request_id")), (413,))
add("change_choices-oversized-body-content-length", "POST", "/change_choices", declared(oversized_json), (413,))
# /change_choices reads no body, so a chunked one (no declared length) is never counted: nothing is held.
add("inference-oversized-body-content-length", "POST", "/inference", declared(oversized_form, MULTIPART_TYPE), (413,))
add("inference-oversized-body-chunked", "POST", "/inference", chunked(oversized_form, MULTIPART_TYPE), (413,))

# /stop: request ids no request can have (the middleware only accepts [A-Za-z0-9._:-]{1,128}).
for label, literal in [("empty", '""'), ("10000-chars", js("a" * 10_000)), ("spaces", js("bad id with spaces")),
                       ("newline", js("abc\ndef")), ("dotdot", js("../../etc/passwd")), ("nul-byte", js("abc\x00")),
                       ("integer", "123"), ("list", "[]"), ("object", "{}")]:  # fmt: skip
    add_json("/stop", f"request_id-{label}", json_object({"request_id": ""}, "request_id", literal))

# Wrong methods (405) and unknown paths (404), with the error shape.
POST_ENDPOINTS = ("/change_choices", "/to_cut", "/phonemize", "/init_t2s_weights", "/change_sovits_weights", "/inference", "/stop")
for endpoint in POST_ENDPOINTS:
    add(f"GET-{endpoint.strip('/')}", "GET", endpoint, expect=(405,))
for method, endpoint in [("POST", "/healthz"), ("POST", "/readyz"), ("DELETE", "/healthz"), ("PUT", "/inference"),
                         ("PATCH", "/stop"), ("DELETE", "/to_cut"), ("OPTIONS", "/phonemize"), ("POST", "/openapi.json"),
                         ("POST", "/docs")]:  # fmt: skip
    add(f"{method}-{endpoint.strip('/')}", method, endpoint, expect=(405,))
for label, path in [("nope", "/nope"), ("percent-dotdot", "/%2e%2e/%2e%2e/etc/passwd"), ("encoded-slashes", "/..%2f..%2fetc%2fpasswd"),
                    ("nul-in-path", "/to_cut%00"), ("api-prefix", "/api/v1/inference"), ("10k-path", "/" + "a" * 10_000),
                    ("unicode-path", "/%E4%BD%A0%E5%A5%BD"), ("invalid-utf8-path", "/%FF%FE")]:  # fmt: skip
    add(f"unknown-path-{label}", "POST" if label == "api-prefix" else "GET", path, expect=(404,))


# Junk X-Request-ID headers on a bad request: refused as usual, and the junk is never echoed.
def not_echoed(junk: str) -> Callable[[Any], str | None]:
    def check(r) -> str | None:
        rid = r.headers.get("x-request-id", "")
        if rid == junk or not rid or not set(rid) <= SANE_REQUEST_ID_CHARS or len(rid) > 128:
            return f"junk X-Request-ID echoed or insane: {rid[:80]!r}"
        return None

    return check


BAD_TO_CUT = json_object({**JSON_BASE["/to_cut"], "how_to_cut": "nope"})
for label, junk in [("10000-chars", "a" * 10_000), ("spaces", "bad id"), ("latin1-bytes", "\xff\xfe"), ("dotdot", "../../x"),
                    ("html", "<script>alert(1)</script>"), ("empty", "")]:  # fmt: skip
    add(f"to_cut-x-request-id-{label}", "POST", "/to_cut",
        (lambda j: lambda ctx: raw(BAD_TO_CUT, **{"x-request-id": j.encode("latin-1")}))(junk), (422,), check=not_echoed(junk))  # fmt: skip


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Iterator[Ctx]:
    demo_root = tmp_path_factory.mktemp("reliability-weights")
    write_demo_weights(demo_root, seed=0)
    outside = tmp_path_factory.mktemp("reliability-outside")
    (outside / "secret.wav").write_bytes(REF)
    (outside / "secret.ckpt").write_bytes(b"not a model")
    (demo_root / EVIL_GPT).symlink_to(outside / "secret.ckpt")
    (demo_root / EVIL_SOVITS).symlink_to(outside / "secret.ckpt")
    ref_root = tmp_path_factory.mktemp("reliability-refs")
    (ref_root / "voice.wav").write_bytes(REF)
    (ref_root / "notes.txt").write_text("not audio\n")
    (ref_root / "sub").mkdir()
    (ref_root / "link.wav").symlink_to(outside / "secret.wav")
    yield Ctx(demo_root=demo_root, ref_root=ref_root)
    shutil.rmtree(demo_root, ignore_errors=True)  # 570 MB; the session's other folders stay until it ends


@pytest.fixture(scope="module")
def clients(ctx):
    """One client per configuration, shared by every case of the module."""
    settings = {
        "demo": Settings(weights_root=ctx.demo_root),
        "small": Settings(weights_root=ctx.demo_root, max_text_chars=SMALL_TEXT_CHARS),
        "refroot": Settings(weights_root=ctx.demo_root, ref_audio_root=ctx.ref_root),
    }
    made = {name: TestClient(create_app(s), raise_server_exceptions=False) for name, s in settings.items()}
    for client in made.values():
        client.__enter__()
    yield made
    for client in made.values():
        client.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------------- tests


def test_the_corpus_is_large_and_its_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(CASES) >= 150, len(CASES)
    assert len(set(ids)) == len(ids), sorted({i for i in ids if ids.count(i) > 1})


@pytest.fixture(scope="module")
def baselines(clients, ctx) -> dict[str, Any]:
    """The accepted requests every case starts from, sent once per client. They also load the voices
    the cases name, so a case's time is that of its own refusal, not of a first model load."""
    answers = {}
    demo = clients["demo"]
    for endpoint, fields in JSON_BASE.items():
        answers[endpoint] = demo.post(endpoint, content=json_object(fields).encode(), headers={"content-type": "application/json"})
    answers["/inference"] = demo.request("POST", "/inference", **inference()(ctx))
    answers["/inference v1"] = demo.request("POST", "/inference", **inference(gpt_weights=V1_GPT, sovits_weights=V1_SOVITS)(ctx))
    answers["/inference refroot"] = clients["refroot"].request("POST", "/inference", **inference(files=[], ref_audio_path="voice.wav")(ctx))
    answers["/inference small"] = clients["small"].request("POST", "/inference", **inference(prompt_text="这" * SMALL_TEXT_CHARS)(ctx))
    return answers


def test_the_baselines_are_accepted(baselines):
    """Each case breaks one thing of a request that is accepted as it is."""
    for name, r in baselines.items():
        assert r.status_code == 200, (name, r.text)
    assert baselines["/inference"].headers["content-type"] == "audio/wav"


def error_shape_problems(r) -> list[str]:
    try:
        body = r.json()
    except ValueError:
        return [f"body is not JSON (content-type {r.headers.get('content-type')!r})"]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ["body has no error object"]
    problems = [f"error.{key} is not a string" for key in ("code", "message", "request_id") if not isinstance(error.get(key), str)]
    if not problems:
        if not error["message"].strip():
            problems.append("error.message is empty")
        if not error["code"]:
            problems.append("error.code is empty")
        if error["request_id"] != r.headers.get("x-request-id"):
            problems.append("error.request_id differs from the X-Request-ID header")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_is_refused_quickly_with_the_error_shape(case, clients, ctx, baselines):
    client = clients[case.client]
    request = case.build(ctx)
    began = time.perf_counter()
    r = client.request(case.method, case.path, **request)
    elapsed = time.perf_counter() - began
    problems = []
    if r.status_code not in case.expect:
        expected = "4xx" if case.expect == ANY_4XX else "/".join(map(str, case.expect))
        problems.append(f"status {r.status_code}, expected {expected}")
    if not 400 <= r.status_code < 500:
        problems.append("not a 4xx")
    problems += error_shape_problems(r)
    if elapsed > DEADLINE_S:
        problems.append(f"took {elapsed:.2f} s (limit {DEADLINE_S:g} s)")
    if case.check is not None and (extra := case.check(r)):
        problems.append(extra)
    shown = r.text[:300] if r.headers.get("content-type", "").startswith(("application/json", "text/")) else f"<{len(r.content)} bytes {r.headers.get('content-type')}>"
    assert not problems, f"{'; '.join(problems)} [{elapsed:.2f} s] body: {shown}"
