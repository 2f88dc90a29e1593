"""The emit API surface: fields, builder, helpers, context, OpenTelemetry, decorator, reads."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import sealog
from sealog import AuditLog, Event, InvalidQuery
from sealog.testing import MemoryStore, assert_audited


def test_emit_returns_a_uuid7_and_every_field_round_trips(audit_log: AuditLog) -> None:
    """All contract fields come back from get() as given (ip normalised, time in RFC 3339 Z)."""
    event_id = audit_log.emit(
        tenant_id="acme", action="content.publish", actor=("agent", "publisher"), target=("post", "p-1"),
        outcome="partial", ip_address="2001:db8:0::1", user_agent="ua/1", request_id="r-1",
        correlation_id="c" * 32, span_id="s" * 16, parent_event_id="parent", source="svc", latency_ms=12.5,
        error_code="E1", error_message="half done", metadata={"k": [1, 2.5, None, True]},
        proof={"type": "api_response", "data": {"post_id": "ig_1"}}, before={"a": 1}, after=[1, 2],
    )
    assert uuid.UUID(event_id).version == 7
    assert audit_log.flush()
    event = audit_log.get("acme", event_id)
    assert event is not None
    assert (event.actor_type, event.actor_id, event.target_type, event.target_id) == ("agent", "publisher", "post", "p-1")
    assert event.ip_address == "2001:db8:0::1"  # kept as given once valid (no re-encoding)
    assert (event.outcome, event.latency_ms, event.error_code, event.error_message) == ("partial", 12.5, "E1", "half done")
    assert event.metadata == {"k": [1, 2.5, None, True]}
    assert event.proof == {"type": "api_response", "data": {"post_id": "ig_1"}}
    assert (event.before, event.after) == ({"a": 1}, [1, 2])
    assert (event.request_id, event.source, event.parent_event_id) == ("r-1", "svc", "parent")
    assert event.occurred_at.endswith("Z")
    assert len(event.occurred_at) == len("2026-01-01T00:00:00.000000Z")
    assert event.seq == 1
    assert audit_log.get("globex", event_id) is None  # tenant-scoped


def test_builder_and_helpers_store_the_documented_shapes(audit_log: AuditLog) -> None:
    """Fluent builder, failed(), proof helpers and the named helpers' actions and fields."""
    ok = audit_log.event("acme").action("content.publish").actor("agent", "publisher") \
        .target("post", "p-1").succeeded().with_api_proof({"post_id": "ig_789"}).emit()
    bad = audit_log.event("acme").action("content.publish").failed("PLATFORM_ERROR", "Rate limit exceeded").emit()
    ids = {
        "auth.login": audit_log.login("acme", "u-1", ip_address="203.0.113.5", method="sso"),
        "auth.logout": audit_log.logout("acme", "u-1"),
        "data.export": audit_log.data_export("acme", "u-1", target=("report", "r-1"), export_format="csv", record_count=5),
        "data.deletion": audit_log.data_deletion("acme", "u-1", target=("user", "u-9"), reason="gdpr"),
        "settings.change": audit_log.settings_change("acme", "u-1", "theme", "dark", "light"),
    }
    assert audit_log.flush()
    published = audit_log.get("acme", ok)
    failed = audit_log.get("acme", bad)
    assert published is not None
    assert failed is not None
    assert published.proof == {"type": "api_response", "data": {"post_id": "ig_789"}}
    assert (failed.outcome, failed.error_code, failed.error_message) == ("failure", "PLATFORM_ERROR", "Rate limit exceeded")
    for action, event_id in ids.items():
        event = audit_log.get("acme", event_id)
        assert event is not None
        assert event.action == action
        assert event.actor_id == "u-1"
    change = audit_log.get("acme", ids["settings.change"])
    assert change is not None
    assert (change.target_id, change.before, change.after) == ("theme", "dark", "light")
    export = audit_log.get("acme", ids["data.export"])
    assert export is not None
    assert export.metadata == {"format": "csv", "record_count": 5}


