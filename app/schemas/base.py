"""The base of every request schema: text must be valid Unicode.

JSON can carry lone surrogates (``"\\ud800"``), which are not characters: they cannot be encoded,
logged, used as a file name or fed to the text frontend. Every request model refuses them up front,
in every string field (nested lists included), as a 422 naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, field_validator

_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_unicode(value: Any) -> None:
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise ValueError("contains invalid Unicode (a lone surrogate code point)")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_unicode(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key)
            _check_unicode(item)


class RequestModel(BaseModel):
    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        _check_unicode(value)
        return value
