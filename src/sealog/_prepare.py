"""The one preparation pipeline: every way an event comes in goes through ``Preparer``.

``emit``, the builder, the helpers, ``@audited``, HTTP ingest and the broker's envelopes
all call it, so an event is checked, enriched and redacted the same way whatever its
path. The steps, in order:

1. unpack the actor and target pairs;
2. fill what the caller left out from the bound context and the active trace, so what
   the context brings is checked and redacted like the caller's own fields;
3. validate every field, including the JSON value domain that every store keeps
   (integers within +-(2**53-1), finite floats, string keys, no sets, bytes or objects,
   timestamps in years 1..9999): an event that passes can be stored by every store;
4. redact secrets from every text field and every JSON value;
5. encode the spool line: the size limit, NUL characters and lone surrogates. Types and
   lengths were checked above, field by field, so the line is not decoded again (that
   decode was a tenth of emit's cost); the writer's typed decode is the backstop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Final
from uuid import UUID

from uuid_utils import uuid7

from . import _context as context
from . import _timefmt as timefmt
from ._errors import InvalidEvent
from ._event import (
    MAX_EVENT_ID,
    MAX_FIELD_CHARS,
    MAX_SAFE_INT,
    TEXT_LIMITS,
    Event,
    check_action,
    check_ip,
    check_metadata,
    check_occurred_at,
    check_outcome,
    check_proof,
    check_tenant,
    encode,
)
from ._redact import Redactor

CONTEXT_FIELDS: Final = (
    "tenant_id", "actor_type", "actor_id", "target_type", "target_id", "ip_address",
    "user_agent", "request_id", "correlation_id", "span_id", "parent_event_id", "source",
)
"""What ``log.context(...)`` may bind, besides ``metadata`` (merged under the event's own)."""
TEXT_FIELDS: Final = (
    "actor_type", "actor_id", "target_type", "target_id", "user_agent", "request_id",
    "correlation_id", "span_id", "parent_event_id", "source", "error_code", "error_message",
)
"""Free text fields: each is type-checked and redacted (a token in a user agent is a leak too)."""
MAX_DEPTH: Final = 64
_CACHE_LIMIT: Final = 10_000
_LEAVES: Final = (datetime, date, time, UUID, Decimal)
# isinstance() on hot paths takes tuples: ``list | tuple`` would build a union type per call.
_SEQUENCES: Final = (list, tuple)
_TEXT_OR_BOOL: Final = (str, bool)
"""Objects msgspec writes as strings; kept (the README promises it), never walked."""


class Preparer:
    """Checks, enriches and redacts one event into its spool line; one per AuditLog."""

    def __init__(self, redactor: Redactor, source: str | None = None) -> None:
        self.redactor = redactor
        self.source = source
        self._tenants: set[str] = set()
        self._actions: set[str] = set()

    def prepare(  # noqa: PLR0915  - one straight pipeline: a call per step would cost emit's hot path
        self,
        *,
        tenant_id: Any = None,
        action: Any = None,
        actor: Any = None,
        target: Any = None,
        outcome: Any = "success",
        actor_type: Any = None,
        actor_id: Any = None,
        target_type: Any = None,
        target_id: Any = None,
        ip_address: Any = None,
        user_agent: Any = None,
        request_id: Any = None,
        correlation_id: Any = None,
        span_id: Any = None,
        parent_event_id: Any = None,
        source: Any = None,
        latency_ms: Any = None,
        error_code: Any = None,
        error_message: Any = None,
        metadata: Any = None,
        proof: Any = None,
        before: Any = None,
        after: Any = None,
        occurred_at: Any = None,
        event_id: Any = None,
        use_context: bool = True,
    ) -> tuple[Event, bytes]:
        """The checked, redacted event and its spool line; InvalidEvent names the culprit."""
        # 1. pairs
        if actor is not None:
            actor_type, actor_id = pair("actor", actor)
        if target is not None:
            target_type, target_id = pair("target", target)
        text: dict[str, Any] = {}  # only what is given: fewer fields to check, redact and pass on
        if actor_type is not None:
            text["actor_type"] = actor_type
        if actor_id is not None:
            text["actor_id"] = actor_id
        if target_type is not None:
            text["target_type"] = target_type
        if target_id is not None:
            text["target_id"] = target_id
        if user_agent is not None:
            text["user_agent"] = user_agent
        if request_id is not None:
            text["request_id"] = request_id
        if correlation_id is not None:
            text["correlation_id"] = correlation_id
        if span_id is not None:
            text["span_id"] = span_id
        if parent_event_id is not None:
            text["parent_event_id"] = parent_event_id
        if source is not None:
            text["source"] = source
        if error_code is not None:
            text["error_code"] = error_code
        if error_message is not None:
            text["error_message"] = error_message
        # 2. context and trace
        if use_context:
            tenant_id, ip_address, metadata = self._fill(text, tenant_id, ip_address, metadata)
        if "source" not in text and self.source is not None:
            text["source"] = self.source
        # 3. validate
        if type(tenant_id) is not str or tenant_id not in self._tenants:
            _remember(self._tenants, check_tenant(tenant_id))
        if type(action) is not str or action not in self._actions:
            _remember(self._actions, check_action(action))
        if outcome != "success":
            check_outcome(outcome)
        occurred = timefmt.now() if occurred_at is None else check_occurred_at(occurred_at)
        if ip_address is not None:
            ip_address = check_ip(ip_address)
        if latency_ms is not None:
            check_latency(latency_ms)
        for name, value in text.items():
            if type(value) is not str and not isinstance(value, str):
                raise InvalidEvent(name, f"must be text, not {type(value).__name__}")
        if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID):
            raise InvalidEvent("event_id", "must be text of 1 to 128 characters")
        metadata = check_metadata(metadata)
        check_values(metadata, proof, before, after)
        # 4. redact
        json: dict[str, Any] = {"metadata": metadata}
        if proof is not None:
            json["proof"] = proof
        if before is not None:
            json["before"] = before
        if after is not None:
            json["after"] = after
        self._redact(text, json)
        for name, value in text.items():  # after redaction: the lengths that get stored
            if len(value) > MAX_FIELD_CHARS and len(value) > TEXT_LIMITS[name]:
                raise InvalidEvent(name, f"{len(value)} characters, over the limit of {TEXT_LIMITS[name]}")
        # 5. encode
        event = Event(
            event_id=str(uuid7()) if event_id is None else event_id,
            tenant_id=tenant_id, action=action, occurred_at=occurred, outcome=outcome,
            ip_address=ip_address, latency_ms=latency_ms, **json, **text,
        )
        return event, encode(event)

    @staticmethod
    def _fill(text: dict[str, Any], tenant_id: Any, ip_address: Any, metadata: Any) -> tuple[Any, Any, Any]:
        """Step 2: what the caller left out, from the bound context and the active trace."""
        bound = context.current()
        if bound:
            for name, value in bound.items():
                if name == "metadata":
                    metadata = {**value, **check_metadata(metadata)}
                elif name == "tenant_id":
                    tenant_id = value if tenant_id is None else tenant_id
                elif name == "ip_address":
                    ip_address = value if ip_address is None else ip_address
                elif name not in text:
                    text[name] = value
        if "correlation_id" not in text and context.trace_ids is not None and (trace := context.trace_ids()):
            text["correlation_id"] = trace[0]
            if "span_id" not in text:
                text["span_id"] = trace[1]
        return tenant_id, ip_address, metadata

    def _redact(self, text: dict[str, Any], json: dict[str, Any]) -> None:
        """Step 4, in place: every text field and JSON value of the event, in one search."""
        values = [*text.values(), *json.values()]
        scrubbed = self.redactor.redact_all(values, [*text, *json])
        if scrubbed is not values:
            for name, value in zip((*text, *json), scrubbed, strict=True):
                (text if name in text else json)[name] = value

    def prepare_fields(self, fields: Mapping[str, Any], *, use_context: bool = False) -> tuple[Event, bytes]:
        """``prepare`` for a mapping from outside (HTTP, broker): unknown keys are named."""
        try:
            return self.prepare(**fields, use_context=use_context)
        except TypeError as exc:  # an unknown keyword; emit's own signature names it
            name = str(exc).rpartition("'")[0].rpartition("'")[2] or "event"
            raise InvalidEvent(name, "is not an event field") from None


