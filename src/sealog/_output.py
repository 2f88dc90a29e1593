"""Event output shared by the CLI, exports and the service: JSONL, CSV and tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any, Final

import msgspec

from ._event import FIELDS, JSON_FIELDS, Event

_encode = msgspec.json.Encoder().encode
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
"""OWASP's CSV injection list: a spreadsheet runs a cell starting with one of these as a formula."""


def jsonl_line(event: Event) -> bytes:
    """One event object with every contract field (nulls included), newline-terminated."""
    return _encode(event.to_dict()) + b"\n"


def csv_header() -> str:
    return ",".join(FIELDS) + "\r\n"


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a ``'`` before it.

    Event fields are attacker-controlled (``=HYPERLINK(...)`` in a user agent), and an export
    is opened in a spreadsheet. JSON columns need nothing: they start with ``{``, ``[``, ``"``
    or a number (a leading ``-`` there is a negative number, which no spreadsheet runs).
    """
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_row(event: Event) -> str:
    """One CSV line; text cells neutralised against formula injection (see ``neutralise``)."""
    buffer = io.StringIO()
    values: list[Any] = []
    for name in FIELDS:
        value = getattr(event, name)
        if name in JSON_FIELDS:
            value = "" if value is None else _encode(value).decode()
        elif isinstance(value, str):
            value = neutralise(value)
        values.append("" if value is None else value)
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def stream(events: Iterable[Event], fmt: str) -> Iterator[bytes]:
    """An export, chunk by chunk, in constant memory."""
    if fmt == "csv":
        yield csv_header().encode()
        for event in events:
            yield csv_row(event).encode()
    else:
        for event in events:
            yield jsonl_line(event)
