"""Request ids, body-size limits and the last-resort 500, as one small ASGI middleware."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from fastapi import HTTPException

from app.errors import ERROR_SCOPE_KEY, error_payload
from app.http_limits import BodyTimeout, timed_receive
from app.logging_setup import REQUEST_ID_PATTERN, request_id_var

log = logging.getLogger("app.request")

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID = re.compile(REQUEST_ID_PATTERN)


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when sane, else a new one), puts it
    in the response headers and in every log line, refuses bodies over ``max_body_bytes`` with 413
    and bodies slower than ``body_timeout_s`` with 408, and turns any unhandled exception into the
    standard 500 body without a stack trace."""

    def __init__(self, app, max_body_bytes: int, body_timeout_s: float = 60.0):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        client_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = client_id if _CLIENT_ID.match(client_id) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = False
        status = 0
        began = time.perf_counter()

        async def send_with_id(message):
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        async def reply(status: int, message: str, code: str | None = None):
            scope[ERROR_SCOPE_KEY] = f"{code}: {message}"
            body = json.dumps(error_payload(scope.get("path", ""), status, message, code)).encode()
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})

        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge(self.max_body_bytes)
            receive = _limit_body(timed_receive(receive, self.body_timeout_s), self.max_body_bytes)
            boundary = _multipart_boundary(headers.get(b"content-type", b""))
            if boundary is not None:
                # Starlette reads a form field that is not UTF-8 as Latin-1, silently: check first.
                receive, field = await _buffered_form_check(receive, boundary)
                if field is not None:
                    await reply(422, f"form field {field!r} is not valid UTF-8 text", "invalid_unicode")
                    return
            await self.app(scope, receive, send_with_id)
        except _BodyTooLarge as exc:
            if not started:
                await reply(413, exc.detail, "payload_too_large")
        except BodyTimeout as exc:
            if not started:
                await reply(408, exc.detail, "request_timeout")
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await reply(500, "internal error; the request id identifies it in the service log", "internal_error")
        finally:
            why = scope.get(ERROR_SCOPE_KEY)
            log.info(
                "%s %s -> %d in %.1f ms%s",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - began) * 1000,
                f" ({why})" if why else "",
            )
            request_id_var.reset(token)


class _BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on as a 413 instead of a generic 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than {limit} bytes")


def _limit_body(receive, limit: int):
    """Count body bytes as they arrive (chunked uploads have no Content-Length)."""
    seen = 0

    async def limited():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge(limit)
        return message

    return limited


_BOUNDARY = re.compile(rb'boundary="?([^";]{1,200})"?', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)


def _multipart_boundary(content_type: bytes) -> bytes | None:
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    found = _BOUNDARY.search(content_type)
    return found.group(1) if found else None


async def _buffered_form_check(receive, boundary: bytes):
    """Read the whole multipart body (already size-limited) and find a text field (a part without a
    file name) that is not UTF-8. Returns a receive that replays the body, and that field's name."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    bad_field = None
    for part in body.split(b"--" + boundary):
        head, sep, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep or b"filename=" in head.lower():
            continue
        try:
            value.removesuffix(b"\r\n").decode("utf-8")
        except UnicodeDecodeError:
            name = _FIELD_NAME.search(head)
            bad_field = name.group(1).decode("utf-8", "replace") if name else "?"
            break

    async def replay():
        return messages.pop(0) if messages else await receive()

    return replay, bad_field