def pair(field: str, value: Any) -> tuple[str, str]:
    """A (type, id) pair of strings; a two-letter string is not a pair."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is str and type(value[1]) is str:
        return value  # the common case, checked without a call
    if isinstance(value, _SEQUENCES) and len(value) == 2:
        kind, ident = value
        if isinstance(kind, str) and isinstance(ident, str):
            return kind, ident
        raise InvalidEvent(f"{field}_type" if not isinstance(kind, str) else f"{field}_id",
                           "must be text: give a (type, id) pair of strings")
    raise InvalidEvent(field, "must be a (type, id) pair of strings")


def check_values(metadata: dict[str, Any], proof: Any, before: Any, after: Any) -> None:
    check_json(metadata, "metadata")
    if proof is not None:
        check_json(check_proof(proof), "proof")
    if before is not None:
        check_json(before, "before")
    if after is not None:
        check_json(after, "after")


def check_latency(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("latency_ms", f"must be a number of milliseconds, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent("latency_ms", f"{value} is not a finite number")
    if value < 0:
        raise InvalidEvent("latency_ms", f"{value} is negative")


def check_json(value: Any, field: str, depth: int = 0) -> None:
    """Raise InvalidEvent unless ``value`` is JSON that every store and RFC 8785 keep exactly."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return
    if kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise InvalidEvent(field, f"integer {value:.3g} is outside +-(2**53-1), which JSON keeps exactly")
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidEvent(field, f"{value} is not a JSON number")
        return
    if depth >= MAX_DEPTH:
        raise InvalidEvent(field, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise InvalidEvent(field, f"object key {key!r:.60} is not a string")
            item_kind = type(item)  # inlined: most items are plain scalars
            if item_kind is str or item is None or item_kind is bool or (
                    item_kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT):
                continue
            check_json(item, field, depth + 1)
        return
    if isinstance(value, _SEQUENCES):
        for item in value:
            check_json(item, field, depth + 1)
        return
    if isinstance(value, Enum):  # msgspec writes an enum's value
        check_json(value.value, field, depth + 1)
        return
    if isinstance(value, _TEXT_OR_BOOL):
        return
    if isinstance(value, int):  # a subclass is held to the same range as int itself
        check_json(int(value), field, depth)
        return
    if isinstance(value, float):
        check_json(float(value), field, depth)
        return
    if isinstance(value, _LEAVES):
        return
    raise InvalidEvent(field, f"{kind.__name__} is not JSON: convert sets, bytes and objects first")


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache.add(value)

