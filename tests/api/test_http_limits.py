"""Limits before a route runs, on the server the CLI runs (tests/api/conftest.live_server uses the same
uvicorn_config): bounded request heads (431), heads and bodies that must arrive in time (closed / 408),
each refusal in its surface's shape."""

from __future__ import annotations

import json
import socket
import time

import pytest

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import live_server


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    settings = Settings(weights_root=root, data_dir=root / "data", web_ui=False, body_timeout_s=1.0,
                        header_timeout_s=1.0, max_header_count=50)  # fmt: skip
    with live_server(create_app(settings)) as url:
        yield int(url.rsplit(":", 1)[1])


def exchange(port: int, data: bytes, wait_s: float = 10) -> tuple[bytes, float]:
    """Send ``data`` and read until the server closes or answers; returns (answer, seconds)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), None)  # fmt: skip
                if length is not None and len(body) >= length:
                    break
        except TimeoutError:
            pass
    return answer, time.monotonic() - began


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_too_many_headers_or_too_large_a_head_is_431(port):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    for request in (b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"):  # fmt: skip
        status, body = status_and_body(exchange(port, request)[0])
        assert status == 431 and body["error"]["code"] == "request_header_fields_too_large"
    status, _ = status_and_body(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[0])
    assert status == 200


def test_a_head_that_does_not_arrive_in_time_is_closed(port):
    answer, seconds = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
    assert answer == b"" and 0.9 < seconds < 5


@pytest.mark.parametrize("path", ["/to_cut", "/tts", "/v1/audio/speech", "/inference"])
def test_a_slow_body_is_408_in_the_surfaces_shape(port, path):
    kind = "multipart/form-data; boundary=xx" if path == "/inference" else "application/json"
    head = f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: {kind}\r\nContent-Length: 1000\r\n\r\n".encode()
    answer, seconds = exchange(port, head + b"--xx\r\n" if path == "/inference" else head + b'{"text')
    status, body = status_and_body(answer)
    assert status == 408 and seconds < 5, answer
    if path == "/tts":
        assert body["code"] == "request_timeout" and "did not arrive" in body["message"]
    elif path.startswith("/v1/"):
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "request_timeout"
    else:
        assert body["error"]["code"] == "request_timeout"


def test_stalled_uploads_do_not_stay_open(port):
    socks = []
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /inference HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  b"Content-Length: 100000\r\n\r\n--x\r\n")  # fmt: skip
        socks.append(s)
    time.sleep(2.5)
    answered = 0
    for s in socks:
        answered += s.recv(4096).startswith(b"HTTP/1.1 408")
        s.close()
    assert answered == 30
