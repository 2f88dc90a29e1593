"""Message bodies to events: sealog event JSON, CloudEvents 1.0, and domain events.

A body is one event, or a JSON array of them (a batch: what sealog's publisher sends with
``events_per_message`` above 1); ``parts`` splits it, and each element is checked alone,
so one bad element is dead-lettered by itself and its batch mates are stored.

Every body becomes emit's keyword arguments and then passes through the one preparation
pipeline (``Preparer``), so the broker path cannot store an event that ``AuditLog.emit``
would have refused, nor a secret that emit would have scrubbed.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from itertools import accumulate
from typing import Any, Final, NamedTuple

import msgspec

from .._errors import InvalidEvent
from .._event import FIELDS, SEAL_FIELDS, Event
from .._prepare import MAX_DEPTH, Preparer
from .._redact import DEFAULT as DEFAULT_REDACTOR

NAMESPACE: Final = uuid.UUID("6f1e8a52-3c0b-5d7e-9a41-2b8c5e0f7d13")
"""UUIDv5 namespace of the ids given to messages that carry none."""

_ACCEPTED: Final = frozenset(FIELDS) - frozenset(SEAL_FIELDS)
_ACCEPTED_OR_SEALED: Final = frozenset(FIELDS) | frozenset(SEAL_FIELDS)
_NUMERIC_IDS: Final = ("event_id", "actor_id", "target_id", "tenant_id")
_decode_json = msgspec.json.decode
_NUMBERS: Final = (int, float)
DEFAULT_PREPARER: Final = Preparer(DEFAULT_REDACTOR)
MAX_MESSAGE_BYTES: Final = 1 << 20
"""A body over this is refused before decoding: one event encodes to at most 64 KiB."""
MAX_NESTING: Final = MAX_DEPTH + 8
"""Brackets a body may nest: the pipeline's limit for JSON values, plus the envelopes around them."""

_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\Z)', re.S)
"""A JSON string, or an unterminated one up to the end: linear, never backtracks."""
_NOT_BRACKETS: Final = bytes(range(256)).translate(None, b"[]{}")
_NOT_QUOTES_OR_BRACKETS: Final = bytes(range(256)).translate(None, b'"[]{}')
_STEP: Final = [1 if c in b"[{" else -1 if c in b"]}" else 0 for c in range(256)]
_CHUNK: Final = 1 << 16


class Poison(ValueError):
    """A message that cannot become an event; its text is the dead-letter reason."""


class Part(NamedTuple):
    """One event's body within a message."""

    body: bytes
    position: int | None
    """Its position in a batch (a JSON array body); None for a one-event body."""


_split = msgspec.json.Decoder(list[msgspec.Raw]).decode


