"""The one preparation pipeline: every way an event comes in goes through ``Preparer``.

``emit``, the builder, the helpers, ``@audited``, HTTP ingest and the broker's envelopes
all call it, so an event is checked, enriched and redacted the same way whatever its
path. The steps, in order:

1. unpack the actor and target pairs;
2. fill what the caller left out from the bound context and the active trace, so what
   the context brings is checked and redacted like the caller's own fields;
3. validate every field, including the JSON value domain that every store keeps
   (integers within +-(2**53-1), finite floats, string keys, no sets, bytes or objects,
   timestamps in years 1..9999): an event that passes can be stored by every store. The
   same walk gathers the strings that could hold a secret (``check_gather``);
4. redact secrets from every text field and every JSON value: one search of the gathered
   strings (``Redactor.may_match``) settles most events, the full walk runs only when
   something could match;
5. encode the spool line: the size limit, NUL characters and lone surrogates. Types and
   lengths were checked above, field by field, so the line is not decoded again (that
   decode was a tenth of emit's cost); the writer's typed decode is the backstop. emit
   encodes the fields as a dict in the Event's order (``Preparer.line``), which gives the
   Event's very line without building the Event (``Event(**fields)`` cost ~15% of emit).
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
    encode_fields,
)
from ._redact import _SHORT as SHORT
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
_CONTAINERS: Final = (dict, list, tuple, str)
"""Subclasses of these the redactor walks itself (``check_gather`` cannot vouch for them)."""


class Preparer:
    """Checks, enriches and redacts one event into its spool line; one per AuditLog."""

    def __init__(self, redactor: Redactor, source: str | None = None) -> None:
        self.redactor = redactor
        self.source = source
        self._tenants: set[str] = set()
        self._actions: set[str] = set()
        self._ips: set[str] = set()

    def prepare(
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
        fields, line = self.line(
            tenant_id, action, actor, target, outcome, actor_type, actor_id, target_type, target_id,
            ip_address, user_agent, request_id, correlation_id, span_id, parent_event_id, source,
            latency_ms, error_code, error_message, metadata, proof, before, after, occurred_at, event_id,
            use_context,
        )
        return Event(**fields), line

    def line(  # noqa: PLR0915  - one straight pipeline: a call per step would cost emit's hot path
        self, tenant_id: Any, action: Any, actor: Any, target: Any, outcome: Any, actor_type: Any,
        actor_id: Any, target_type: Any, target_id: Any, ip_address: Any, user_agent: Any,
        request_id: Any, correlation_id: Any, span_id: Any, parent_event_id: Any, source: Any,
        latency_ms: Any, error_code: Any, error_message: Any, metadata: Any, proof: Any, before: Any,
        after: Any, occurred_at: Any, event_id: Any, use_context: bool = True,
    ) -> tuple[dict[str, Any], bytes]:
        """``prepare`` for emit: positional (keywords cost emit a name search per argument), and
        the event's fields (only those set, in the Event's order) rather than an Event."""
        # 1. pairs
        if actor is not None:
            if type(actor) is tuple and len(actor) == 2 and type(actor[0]) is str and type(actor[1]) is str:
                actor_type, actor_id = actor
            else:
                actor_type, actor_id = pair("actor", actor)
        if target is not None:
            if type(target) is tuple and len(target) == 2 and type(target[0]) is str and type(target[1]) is str:
                target_type, target_id = target
            else:
                target_type, target_id = pair("target", target)
        # 2. context and trace
        bound = caller = None
        if use_context:
            bound = context.current()
            if bound:
                caller = (actor_type, actor_id, target_type, target_id, user_agent, request_id, correlation_id,
                          span_id, parent_event_id, source, error_code, error_message)
                (metadata, tenant_id, actor_type, actor_id, target_type, target_id, ip_address, user_agent,
                 request_id, correlation_id, span_id, parent_event_id, source) = _fill(
                    bound, metadata, tenant_id, actor_type, actor_id, target_type, target_id, ip_address,
                    user_agent, request_id, correlation_id, span_id, parent_event_id, source)
            if correlation_id is None and context.trace_active is not None and context.trace_active():
                trace = None if context.trace_ids is None else context.trace_ids()
                if trace is not None:
                    correlation_id = trace[0]
                    if span_id is None:
                        span_id = trace[1]
        if source is None:
            source = self.source
        # 3. validate, and gather the strings that could hold a secret (one walk for both)
        if type(tenant_id) is not str or tenant_id not in self._tenants:
            _remember(self._tenants, check_tenant(tenant_id))
        if type(action) is not str or action not in self._actions:
            _remember(self._actions, check_action(action))
        if outcome != "success":
            check_outcome(outcome)
        occurred = timefmt.now() if occurred_at is None else check_occurred_at(occurred_at)
        if ip_address is not None and (type(ip_address) is not str or ip_address not in self._ips):
            check_ip(ip_address)
            _remember(self._ips, ip_address)
        if latency_ms is not None:
            check_latency(latency_ms)
        redactor = self.redactor
        texts: list[str] | None = [] if redactor.quick else None
        too_long = False
        for value in (actor_type, actor_id, target_type, target_id, user_agent, request_id, correlation_id,
                      span_id, parent_event_id, source, error_code, error_message):
            if value is None:
                continue
            if type(value) is not str:
                if not isinstance(value, str):
                    raise self._not_text((actor_type, actor_id, target_type, target_id, user_agent, request_id,
                                          correlation_id, span_id, parent_event_id, source, error_code,
                                          error_message), caller, bound)
                texts = None  # a str subclass: the redactor walks it itself
            elif texts is not None and (len(value) >= SHORT or ":" in value or "=" in value):
                texts.append(value)
                too_long = too_long or len(value) > MAX_FIELD_CHARS
        if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID):
            raise InvalidEvent("event_id", "must be text of 1 to 128 characters")
        if metadata is None:
            metadata = {}
        elif type(metadata) is not dict:
            metadata = check_metadata(metadata)
        if texts is None:
            check_json(metadata, "metadata")
        elif not check_gather(metadata, "metadata", texts, redactor):
            texts = None
        if proof is not None:
            texts = _check(check_proof(proof), "proof", texts, redactor)
        if before is not None:
            texts = _check(before, "before", texts, redactor)
        if after is not None:
            texts = _check(after, "after", texts, redactor)
        # 5. encode (4, redaction, below when anything could match): the fields in the Event's
        # order, only those set (the Event's omit_defaults), so the line is the Event's encoding
        fields = {"event_id": str(uuid7()) if event_id is None else event_id, "tenant_id": tenant_id,
                  "action": action, "occurred_at": occurred}
        if outcome != "success":
            fields["outcome"] = outcome
        if actor_type is not None:
            fields["actor_type"] = actor_type
        if actor_id is not None:
            fields["actor_id"] = actor_id
        if target_type is not None:
            fields["target_type"] = target_type
        if target_id is not None:
            fields["target_id"] = target_id
        if ip_address is not None:
            fields["ip_address"] = ip_address
        if user_agent is not None:
            fields["user_agent"] = user_agent
        if request_id is not None:
            fields["request_id"] = request_id
        if correlation_id is not None:
            fields["correlation_id"] = correlation_id
        if span_id is not None:
            fields["span_id"] = span_id
        if parent_event_id is not None:
            fields["parent_event_id"] = parent_event_id
        if source is not None:
            fields["source"] = source
        if latency_ms is not None:
            fields["latency_ms"] = latency_ms
        if error_code is not None:
            fields["error_code"] = error_code
        if error_message is not None:
            fields["error_message"] = error_message
        if metadata:
            fields["metadata"] = metadata
        if proof is not None:
            fields["proof"] = proof
        if before is not None:
            fields["before"] = before
        if after is not None:
            fields["after"] = after
        # 4. redact: one search of the gathered strings decides for the event; a walk only when needed
        if texts is None or (texts and redactor.may_match(texts)):
            self._redact(fields)
            too_long = True
        if too_long:  # after redaction: the lengths that get stored
            for name in self._arrival((actor_type, actor_id, target_type, target_id, user_agent, request_id,
                                       correlation_id, span_id, parent_event_id, source, error_code,
                                       error_message), caller, bound):
                value, limit = fields.get(name), TEXT_LIMITS[name]
                if value is not None and len(value) > limit:
                    raise InvalidEvent(name, f"{len(value)} characters, over the limit of {limit}")
        return fields, encode_fields(fields)

    def _redact(self, fields: dict[str, Any]) -> None:
        """Step 4, in place: every text field and JSON value of the event that needs it."""
        redact = self.redactor.redact
        for name in _REDACTED_FIELDS:
            value = fields.get(name)
            if value is not None:
                fields[name] = redact(value, name)

    def _not_text(self, values: tuple[Any, ...], caller: tuple[Any, ...] | None,
                  bound: dict[str, Any] | None) -> InvalidEvent:
        """The first text field that is not a string (``values`` in ``TEXT_FIELDS`` order)."""
        current = dict(zip(TEXT_FIELDS, values, strict=True))
        name, value = next((n, current[n]) for n in self._arrival(values, caller, bound)
                           if current[n] is not None and not isinstance(current[n], str))
        return InvalidEvent(name, f"must be text, not {type(value).__name__}")

    def _arrival(self, values: tuple[Any, ...], caller: tuple[Any, ...] | None,
                 bound: dict[str, Any] | None) -> list[str]:
        """The text fields in the order they came, which decides which of two bad ones is named:
        the caller's own, then the context's (as bound), the trace's and the AuditLog's source."""
        if caller is None:  # no context: only the source may have come from elsewhere
            caller = (*values[:9], None if values[9] is self.source else values[9], *values[10:])
        order = [name for name, value in zip(TEXT_FIELDS, caller, strict=True) if value is not None]
        order += [name for name in bound or () if name in TEXT_FIELDS and name not in order]
        return order + [name for name in TEXT_FIELDS if name not in order]

    def prepare_fields(self, fields: Mapping[str, Any], *, use_context: bool = False) -> tuple[Event, bytes]:
        """``prepare`` for a mapping from outside (HTTP, broker): unknown keys are named."""
        try:
            return self.prepare(**fields, use_context=use_context)
        except TypeError as exc:  # an unknown keyword; emit's own signature names it
            name = str(exc).rpartition("'")[0].rpartition("'")[2] or "event"
            raise InvalidEvent(name, "is not an event field") from None


_REDACTED_FIELDS: Final = (*TEXT_FIELDS, "metadata", "proof", "before", "after")


def _fill(bound: dict[str, Any], metadata: Any, *given: Any) -> tuple[Any, ...]:
    """Step 2: what the caller left out (``given``, in ``CONTEXT_FIELDS`` order), from the bound context."""
    fields = dict(zip(CONTEXT_FIELDS, given, strict=True))
    for name, value in bound.items():
        if name == "metadata":
            metadata = {**value, **check_metadata(metadata)}
        elif fields[name] is None:
            fields[name] = value
    return metadata, *fields.values()


def _check(value: Any, field: str, texts: list[str] | None, redactor: Redactor) -> list[str] | None:
    """``check_json``, gathering into ``texts`` while they still decide (see ``check_gather``)."""
    if texts is None:
        check_json(value, field)
        return None
    return texts if check_gather(value, field, texts, redactor) else None


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


def check_gather(value: Any, field: str, texts: list[str], redactor: Redactor, depth: int = 0) -> bool:
    """``check_json`` that also gathers the strings that could hold a secret into ``texts``
    (for ``Redactor.may_match``), so emit walks each value once.

    False when the redactor must walk the value itself (a secret-named key that holds
    something, a str, dict or list subclass); the value is then checked all the same.
    """
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise InvalidEvent(field, f"nested deeper than {MAX_DEPTH} levels")
        known = redactor.known_keys
        for key, item in value.items():
            if known.get(key) is not False:  # not a name known to be plain: new, secret or not a str
                if type(key) is not str and not isinstance(key, str):
                    raise InvalidEvent(field, f"object key {key!r:.60} is not a string")
                if item is not None and (type(key) is not str or redactor.secret_key(key)):
                    check_json(value, field, depth)
                    return False
            item_kind = type(item)
            if item_kind is str:
                if len(item) >= SHORT or ":" in item or "=" in item:
                    texts.append(item)
            elif item_kind is int:
                if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                    raise InvalidEvent(field, f"integer {item:.3g} is outside +-(2**53-1), which JSON keeps exactly")
            elif item is not None and item_kind is not bool and not check_gather(item, field, texts, redactor,
                                                                                 depth + 1):
                check_json(value, field, depth)  # the items after this one
                return False
        return True
    if kind is str:
        if len(value) >= SHORT or ":" in value or "=" in value:
            texts.append(value)
        return True
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise InvalidEvent(field, f"nested deeper than {MAX_DEPTH} levels")
        for item in value:
            if not check_gather(item, field, texts, redactor, depth + 1):
                check_json(value, field, depth)
                return False
        return True
    check_json(value, field, depth)
    return kind is float or kind is int or not isinstance(value, _CONTAINERS)


def _remember(cache: set[str], value: str) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache.add(value)

