"""Message bodies to events: sealog event JSON, CloudEvents 1.0, and domain events.

Every body becomes emit's keyword arguments and then passes through ``build``, which
applies emit's own checks and redaction, so the broker path cannot store an event that
``AuditLog.emit`` would have refused, nor a secret that emit would have scrubbed.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from .. import _timefmt as timefmt
from .._errors import InvalidEvent
from .._event import (
    FIELDS,
    SEAL_FIELDS,
    Event,
    check_action,
    check_ip,
    check_metadata,
    check_occurred_at,
    check_outcome,
    check_proof,
    check_tenant,
    decode,
    encode,
)
from .._redact import DEFAULT as DEFAULT_REDACTOR
from .._redact import Redactor

NAMESPACE: Final = uuid.UUID("6f1e8a52-3c0b-5d7e-9a41-2b8c5e0f7d13")
"""UUIDv5 namespace of the ids given to messages that carry none."""

_ACCEPTED: Final = frozenset(FIELDS) - frozenset(SEAL_FIELDS)
_STORED_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_decode_json = msgspec.json.decode


class _WireEvent(Event, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A sealog body decoded and type-checked in one C call: the common case, made cheap."""


_decode_wire = msgspec.json.Decoder(_WireEvent).decode


class Poison(ValueError):
    """A message that cannot become an event; its text is the dead-letter reason."""


def derived_id(body: bytes) -> str:
    """A deterministic event_id for a body without one: a redelivery maps to the same row."""
    return str(uuid.uuid5(NAMESPACE, hashlib.sha256(body).hexdigest()))


def to_event(body: bytes, *, default_tenant: str | None = None, message_id: str | None = None,
             redactor: Redactor = DEFAULT_REDACTOR) -> Event:
    """The checked, redacted event a message body stands for; raises Poison with the reason.

    The event_id is the body's own, else the AMQP ``message_id``, else derived from the body.
    """
    try:
        event = _decode_wire(body)
    except msgspec.DecodeError:
        pass  # not a complete, well-typed sealog event: the general path names the problem
    else:
        try:
            return _checked(event, redactor)
        except InvalidEvent as exc:
            raise Poison(f"invalid event: {exc}") from None
    try:
        data = _decode_json(body)
    except msgspec.DecodeError as exc:
        raise Poison(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Poison(f"body is a JSON {type(data).__name__}, not an object")
    try:
        if "specversion" in data:
            fields = from_cloudevent(data, default_tenant)
        elif "event_type" in data:
            fields = from_domain_event(data, default_tenant)
        elif "action" in data:
            fields = from_sealog(data)
        else:
            raise Poison("unrecognised body: expected a sealog event (tenant_id, action), "
                         "a CloudEvent (specversion) or a domain event (event_type, payload)")
        if fields.get("event_id") is None:
            fields["event_id"] = message_id or derived_id(body)
        return build(fields, redactor)
    except InvalidEvent as exc:
        raise Poison(f"invalid event: {exc}") from None


def from_sealog(data: dict[str, Any]) -> dict[str, Any]:
    """The sealog event JSON; seal fields are dropped because the store seals."""
    unknown = sorted(set(data) - _ACCEPTED - set(SEAL_FIELDS))
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


def build(fields: dict[str, Any], redactor: Redactor = DEFAULT_REDACTOR) -> Event:
    """Emit's checks and redaction, in emit's order, over keyword arguments from a body."""
    scrub = redactor.redact
    for name in ("event_id", "actor_id", "target_id", "tenant_id"):
        value = fields.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            fields[name] = str(value)  # numeric ids are common in other languages
    metadata, proof = fields.get("metadata"), fields.get("proof")
    before, after = fields.get("before"), fields.get("after")
    error_message = fields.get("error_message")
    occurred_at = fields.get("occurred_at")
    try:
        event = Event(**{
            **fields,
            "tenant_id": check_tenant(fields.get("tenant_id")),
            "action": check_action(fields.get("action")),
            "outcome": check_outcome(fields.get("outcome", "success")),
            "occurred_at": timefmt.now() if occurred_at is None else _occurred_at(occurred_at),
            "ip_address": check_ip(fields.get("ip_address")),
            "error_message": error_message if not isinstance(error_message, str)
            else redactor.text(error_message),
            "metadata": scrub(check_metadata(metadata), "metadata"),
            "proof": None if proof is None else scrub(check_proof(proof), "proof"),
            "before": None if before is None else scrub(before, "before"),
            "after": None if after is None else scrub(after, "after"),
        })
    except TypeError as exc:  # an unknown keyword
        raise InvalidEvent("event", str(exc)) from None
    return decode(encode(event))  # encode checks types and limits; decoding yields clean values


def _checked(event: Event, redactor: Redactor) -> Event:
    """``build`` for an event msgspec already type-checked: only the checks types cannot do."""
    scrub = redactor.redact
    check_tenant(event.tenant_id)
    check_action(event.action)
    changes: dict[str, Any] = {name: None for name in SEAL_FIELDS if getattr(event, name) is not None}
    occurred_at = _occurred_at(event.occurred_at)
    if occurred_at != event.occurred_at:
        changes["occurred_at"] = occurred_at
    if event.ip_address is not None and (ip := check_ip(event.ip_address)) != event.ip_address:
        changes["ip_address"] = ip
    if event.error_message is not None and (text := redactor.text(event.error_message)) is not event.error_message:
        changes["error_message"] = text
    if event.proof is not None:
        check_proof(event.proof)
    for name in ("metadata", "proof", "before", "after"):
        value = getattr(event, name)
        if value is not None and (scrubbed := scrub(value, name)) is not value:
            changes[name] = scrubbed
    if changes:
        event = msgspec.structs.replace(event, **changes)
    return decode(encode(event))  # encode checks size and NUL; decoding yields a plain Event


def _occurred_at(value: object) -> str:
    """check_occurred_at, with the stored form (most bodies) checked by one parse only."""
    if isinstance(value, str) and _STORED_TIME.fullmatch(value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("occurred_at", f"not an RFC 3339 timestamp: {value!r}") from None
        return value
    return check_occurred_at(value)
