"""Column values as JSON that an event can hold, and action names from table names."""

from __future__ import annotations

import datetime
import decimal
import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._redact import REDACTED

_MAX_SAFE_INT: Final = 2**53 - 1  # RFC 8785 numbers are doubles: larger ones become strings
_NOT_ACTION: Final = re.compile(r"[^a-z0-9_-]+")
MAX_PKS: Final = 1000
"""A bulk event lists at most this many primary keys; metadata.count has the full number."""


def jsonable(value: Any) -> Any:
    """A database value as JSON, losing no information a reader of the audit trail needs."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def action_part(name: str) -> str:
    """A table or model name as one word of an action (lowercase letters, digits, _ and -)."""
    return _NOT_ACTION.sub("_", name.lower()).strip("_") or "table"


def pk_text(values: tuple[Any, ...] | list[Any]) -> str:
    """A primary key as the target id; a composite key joins its parts with commas."""
    return ",".join(str(jsonable(v)) for v in values)


def secrets_in(value: Any, secret_key: Callable[[str], bool], found: list[str] | None = None,
               under_secret: bool = False) -> list[str]:
    """The strings the redactor hides by key name (``password``, ``token``...), to hide them elsewhere too.

    A tool's error message or result may echo its arguments; the redactor cannot know that
    ``hunter2`` in free text is the password it replaced in ``arguments.password``.
    """
    found = [] if found is None else found
    if isinstance(value, str):
        if under_secret and len(value) >= 4:
            found.append(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            secrets_in(item, secret_key, found, under_secret or secret_key(str(key)))
    elif isinstance(value, list | tuple):
        for item in value:
            secrets_in(item, secret_key, found, under_secret)
    return found


def scrub(value: Any, secrets: list[str]) -> Any:
    """The value with each secret string replaced wherever it occurs in its strings."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, secrets) for item in value]
    return value
