"""One error shape for every 4xx/5xx answer: the HTTP statuses of the engine's error kinds, and the
errors the HTTP layer raises itself (upload and size limits).

Body: ``{"error": {"code": "...", "message": "...", "request_id": "...", "details": ...}}``.
``code`` is stable and machine-readable; ``message`` is for people; no stack trace is ever sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.engine import errors as engine_errors
from app.logging_setup import request_id_var


class ServiceError(Exception):
    """An error with an HTTP status and a stable code, raised by the HTTP layer itself (the engine
    raises ``app.engine.errors`` kinds, mapped by :data:`ENGINE_STATUS`)."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.headers = headers
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class InvalidInput(ServiceError):
    status_code = 422
    code = "invalid_input"


# The HTTP status of each engine error kind (the most specific class listed first wins).
ENGINE_STATUS: tuple[tuple[type[engine_errors.EngineError], int], ...] = (
    (engine_errors.InvalidRequest, 422),
    (engine_errors.NotFound, 404),
    (engine_errors.Conflict, 409),
    (engine_errors.Cancelled, 409),
    (engine_errors.Busy, 429),
    (engine_errors.ModelUnavailable, 503),
    (engine_errors.TooLarge, 413),
)


def engine_status(exc: engine_errors.EngineError) -> int:
    return next((status for kind, status in ENGINE_STATUS if isinstance(exc, kind)), 500)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "unavailable",
}


def error_body(status: int, message: str, code: str | None = None, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code or _STATUS_CODES.get(status, "error"),
        "message": message,
        "request_id": request_id_var.get(),
    }
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(status: int, message: str, code: str | None = None, details: Any = None, headers=None):
    return JSONResponse(error_body(status, message, code, details), status_code=status, headers=headers)


# A surface that answers errors in its own shape (OpenAI's error object, api_v2's {"message"}) says so
# here for its paths; refusals made before a route runs (a slow or too large body, an unknown method)
# then answer in that shape too. (path matcher, body builder of (status, message, code))
ErrorShape = Callable[[int, str, str | None], dict[str, Any]]
_SURFACE_SHAPES: list[tuple[Callable[[str], bool], ErrorShape]] = []


def register_error_shape(matches: Callable[[str], bool], shape: ErrorShape) -> None:
    _SURFACE_SHAPES.append((matches, shape))


def error_payload(path: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The body of an error answered at ``path``: its surface's shape, else the service's."""
    for matches, shape in _SURFACE_SHAPES:
        if matches(path):
            return shape(status, message, code)
    return error_body(status, message, code)


def _describe_validation(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


# The request-log middleware reads this scope key, so a refused request still logs ONE line, with why.
ERROR_SCOPE_KEY = "gsv.error"


def _note(request: Request, code: str, message: str) -> None:
    request.scope[ERROR_SCOPE_KEY] = f"{code}: {message}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        _note(request, exc.code, exc.message)
        return error_response(exc.status_code, exc.message, exc.code, exc.details, headers=exc.headers)

    @app.exception_handler(engine_errors.EngineError)
    async def _engine_error(request: Request, exc: engine_errors.EngineError):
        status = engine_status(exc)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, engine_errors.Busy) else None
        _note(request, exc.code, exc.message)
        return error_response(status, exc.message, exc.code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
        ]
        message = _describe_validation(errors)
        _note(request, "validation_error", message)
        return error_response(422, message, "validation_error", jsonable_encoder(details))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI reports a JSON body it could not decode as a generic 400 "error parsing the body";
        # say what was wrong, as the 422 that every other malformed JSON body gets.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            message = f"the request body is not valid UTF-8 ({cause.reason} at byte {cause.start})"
            _note(request, "invalid_unicode", message)
            return error_response(422, message, "invalid_unicode")
        is_json = "json" in request.headers.get("content-type", "")
        if exc.status_code == 400 and is_json and isinstance(cause, ValueError | RecursionError):
            # Python's limits: integers of more than 4300 digits, nesting deeper than the stack.
            message = "the JSON body cannot be read: a number is too long or the nesting too deep"
            _note(request, "json_invalid", message)
            return error_response(422, message, "json_invalid")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        _note(request, code, message)
        body = error_payload(request.url.path, exc.status_code, message, code)
        return JSONResponse(body, status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path. Starlette's 405 names only the first
    matching route's, though a path often has one route per method (GET and DELETE /voices/{name})."""
    allowed = []
    for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)
