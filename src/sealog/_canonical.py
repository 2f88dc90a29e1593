"""RFC 8785 (JSON Canonicalization Scheme) encoding, fast for the common case.

msgspec with sorted keys produces exactly RFC 8785 for strings, integers, booleans and
null (its string escaping matches ES6's). Two things differ: floats (ES6 number
formatting) and the sort order of keys holding characters above U+D7FF (RFC 8785
sorts by UTF-16 code units). Values holding either go through the reference
implementation, the ``rfc8785`` package. A hypothesis test keeps the two equal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
import rfc8785

_encode_sorted = msgspec.json.Encoder(order="sorted").encode
_LONG_DIGITS = re.compile(rb"\d{16}")
_MAX_SAFE_INT = 2**53 - 1


def loads(raw: bytes | str) -> Any:
    """A JSON value read back from canonical (or jsonb) text.

    Emit refuses integers beyond +-(2**53-1), so a longer integer in stored JSON can only
    have been a float that RFC 8785 prints in full (1e16 is ``10000000000000000``): it is
    read back as a float, so an export re-canonicalises to the very bytes that were hashed.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if _LONG_DIGITS.search(data) is None:
        return msgspec.json.decode(data)
    return json.loads(data, parse_int=_int_or_float)


def _int_or_float(digits: str) -> int | float:
    value = int(digits)
    return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else float(digits)


def _plain(value: Any) -> bool:
    """True when msgspec's sorted output is already canonical for this value."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if not key.isascii() and max(key) > "\ud7ff":
                return False
            if not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False


def canonical_value(value: Any) -> bytes:
    """RFC 8785 bytes of one JSON value."""
    if value is None:
        return b"null"
    if _plain(value):
        return _encode_sorted(value)
    return rfc8785.dumps(value)


def number(value: float) -> bytes:
    """An ES6-formatted number, as RFC 8785 requires."""
    if value.is_integer() and abs(value) <= 2**53:  # beyond, ES6 prints shortest digits + zeros
        return str(int(value)).encode()
    text = repr(value)
    # Python's repr and ES6 agree on the shortest digits; they differ only in where
    # exponent notation starts, and repr never uses it between 1e-4 and 1e16.
    if "e" not in text and "n" not in text:
        return text.removesuffix(".0").encode()
    return rfc8785.dumps(value)


def canonical_event(fields: Mapping[str, Any], raw_json: Mapping[str, bytes]) -> bytes:
    """RFC 8785 bytes of an event's content fields.

    ``fields`` maps the scalar fields (str or None, ``latency_ms`` a float or None); a
    dict passed in is completed in place, to spare a copy per event;
    ``raw_json`` maps metadata, proof, before and after to their canonical bytes, so
    a store that keeps those columns canonical can re-verify without re-parsing them.
    """
    doc = fields if isinstance(fields, dict) else dict(fields)
    latency = doc.get("latency_ms")
    if latency is not None:
        doc["latency_ms"] = msgspec.Raw(number(float(latency)))
    for name, raw in raw_json.items():
        doc[name] = msgspec.Raw(raw)
    return _encode_sorted(doc)


def _content_fields() -> tuple[str, ...]:
    from ._event import CONTENT_FIELDS

    return tuple(sorted(CONTENT_FIELDS))


SORTED_FIELDS: Final = _content_fields()
"""The hashed fields in canonical (sorted) order: stores read columns in this order."""
_Canonical = msgspec.defstruct("_Canonical", SORTED_FIELDS)
_RAW_AT: Final = tuple(SORTED_FIELDS.index(n) for n in ("after", "before", "metadata", "proof"))
_LATENCY_AT: Final = SORTED_FIELDS.index("latency_ms")


def canonical_row(values: Sequence[Any]) -> bytes:
    """RFC 8785 bytes from values in ``SORTED_FIELDS`` order, JSON fields already canonical.

    The fast path for verification: one struct built from the row, one C encode.
    """
    row = list(values)
    for i in _RAW_AT:
        row[i] = msgspec.Raw(row[i])
    latency = row[_LATENCY_AT]
    if latency is not None:
        row[_LATENCY_AT] = msgspec.Raw(number(float(latency)))
    return _encode_sorted(_Canonical(*row))
