"""Logging with the current request id on every line."""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# What a request id may look like (a client's X-Request-ID is kept when it matches, else replaced).
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    # Replace handlers we installed before (tests create several apps) but leave others alone.
    for old in [h for h in root.handlers if getattr(h, "_gsv", False)]:
        root.removeHandler(old)
    handler._gsv = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers go through the root handler so they carry the request id too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
