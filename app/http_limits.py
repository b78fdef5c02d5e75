"""Limits on what a client can make the server hold before its request reaches a route.

uvicorn bounds neither the request head (a 1 MB header or 20,000 headers are parsed and kept) nor
the time a client may take to send it or its body (a connection that trickles bytes stays open).

- :class:`GuardedHttpProtocol`: uvicorn's httptools protocol with a bounded head: at most
  ``max_header_bytes`` of request line and headers and ``max_header_count`` headers (431 otherwise,
  and the connection closes), sent within ``header_timeout_s`` of the connection opening or the
  previous answer ending (else the connection closes).
- :func:`timed_receive`: the whole body must arrive within ``body_timeout_s`` of the head; a slower
  one is answered 408. Used by ``app.middleware.RequestContextMiddleware``.

:func:`uvicorn_config` builds the server the CLI and the tests run, with these limits in place.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import uvicorn
from fastapi import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import error_body


class _HeadTooLarge(Exception):
    """Raised inside the parser's callback to stop parsing; the protocol answers 431."""


class GuardedHttpProtocol(HttpToolsProtocol):
    max_header_bytes = 16 * 1024
    max_header_count = 100
    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_refused: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that did not send its request head in %.0f s", self.header_timeout_s)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # A keep-alive connection's next request: its head must come in time too (between requests
        # uvicorn's own keep-alive timer closes an idle connection).
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= self.max_header_count:
            self._refuse(f"more than {self.max_header_count} request headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._refuse(f"the request line and headers are larger than {self.max_header_bytes} bytes")

    def _refuse(self, why: str) -> None:
        self._head_refused = why
        raise _HeadTooLarge(why)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; a head refused above gets its own status.
        if self._head_refused is None:
            super().send_400_response(msg)
            return
        body = json.dumps(error_body(431, self._head_refused)).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()


def guarded_protocol(max_header_bytes: int, max_header_count: int, header_timeout_s: float) -> type:
    """The protocol class with these limits (uvicorn instantiates it per connection)."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_header_count": max_header_count,
            "header_timeout_s": header_timeout_s,
        },
    )


def uvicorn_config(app, settings, **overrides: Any) -> uvicorn.Config:
    """The server for ``app`` with ``settings``' limits (the CLI's; tests override host and port)."""
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        # Our middleware already writes one line per request (with its id and error code).
        access_log=False,
        http=guarded_protocol(settings.max_header_bytes, settings.max_header_count, settings.header_timeout_s),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    return uvicorn.Config(app, **(options | overrides))


class BodyTimeout(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on (as a 408) instead of a generic 400."""

    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def timed_receive(receive, timeout_s: float):
    """``receive`` whose body must be complete within ``timeout_s``; after the body (when a
    disconnect is awaited) it waits as long as it takes."""
    deadline = time.monotonic() + timeout_s
    done = False

    async def timed():
        nonlocal done
        if done:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise BodyTimeout(timeout_s) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            done = True
        return message

    return timed
