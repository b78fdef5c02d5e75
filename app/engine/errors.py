"""The engine's own error kinds. Every refusal the engine makes is one of these, with a stable,
machine-readable ``code`` and a message for people. The engine knows nothing of HTTP: the service
layer (``app/errors.py``) maps each kind to a status code, and other surfaces map them their own way.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every refusal; ``code`` is stable (clients match on it), ``message`` is for people."""

    code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(EngineError):
    """The request breaks a rule (a range, a language the model cannot speak, a bad reference...)."""

    code = "invalid_input"


class NotFound(EngineError):
    """Something the request names does not exist (a weight file)."""

    code = "not_found"


class Conflict(EngineError):
    """A valid request that cannot be served in the current state (no model chosen, a LoRA's base or
    the super-sampling model not installed)."""

    code = "conflict"


class Cancelled(EngineError):
    """The synthesis was stopped (``/stop``, a disconnect) before its audio was complete."""

    code = "synthesis_cancelled"


class Busy(EngineError):
    """The queue is full; ``retry_after_s`` estimates when there will be room."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class ModelUnavailable(EngineError):
    """A model the engine needs is missing or unreadable in the weights root (a server-side problem,
    not the request's)."""

    code = "missing_weights"


class TooLarge(EngineError):
    """The request would need more than a configured budget (memory for its reference clips)."""

    code = "too_large"
