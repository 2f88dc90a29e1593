"""RFC 3339 timestamps in the one form sealog stores: UTC, microseconds, ``Z``.

The fixed width makes them sort as text, so stores can index them as strings.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_cached_second = -1
_cached_prefix = ""

_SPAN = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def now() -> str:
    """The current time; formats the date part once per second because emit calls this."""
    global _cached_second, _cached_prefix
    ns = time.time_ns()
    second, rest = divmod(ns, 1_000_000_000)
    if second != _cached_second:
        _cached_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _cached_second = second
    return f"{_cached_prefix}.{rest // 1000:06d}Z"


def format_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous; give it a timezone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(value: str) -> str:
    """Normalise any RFC 3339 text to the stored form; raises ValueError when malformed."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {value!r}")
    return format_datetime(parsed)


def parse_when(value: str) -> str:
    """A CLI/API time bound: RFC 3339, or a span like ``15m`` counted back from now."""
    match = _SPAN.match(value.strip())
    if match:
        seconds = int(match.group(1)) * _SPAN_UNITS[match.group(2)]
        return format_datetime(datetime.now(UTC) - timedelta(seconds=seconds))
    return parse(value)
