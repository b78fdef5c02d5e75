"""The error body every 4xx/5xx answer carries (documented in OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(..., description="Stable, machine-readable error code.", examples=["validation_error"])
    message: str = Field(..., description="What went wrong, for people.")
    request_id: str = Field(..., description="Also in the X-Request-ID header and the service log.")
    details: Any | None = Field(None, description="Structured details where useful (e.g. field errors).")


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entry declaring the error body for the given statuses."""
    return {status: {"model": ErrorResponse, "description": "Error"} for status in statuses}