def parts(body: bytes) -> list[Part]:
    """The event bodies a message carries: itself, or each element of a JSON array.

    Only an array body is looked into here (its size and nesting checked first, as
    ``to_event`` does); a broken array is the whole message's Poison.
    """
    if body[:1] != b"[" and body.lstrip()[:1] != b"[":
        return [Part(body, None)]
    if len(body) > MAX_MESSAGE_BYTES:
        raise Poison(f"body of {len(body)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    if too_deep(body, MAX_NESTING + 1):
        raise Poison(f"body nests deeper than {MAX_NESTING} levels")
    try:
        elements = _split(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise Poison(f"body is not JSON: {exc}") from None
    if not elements:
        raise Poison("body is an empty JSON array: a batch with no events")
    return [Part(bytes(raw), index) for index, raw in enumerate(elements)]


def part_message_id(message_id: str | None, body: bytes, part: Part) -> str | None:
    """What ``to_event`` takes as the message's id for one part: a batch element without an
    event_id gets one from the message (its id, else its body) and its position, the same
    on every redelivery, and never its batch mate's."""
    if part.position is None:
        return message_id
    return f"{message_id or derived_id(body)}#{part.position}"


def too_deep(body: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether JSON text nests brackets deeper than ``limit``, found without decoding it.

    Decoders recurse once per level; measuring first keeps hostile nesting away from them.
    Everything runs in C (``translate``, ``replace``, ``accumulate``, else a regex); it stops
    at the first chunk that goes too deep, and costs nothing for a body with few brackets.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    return _deeper(_outside_strings(body), limit)


def _outside_strings(body: bytes) -> bytes:
    """The brackets of ``body`` that are not inside a JSON string, in order.

    The quick way, for a body without a backslash (so every quote opens or closes a
    string): keep only quotes and brackets, and drop each ``""``. A string holding no
    bracket leaves exactly that pair, so no quote is left only when no string held a
    bracket (one left-to-right pass: a pair taken across two strings strands a quote).
    Otherwise the strings are cut out by a regex: the whole check of a 100-event batch
    takes ~1,200 µs that way and ~120 µs this way.
    """
    if b"\\" not in body:
        kept = body.translate(None, _NOT_QUOTES_OR_BRACKETS).replace(b'""', b"")
        if b'"' not in kept:
            return kept
    return _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)


def _deeper(brackets: bytes, limit: int) -> bool:
    level = 0
    for start in range(0, len(brackets), _CHUNK):
        levels = list(accumulate(map(_STEP.__getitem__, brackets[start:start + _CHUNK]), initial=level))
        if max(levels) > limit:
            return True
        level = levels[-1]
    return False


def derived_id(body: bytes) -> str:
    """A deterministic event_id for a body without one: a redelivery maps to the same row."""
    return str(uuid.uuid5(NAMESPACE, hashlib.sha256(body).hexdigest()))


def to_event(body: bytes, *, default_tenant: str | None = None, message_id: str | None = None,
             preparer: Preparer = DEFAULT_PREPARER) -> Event:
    """The checked, redacted event a message body stands for; raises Poison with the reason.

    The event_id is the body's own, else the AMQP ``message_id``, else derived from the body.
    Nothing else escapes: whatever goes wrong while reading or checking a body is the
    body's dead-letter reason, so no message can stop the consumer.
    """
    try:
        return _to_event(body, default_tenant, message_id, preparer)
    except Poison:
        raise
    except Exception as exc:  # a checking path we did not foresee: still this body's fault
        raise Poison(f"cannot read the message: {type(exc).__name__}: {str(exc)[:300]}") from None


def _to_event(body: bytes, default_tenant: str | None, message_id: str | None, preparer: Preparer) -> Event:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise Poison(f"body is {type(body).__name__}, not bytes")
    body = bytes(body)
    if len(body) > MAX_MESSAGE_BYTES:
        raise Poison(f"body of {len(body)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    if too_deep(body):
        raise Poison(f"body nests deeper than {MAX_NESTING} levels")
    try:
        data = _decode_json(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise Poison(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Poison(f"body is a JSON {type(data).__name__}, not an object")
    if "specversion" in data:
        fields = from_cloudevent(data, default_tenant)
    elif "event_type" in data:
        fields = from_domain_event(data, default_tenant)
    elif "action" in data:
        fields = from_sealog(data)
    else:
        raise Poison("unrecognised body: expected a sealog event (tenant_id, action), "
                     "a CloudEvent (specversion) or a domain event (event_type, payload)")
    for name in _NUMERIC_IDS:  # numeric ids are common in other languages
        value = fields.get(name)
        if type(value) is not str and isinstance(value, _NUMBERS) and not isinstance(value, bool):
            fields[name] = str(value)
    if fields.get("event_id") is None:
        fields["event_id"] = message_id or derived_id(body)
    if None in fields.values():  # a JSON null means "not given"
        fields = {k: v for k, v in fields.items() if v is not None}
    try:
        return preparer.prepare_fields(fields)[0]
    except InvalidEvent as exc:
        raise Poison(f"invalid event: {exc}") from None


def from_sealog(data: dict[str, Any]) -> dict[str, Any]:
    """The sealog event JSON; seal fields are dropped because the store seals."""
    if data.keys() <= _ACCEPTED:  # what sealog's publisher sends: one subset test in C, no copy
        return data
    unknown = sorted(data.keys() - _ACCEPTED_OR_SEALED)
    if unknown:
        raise Poison(f"unknown field {unknown[0]!r} in a sealog event")
    return {k: v for k, v in data.items() if k in _ACCEPTED}


def from_cloudevent(data: dict[str, Any], default_tenant: str | None) -> dict[str, Any]:
    """CloudEvents 1.0 structured mode: type, id, source, time, subject, data, ``tenantid``."""
    if data.get("specversion") != "1.0":
        raise Poison(f"CloudEvents specversion {data.get('specversion')!r} is not supported (only '1.0')")
    if "data_base64" in data:
        raise Poison("CloudEvents data_base64 is not supported: send data as a JSON object")
    payload = data.get("data")
    if payload is not None and not isinstance(payload, dict):
        raise Poison("CloudEvents data must be a JSON object (it becomes the metadata)")
    return {
        "tenant_id": data.get("tenantid") or default_tenant,
        "action": data.get("type"),
        "event_id": data.get("id"),
        "source": data.get("source"),
        "occurred_at": data.get("time"),
        "target_id": data.get("subject"),
        "metadata": payload,
    }


def from_domain_event(data: dict[str, Any], default_tenant: str | None) -> dict[str, Any]:
    """``event_type`` + ``payload``; tenant, actor, IP and user agent come from the payload."""
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise Poison("domain event payload must be a JSON object (it becomes the metadata)")
    actor_id, actor_type = None, None
    actor_keys = (("actor_id", payload.get("actor_type")), ("user_id", "user"), ("clerk_user_id", "user"))
    for key, kind in actor_keys:
        if payload.get(key) is not None:
            actor_id, actor_type = payload[key], kind
            break
    return {
        "tenant_id": payload.get("tenant_id") or payload.get("organization_id") or default_tenant,
        "action": data.get("event_type"),
        "event_id": data.get("event_id"),
        "occurred_at": data.get("timestamp"),
        "source": data.get("source_service"),
        "actor_type": actor_type,
        "actor_id": actor_id,
        "ip_address": payload.get("ip_address"),
        "user_agent": payload.get("user_agent"),
        "metadata": payload,
    }