def test_builders_in_many_threads_never_mix_fields(audit_log: AuditLog) -> None:
    """Each event is built on its own object: under threads, every stored event is consistent."""
    def work(n: int) -> None:
        for i in range(50):
            tag = f"{n}-{i}"
            audit_log.event("acme").action("test.thread").actor("user", tag).target("doc", tag) \
                .metadata(tag=tag).emit()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert audit_log.flush()
    events = list(audit_log.iter_events("acme"))
    assert len(events) == 400
    assert all(e.actor_id == e.target_id == e.metadata["tag"] for e in events)


def test_context_fills_fields_in_its_block_per_thread_and_task(audit_log: AuditLog) -> None:
    """context() applies inside the block only, and each thread and asyncio task sees its own."""
    with audit_log.context(tenant_id="acme", actor=("user", "u-1"), request_id="r-1", metadata={"app": "web"}):
        inside = audit_log.emit(action="skill.create", target=("skill", "s-1"), metadata={"x": 1})
    with pytest.raises(sealog.InvalidEvent):
        audit_log.emit(action="skill.create")  # no tenant outside the block

    seen: dict[str, str] = {}

    def thread_work(name: str) -> None:
        with audit_log.context(tenant_id="acme", request_id=name):
            seen[name] = audit_log.emit(action="test.ctx")

    threads = [threading.Thread(target=thread_work, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def task_work(name: str) -> None:
        with audit_log.context(tenant_id="acme", request_id=name):
            await asyncio.sleep(0)
            seen[name] = audit_log.emit(action="test.ctx")

    async def main() -> None:
        await asyncio.gather(*(task_work(f"a{n}") for n in range(4)))

    asyncio.run(main())
    assert audit_log.flush()
    event = audit_log.get("acme", inside)
    assert event is not None
    assert (event.actor_id, event.request_id, event.metadata) == ("u-1", "r-1", {"app": "web", "x": 1})
    for name, event_id in seen.items():
        stored = audit_log.get("acme", event_id)
        assert stored is not None
        assert stored.request_id == name


def test_opentelemetry_trace_becomes_the_correlation(audit_log: AuditLog) -> None:
    """With a span active, correlation_id is its 32-hex trace id and span_id its span id."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("sealog-test")
    with tracer.start_as_current_span("request") as span:
        event_id = audit_log.emit(tenant_id="acme", action="test.otel")
        context = span.get_span_context()
    untraced = audit_log.emit(tenant_id="acme", action="test.otel")
    assert audit_log.flush()
    event = audit_log.get("acme", event_id)
    assert event is not None
    assert event.correlation_id == f"{context.trace_id:032x}"
    assert event.span_id == f"{context.span_id:016x}"
    plain = audit_log.get("acme", untraced)
    assert plain is not None
    assert plain.correlation_id is None
    del trace


def test_audited_records_success_and_failure_and_reraises(audit_log: AuditLog) -> None:
    """Sync and async: outcome, latency, error class and redacted message/args; same exception out."""
    @audit_log.audited("tool.call", tenant_id="acme")
    def ok(query: str) -> str:
        return query.upper()

    boom = ValueError("bad password=hunter2")

    @audit_log.audited("tool.call", tenant_id="acme")
    def fails(query: str, api_key: str) -> None:
        raise boom

    @audit_log.audited("tool.acall", tenant_id="acme")
    async def afails(query: str) -> None:
        raise KeyError(query)

    assert ok("hi") == "HI"
    with pytest.raises(ValueError, match="hunter2") as raised:
        fails("q", api_key="sk-123")
    assert raised.value is boom
    with pytest.raises(KeyError):
        asyncio.run(afails("k"))
    assert audit_log.flush()
    events = {(e.action, e.outcome): e for e in audit_log.iter_events("acme")}
    success = events["tool.call", "success"]
    assert success.latency_ms is not None
    assert success.latency_ms >= 0
    assert success.metadata == {"args": {"query": "hi"}}
    failure = events["tool.call", "failure"]
    assert failure.error_code == "ValueError"
    assert failure.error_message == "bad password=[REDACTED]"
    assert failure.metadata == {"args": {"query": "q", "api_key": "[REDACTED]"}}
    assert events["tool.acall", "failure"].error_code == "KeyError"


def test_flush_and_close_are_bounded_and_idempotent(tmp_path: Path, db_url: str) -> None:
    """flush() says True once stored; a second close() returns at once; emit after close refuses."""
    log = AuditLog(db_url, spool_dir=tmp_path / "spool")
    log.emit(tenant_id="acme", action="test.close")
    assert log.flush(5)
    assert log.close()
    assert log.close()
    with pytest.raises(sealog.SealogError):
        log.emit(tenant_id="acme", action="test.close")


def test_module_level_default(tmp_path: Path, db_url: str) -> None:
    """configure(), then sealog.emit and sealog.event use that AuditLog."""
    log = sealog.configure(db_url, spool_dir=tmp_path / "spool")
    try:
        first = sealog.emit(tenant_id="acme", action="test.default")
        second = sealog.event("acme").action("test.default").emit()
        assert sealog.get_default() is log
        assert log.flush()
        assert log.get("acme", first) is not None
        assert log.get("acme", second) is not None
    finally:
        log.close()


def test_every_event_is_logged_at_debug_with_its_fields(audit_log: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    """The sealog.events logger gets each event, structured, in the record."""
    with caplog.at_level(logging.DEBUG, logger="sealog.events"):
        event_id = audit_log.emit(tenant_id="acme", action="test.debug", metadata={"k": "v"})
    records = [r for r in caplog.records if r.name == "sealog.events"]
    assert len(records) == 1
    fields: dict[str, Any] = records[0].sealog_event  # type: ignore[attr-defined]
    assert fields["event_id"] == event_id
    assert fields["metadata"] == {"k": "v"}


def test_patterns_and_keyset_paging(audit_log: AuditLog) -> None:
    """AMQP-style patterns; 250 events in pages of 100: each once, newest first, no overlap."""
    for action in ("auth.login", "auth.logout", "auth.mfa.verify", "gpt.oauth.token_exchange", "gpt.oauth"):
        audit_log.emit(tenant_id="acme", action=action)
    assert audit_log.flush()

    def actions(pattern: str) -> set[str]:
        return {e.action for e in audit_log.query("acme", action=pattern).events}

    assert actions("auth.*") == {"auth.login", "auth.logout"}
    assert actions("auth.#") == {"auth.login", "auth.logout", "auth.mfa.verify"}
    assert actions("gpt.oauth.#") == {"gpt.oauth", "gpt.oauth.token_exchange"}
    assert actions("*.*.*") == {"auth.mfa.verify", "gpt.oauth.token_exchange"}
    assert len(actions("#")) == 5
    with pytest.raises(InvalidQuery):
        audit_log.query("acme", action="Auth.*")

    for i in range(245):
        audit_log.emit(tenant_id="acme", action="test.page", metadata={"i": i})
    assert audit_log.flush()
    seen: list[Event] = []
    cursor = None
    while True:
        page = audit_log.query("acme", limit=100, after=cursor)
        seen += page.events
        if page.next is None:
            break
        cursor = page.next
    seqs = [e.seq or 0 for e in seen]
    assert seqs == sorted(seqs, reverse=True)
    assert sorted(seqs) == list(range(1, 251))


def test_memory_store_and_assert_audited_for_users_tests(tmp_path: Path) -> None:
    """sealog.testing lets an application's own tests check that it audited."""
    log = AuditLog(store=MemoryStore(), spool_dir=tmp_path / "spool")
    try:
        log.login("acme", "u-1")
        found = assert_audited(log, tenant_id="acme", action="auth.login", actor_id="u-1")
        assert found.seq == 1
        with pytest.raises(AssertionError, match=r"no 'auth\.logout'"):
            assert_audited(log, tenant_id="acme", action="auth.logout")
        assert log.verify().ok
    finally:
        log.close()


def test_nul_characters_are_refused_at_emit(audit_log: AuditLog) -> None:
    """A NUL cannot be stored by PostgreSQL, so every store refuses it up front, by field."""
    with pytest.raises(sealog.InvalidEvent) as raised:
        audit_log.emit(tenant_id="acme", action="test.nul", metadata={"k": "a\x00b"})
    assert raised.value.field == "metadata"
    literal = audit_log.emit(tenant_id="acme", action="test.nul", metadata={"k": "\\u0000 as text"})
    assert audit_log.flush()
    stored = audit_log.get("acme", literal)
    assert stored is not None
    assert stored.metadata == {"k": "\\u0000 as text"}
