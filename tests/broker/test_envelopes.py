"""The three accepted body formats, mapped and checked exactly like emit (no broker needed)."""

from __future__ import annotations

import json
import uuid

import pytest

from sealog._redact import REDACTED
from sealog.broker.envelopes import Poison, derived_id, to_event


def body(value: object) -> bytes:
    return json.dumps(value).encode()


DOMAIN = {
    "event_type": "billing.invoice.paid", "event_id": "inv-42-paid", "timestamp": "2024-05-01T10:00:00+02:00",
    "source_service": "billing-svc",
    "payload": {"organization_id": "org-7", "clerk_user_id": "user_2x", "ip_address": "2001:db8::1",
                "user_agent": "curl/8", "amount": 1200, "api_key": "sk_live_abcdefghijklmnop"},
}

CLOUD = {
    "specversion": "1.0", "type": "content.publish", "id": "3f0c1d2e-0000-4000-8000-000000000001",
    "source": "/services/publisher", "time": "2024-05-01T08:00:00Z", "subject": "post-9",
    "tenantid": "acme", "datacontenttype": "application/json", "data": {"platform": "instagram"},
}


def test_domain_event_mapping_follows_the_contract() -> None:
    """event_type, event_id, timestamp, source_service and payload fields land where DESIGN.md says."""
    event = to_event(body(DOMAIN))
    assert (event.action, event.event_id, event.source) == ("billing.invoice.paid", "inv-42-paid", "billing-svc")
    assert event.occurred_at == "2024-05-01T08:00:00.000000Z"
    assert (event.tenant_id, event.actor_type, event.actor_id) == ("org-7", "user", "user_2x")
    assert (event.ip_address, event.user_agent) == ("2001:db8::1", "curl/8")
    assert event.metadata["amount"] == 1200
    assert event.metadata["api_key"] == REDACTED  # emit's redaction applies to broker bodies too


def test_domain_event_tenant_falls_back_to_the_default() -> None:
    """payload.tenant_id wins, then organization_id, then --default-tenant; none at all is poison."""
    plain = {"event_type": "auth.login", "payload": {"user_id": "u-1"}}
    assert to_event(body(plain), default_tenant="fallback").tenant_id == "fallback"
    assert to_event(body({**plain, "payload": {"tenant_id": "t1", "organization_id": "o1"}})).tenant_id == "t1"
    with pytest.raises(Poison, match="tenant_id"):
        to_event(body(plain))


def test_cloudevent_mapping_follows_the_contract() -> None:
    """type, id, source, time, subject, data and the tenantid extension map to the event."""
    event = to_event(body(CLOUD))
    assert (event.action, event.event_id, event.source) == ("content.publish", CLOUD["id"], "/services/publisher")
    assert (event.tenant_id, event.target_id, event.metadata) == ("acme", "post-9", {"platform": "instagram"})
    assert event.occurred_at == "2024-05-01T08:00:00.000000Z"


def test_sealog_event_json_round_trips_and_drops_seal_fields() -> None:
    """A sealog event body is accepted as is; a forwarded stored event's seal is not trusted."""
    sent = {"event_id": "e-1", "tenant_id": "acme", "action": "auth.login", "outcome": "failure",
            "occurred_at": "2024-01-01T00:00:00Z", "seq": 7, "hash": "ab" * 32,
            "error_message": "Authorization: Bearer abcdefghijklmnopqrstu"}
    event = to_event(body(sent))
    assert (event.event_id, event.outcome, event.seq, event.hash) == ("e-1", "failure", None, None)
    assert "abcdefghijklmnopqrstu" not in (event.error_message or "")


def test_ids_kept_as_given_or_derived_deterministically() -> None:
    """A non-UUID id is kept; no id gives the message_id, else the same UUID for the same body."""
    no_id = body({"event_type": "auth.login", "payload": {"tenant_id": "t"}})
    assert to_event(no_id).event_id == to_event(no_id).event_id == derived_id(no_id)
    assert uuid.UUID(derived_id(no_id)).version == 5
    assert to_event(no_id, message_id="m-1").event_id == "m-1"
    assert derived_id(no_id) != derived_id(no_id + b" ")


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff not json", "not JSON"),
    (b"[1, 2]", "not an object"),
    (body({"hello": "world"}), "unrecognised body"),
    (body({"tenant_id": "t", "action": "Auth.Login"}), "action"),
    (body({"tenant_id": "t", "action": "a.b", "colour": "red"}), "unknown field 'colour'"),
    (body({"tenant_id": "t", "action": "a.b", "ip_address": "999.1.1.1"}), "ip_address"),
    (body({"tenant_id": "t", "action": "a.b", "metadata": {"x": "y" * 70_000}}), "limit"),
    (body({**CLOUD, "specversion": "0.3"}), "specversion"),
    (body({**CLOUD, "data": "text"}), "data must be a JSON object"),
    (body({**DOMAIN, "timestamp": "yesterday"}), "occurred_at"),
])
def test_bodies_emit_would_refuse_are_poison(raw: bytes, reason: str) -> None:
    """Each is refused with a reason naming what is wrong, as emit's InvalidEvent would."""
    with pytest.raises(Poison, match=reason):
        to_event(raw)
