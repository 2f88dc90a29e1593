"""emit's fast pipeline (``Preparer.line``): its spool line is the Event's own encoding, and
its one walk of each value both checks it and decides whether redaction has work to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from sealog import AuditLog, InvalidEvent
from sealog._event import Event, decode, encode
from sealog._prepare import Preparer
from sealog._redact import Redactor
from sealog.testing import MemoryStore
from tests.test_emit_fuzz import emit_kwargs


class Name(str):
    """A str subclass, as a key or a value."""


@pytest.fixture
def mem_log(tmp_path: Path) -> Any:
    with AuditLog(store=MemoryStore(), spool_dir=tmp_path / "spool") as log:
        yield log


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(kwargs=emit_kwargs)
def test_the_line_is_the_encoding_of_the_event_it_holds(kwargs: dict[str, Any]) -> None:
    """Any accepted input: the line emit spools is byte for byte ``encode(Event(...))`` of its
    fields, and the writer's typed decode reads it."""
    preparer = Preparer(Redactor(), source="svc")
    try:
        event, line = preparer.prepare(**kwargs)
    except InvalidEvent:
        return
    assert line == encode(event)
    back = decode(line)
    assert (back.event_id, back.tenant_id, back.actor_id) == (event.event_id, event.tenant_id, event.actor_id)


def test_a_plain_event_line_omits_what_is_unset_in_field_order() -> None:
    _, line = Preparer(Redactor()).prepare(
        tenant_id="acme", action="auth.login", actor=("user", "u-1"), metadata={"mfa": True},
        event_id="e-1", occurred_at="2026-01-02T03:04:05Z")
    assert line == (b'{"event_id":"e-1","tenant_id":"acme","action":"auth.login",'
                    b'"occurred_at":"2026-01-02T03:04:05.000000Z","actor_type":"user","actor_id":"u-1",'
                    b'"metadata":{"mfa":true}}')


def test_the_first_text_field_that_is_not_text_is_named_in_the_order_fields_came(mem_log: AuditLog) -> None:
    """The caller's own fields first, then the context's in the order they were bound (lengths too)."""
    bad: dict[str, Any] = {"user_agent": 1, "actor_type": 2}
    with pytest.raises(InvalidEvent) as raised:
        mem_log.emit(tenant_id="acme", action="a.b", **bad)
    assert raised.value.field == "actor_type"
    with mem_log.context(request_id=7, actor_type=5), pytest.raises(InvalidEvent) as raised:
        mem_log.emit(tenant_id="acme", action="a.b")
    assert raised.value.field == "request_id"
    with mem_log.context(actor_id="x" * 2000), pytest.raises(InvalidEvent) as raised:
        mem_log.emit(tenant_id="acme", action="a.b", target=("doc", "y" * 1500))
    assert raised.value.field == "target_id"
    with mem_log.context(request_id=7), pytest.raises(InvalidEvent) as raised:
        mem_log.emit(tenant_id="acme", action="a.b", **{"error_message": 3})  # type: ignore[arg-type]
    assert raised.value.field == "error_message"


def test_a_secret_named_key_of_a_str_subclass_is_redacted(tmp_path: Path) -> None:
    """A key the key cache cannot vouch for sends the event to the redactor's full walk."""
    log = AuditLog(store=MemoryStore(), spool_dir=tmp_path / "spool", redactor=Redactor())
    try:
        log.emit(tenant_id="acme", action="a.b", metadata={Name("password"): "hunter2", "n": {Name("pin"): 1234}})
        assert log.flush()
        (event,) = log.iter_events("acme")
        assert event.metadata == {"password": "[REDACTED]", "n": {"pin": "[REDACTED]"}}
        assert b"hunter2" not in b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("*.seg"))
    finally:
        log.close()


@pytest.mark.parametrize(("metadata", "stored"), [
    ({"note": "see password=hunter2"}, {"note": "see password=[REDACTED]"}),
    ({"deep": [{"x": ["Bearer abcdefghijklmnop"]}]}, {"deep": [{"x": ["[REDACTED]"]}]}),
    ({"tag": Name("token: abc123")}, {"tag": "token: [REDACTED]"}),
    ({"api_key": None, "ok": "short"}, {"api_key": None, "ok": "short"}),
])
def test_one_walk_finds_every_secret_a_full_walk_would(mem_log: AuditLog, metadata: dict[str, Any],
                                                       stored: dict[str, Any]) -> None:
    event_id = mem_log.emit(tenant_id="acme", action="a.b", metadata=metadata)
    assert mem_log.flush()
    event = mem_log.get("acme", event_id)
    assert event is not None
    assert event.metadata == stored


def test_a_backslash_u0000_in_text_is_not_a_nul(mem_log: AuditLog) -> None:
    """The NUL check looks for a backslash first; an escaped backslash before u0000 is text."""
    event_id = mem_log.emit(tenant_id="acme", action="a.b", metadata={"path": "C:\\u0000"})
    assert mem_log.flush()
    event = mem_log.get("acme", event_id)
    assert event is not None
    assert event.metadata == {"path": "C:\\u0000"}
    with pytest.raises(InvalidEvent) as raised:
        mem_log.emit(tenant_id="acme", action="a.b", metadata={"path": "C:\x00"})
    assert raised.value.field == "metadata"


def test_the_debug_record_holds_every_field(mem_log: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    """emit builds the Event only for the debug record; it has every field, None included."""
    import logging

    with caplog.at_level(logging.DEBUG, logger="sealog.events"):
        event_id = mem_log.emit(tenant_id="acme", action="a.b", outcome="failure", latency_ms=3)
    (record,) = [r for r in caplog.records if r.name == "sealog.events"]
    fields = record.sealog_event  # type: ignore[attr-defined]
    assert fields == {**Event(event_id=event_id, tenant_id="acme", action="a.b", outcome="failure",
                              latency_ms=3, occurred_at=fields["occurred_at"]).to_dict()}
    assert fields["user_agent"] is None
