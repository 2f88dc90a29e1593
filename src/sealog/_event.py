"""The audit event and its validation.

``Event`` is a frozen msgspec Struct: creating one costs ~0.15 us, a dataclass ~2 us,
and emit is on the caller's hot path. Stored events carry ``seq``, ``prev_hash``,
``hash`` and ``recorded_at``; emitted ones leave them ``None``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from . import _timefmt as timefmt
from ._errors import InvalidEvent

OUTCOMES: Final = frozenset({"success", "failure", "partial", "pending"})
PROOF_TYPES: Final = frozenset({"screenshot", "api_response", "hash", "url", "none"})
MAX_EVENT_BYTES: Final = 64 * 1024
"""The encoded size limit of one event: larger details belong in a blob store, linked by proof."""
MAX_FIELD_CHARS: Final = 1024
MAX_EVENT_ID: Final = 128
MAX_USER_AGENT: Final = 4096
MAX_ERROR_MESSAGE: Final = 16384
TEXT_LIMITS: Final = {
    "actor_type": MAX_FIELD_CHARS, "actor_id": MAX_FIELD_CHARS, "target_type": MAX_FIELD_CHARS,
    "target_id": MAX_FIELD_CHARS, "user_agent": MAX_USER_AGENT, "request_id": MAX_FIELD_CHARS,
    "correlation_id": MAX_FIELD_CHARS, "span_id": MAX_FIELD_CHARS, "parent_event_id": MAX_FIELD_CHARS,
    "source": MAX_FIELD_CHARS, "error_code": MAX_FIELD_CHARS, "error_message": MAX_ERROR_MESSAGE,
}
"""Each free text field's length limit; emit checks them, the Event annotations below say the same."""
MAX_SAFE_INT: Final = 2**53 - 1
"""RFC 8785 numbers are IEEE doubles: larger integers would not survive canonicalisation."""

_ACTION = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")

JSON_FIELDS: Final = ("metadata", "proof", "before", "after")
SEAL_FIELDS: Final = ("seq", "prev_hash", "hash", "recorded_at")


Text = Annotated[str, msgspec.Meta(max_length=MAX_FIELD_CHARS)]
Outcome = Literal["success", "failure", "partial", "pending"]


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One audit event, with the contract's field names.

    The annotations are checked by msgspec when the writer decodes a spool line: the
    backstop behind emit's own checks (``_prepare``), which keep the same limits.
    """

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID)]
    tenant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    action: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    occurred_at: str
    outcome: Outcome = "success"
    actor_type: Text | None = None
    actor_id: Text | None = None
    target_type: Text | None = None
    target_id: Text | None = None
    ip_address: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=MAX_USER_AGENT)] | None = None
    request_id: Text | None = None
    correlation_id: Text | None = None
    span_id: Text | None = None
    parent_event_id: Text | None = None
    source: Text | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error_code: Text | None = None
    error_message: Annotated[str, msgspec.Meta(max_length=MAX_ERROR_MESSAGE)] | None = None
    metadata: dict[str, Any] = {}
    proof: dict[str, Any] | None = None
    before: Any = None
    after: Any = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
    recorded_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field, ``None`` included: the shape of JSONL exports and the HTTP API."""
        return {name: getattr(self, name) for name in FIELDS}


FIELDS: Final = Event.__struct_fields__
CONTENT_FIELDS: Final = tuple(f for f in FIELDS if f not in SEAL_FIELDS)
"""The fields that the hash covers."""

_encoder = msgspec.json.Encoder()


def check_tenant(value: object, field: str = "tenant_id") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(field, "required: a non-empty string")
    if len(value) > 128 or not value.isprintable():
        raise InvalidEvent(field, "at most 128 printable characters")
    return value


def check_action(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent("action", "required: lower-case dotted words like 'auth.login'")
    if len(value) > 200 or not _ACTION.fullmatch(value):
        raise InvalidEvent("action", f"{value[:80]!r} is not lower-case dotted words")
    return value


def check_outcome(value: object) -> str:
    if not isinstance(value, str) or value not in OUTCOMES:
        raise InvalidEvent("outcome", f"{value!r:.80} is not one of {', '.join(sorted(OUTCOMES))}")
    return value


def check_ip(value: object) -> str | None:
    """The caller's IP text, once checked valid; only text is taken (``ipaddress`` would
    read the int 5 as 0.0.0.5). Kept as given: re-encoding would turn ``::ffff:1.2.3.4``
    into ``::ffff:102:304`` and change what the audit trail says."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent("ip_address", f"must be IP address text, not {type(value).__name__}")
    if len(value) > 64:  # an IPv6 text with a long zone id: more than any store column keeps
        raise InvalidEvent("ip_address", f"{len(value)} characters, over the limit of 64")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        raise InvalidEvent("ip_address", f"{value[:60]!r} is not an IP address") from None


def check_occurred_at(value: object) -> str:
    if value is None:
        return timefmt.now()
    try:
        if isinstance(value, datetime):
            return timefmt.format_datetime(value)
        if isinstance(value, str):
            return timefmt.parse(value)
    except ValueError as exc:
        raise InvalidEvent("occurred_at", str(exc)) from None
    raise InvalidEvent("occurred_at", "must be an RFC 3339 string or an aware datetime")


def check_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("metadata", f"must be a JSON object, not {type(value).__name__}")
    return value


def check_proof(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent("proof", "must be a JSON object with a 'type'")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in PROOF_TYPES:
        raise InvalidEvent("proof", f"type {kind!r:.80} is not one of {', '.join(sorted(PROOF_TYPES))}")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def encode(event: Event) -> bytes:
    """The checked spool line for an event; InvalidEvent names the first bad field."""
    return encode_fields(event)


def encode_fields(event: Event | dict[str, Any]) -> bytes:
    """``encode`` for an Event or for its fields as a dict (only those set, in the Event's
    order: ``Preparer.line``), which encodes to the very same line without building the Event."""
    try:
        line = _encoder.encode(event)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
        get = event.get if isinstance(event, dict) else lambda name: getattr(event, name)
        for name in (*JSON_FIELDS, *CONTENT_FIELDS):
            try:
                _encoder.encode(get(name))
            except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as exc:
                raise InvalidEvent(name, f"not JSON-encodable: {exc}") from None
        raise
    if len(line) > MAX_EVENT_BYTES:
        raise InvalidEvent("event", f"{len(line)} bytes encoded, over the {MAX_EVENT_BYTES} limit")
    # PostgreSQL text and jsonb cannot hold NUL. Most lines hold no backslash: an int operand
    # is one memchr, where a bytes operand is first tried as an int (an exception per call).
    if 92 in line and b"\\u0000" in line:  # 92: ord("\\")
        get = event.get if isinstance(event, dict) else lambda name: getattr(event, name, None)
        culprit = next((n for n in FIELDS if _has_nul(get(n))), None)
        if culprit is not None:
            raise InvalidEvent(culprit, "contains a NUL character, which stores cannot keep")
    return line


decode = msgspec.json.Decoder(Event).decode
