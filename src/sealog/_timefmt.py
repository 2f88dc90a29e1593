"""RFC 3339 timestamps in the one form sealog stores: UTC, microseconds, ``Z``.

The fixed width makes them sort as text, so stores can index them as strings.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_window: tuple[int, int, str] = (0, 0, "")
"""The current second as (first microsecond, first of the next, its formatted prefix): one tuple,
so a thread never pairs one second's bounds with another's prefix, and a clock stepped back misses."""

_SPAN = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def now() -> str:
    """The current time; formats the date part once per second because emit calls this.

    The microseconds are the last six digits of the microsecond count, zero-padded by
    construction: a ``:06d`` format spec cost emit ~2,000 instructions (callgrind).
    """
    global _window
    us = time.time_ns() // 1000
    start, end, prefix = _window
    if not start <= us < end:
        start = us - us % 1_000_000
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(start // 1_000_000))
        _window = (start, start + 1_000_000, prefix)
    return f"{prefix}{str(us)[-6:]}Z"


def format_datetime(value: datetime) -> str:
    """The stored form; ValueError for a naive value or one outside years 1..9999 in UTC.

    The year is zero-padded by hand: glibc's ``%Y`` prints year 999 as ``999``, which no
    longer sorts as text and which PostgreSQL reads as a two-digit year.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a naive datetime is ambiguous; give it a timezone")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside years 1..9999 in UTC") from None
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond:06d}Z")


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


def parse_when(value: object) -> str:
    """A query's time bound: an aware datetime, a timedelta back from now, RFC 3339 text,
    or a span like ``15m`` counted back from now. ValueError names what is wrong."""
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return _back_from_now(value)
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a time: give an aware datetime, a timedelta, "
                         "RFC 3339 text or a span like '2h'")
    match = _SPAN.match(value.strip())
    if match:
        return _back_from_now(timedelta(seconds=min(int(match.group(1)) * _SPAN_UNITS[match.group(2)],
                                                    _MAX_SPAN_SECONDS)))
    return parse(value)


_MAX_SPAN_SECONDS = 10_000 * 366 * 86400  # more than any datetime can go back; never overflows timedelta


def _back_from_now(span: timedelta) -> str:
    try:
        return format_datetime(datetime.now(UTC) - span)
    except OverflowError:  # further back than year 1 (or ahead of 9999): the earliest or latest time
        return format_datetime(datetime.min.replace(tzinfo=UTC) if span > timedelta(0)
                               else datetime.max.replace(tzinfo=UTC))
