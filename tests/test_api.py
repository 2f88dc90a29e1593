"""The emit API surface: ids, fields, builder, helpers, context, OpenTelemetry, @audited,
flush/close, the module default, the DEBUG log, queries, paging and sealog.testing."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sealog
import sealog._default
from sealog import REDACTED, AuditLog, Event, InvalidEvent, InvalidQuery, SealogError
from sealog._chain import GENESIS
from sealog._event import FIELDS, SEAL_FIELDS
from sealog.testing import MemoryStore, assert_audited

STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def stored(log: AuditLog, event_id: str, tenant_id: str = "acme") -> Event:
    event = log.get(tenant_id, event_id)
    assert event is not None, f"{event_id} was not stored for {tenant_id}"
    return event


def content(event: Event) -> dict[str, Any]:
    return {k: v for k, v in event.to_dict().items() if k not in SEAL_FIELDS}


# -- emit ------------------------------------------------------------------------------


def test_emit_returns_a_uuid7_at_once_even_while_the_store_is_away(tmp_path: Path) -> None:
    """emit hands back a version-7 UUID string as soon as the event is spooled, not when it is stored."""
    later = tmp_path / "later"
    log = AuditLog(f"sqlite:///{later / 'audit.db'}", spool_dir=tmp_path / "spool")
    try:
        ids = [log.emit(tenant_id="acme", action="test.emit") for _ in range(20)]
        assert not log.flush(0.2)  # nothing stored yet: the store's directory does not exist
        for event_id in ids:
            assert isinstance(event_id, str)
            parsed = uuid.UUID(event_id)
            assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
            assert str(parsed) == event_id
        assert len(set(ids)) == 20
        later.mkdir()
        assert log.flush(10)
        assert [e.event_id for e in log.iter_events("acme")] == ids
    finally:
        log.close()


def test_every_contract_field_round_trips_through_get_and_query(audit_log: AuditLog) -> None:
    """What emit is given comes back from get() and query() (ip and time normalised), sealed."""
    when = dt.datetime(2026, 3, 4, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    event_id = audit_log.emit(
        tenant_id="acme", action="content.publish", actor=("agent", "publisher"), target=("post", "p-1"),
        outcome="partial", ip_address="2001:db8:0:0::1", user_agent="ua/1.0", request_id="r-1",
        correlation_id="c" * 32, span_id="d" * 16, parent_event_id="parent-1", source="svc", latency_ms=12.5,
        error_code="E1", error_message="half done", metadata={"k": [1, 2.5, None, True, "ü"], "n": {"m": {}}},
        proof={"type": "screenshot", "url": "https://example.invalid/p.png", "hash": "ab" * 32,
               "captured_at": "2026-03-04T05:08:09Z"},
        before={"title": "old"}, after=["new", 2], occurred_at=when,
    )
    assert audit_log.flush()
    event = stored(audit_log, event_id)
    assert content(event) == {
        "event_id": event_id, "tenant_id": "acme", "action": "content.publish", "outcome": "partial",
        "occurred_at": "2026-03-04T05:08:09.123456Z", "actor_type": "agent", "actor_id": "publisher",
        "target_type": "post", "target_id": "p-1", "ip_address": "2001:db8:0:0::1", "user_agent": "ua/1.0",
        "request_id": "r-1", "correlation_id": "c" * 32, "span_id": "d" * 16, "parent_event_id": "parent-1",
        "source": "svc", "latency_ms": 12.5, "error_code": "E1", "error_message": "half done",
        "metadata": {"k": [1, 2.5, None, True, "ü"], "n": {"m": {}}},
        "proof": {"type": "screenshot", "url": "https://example.invalid/p.png", "hash": "ab" * 32,
                  "captured_at": "2026-03-04T05:08:09Z"},
        "before": {"title": "old"}, "after": ["new", 2],
    }
    assert (event.seq, event.prev_hash) == (1, GENESIS)
    assert event.hash is not None
    assert re.fullmatch(r"[0-9a-f]{64}", event.hash)
    assert event.recorded_at is not None
    assert STORED_TIME.fullmatch(event.recorded_at)
    (queried,) = audit_log.query("acme", action="content.publish").events
    assert queried == event
    assert audit_log.get("globex", event_id) is None  # reads are tenant-scoped


def test_occurred_at_defaults_to_now_in_utc_microseconds(audit_log: AuditLog) -> None:
    """Left out, occurred_at is the emit time as RFC 3339 UTC with microseconds and Z; recorded_at follows it."""
    before = dt.datetime.now(dt.UTC)
    event_id = audit_log.emit(tenant_id="acme", action="test.time")
    after = dt.datetime.now(dt.UTC)
    assert audit_log.flush()
    event = stored(audit_log, event_id)
    assert STORED_TIME.fullmatch(event.occurred_at)
    occurred = dt.datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00"))
    assert before - dt.timedelta(milliseconds=1) <= occurred <= after + dt.timedelta(milliseconds=1)
    assert event.recorded_at is not None
    assert event.recorded_at >= event.occurred_at
    assert (event.outcome, event.metadata, event.proof, event.before, event.after) == ("success", {}, None, None, None)


def test_query_filters_by_each_field_within_the_tenant(audit_log: AuditLog) -> None:
    """actor_id, target_id, outcome, request_id, correlation_id, since and until each narrow the result."""
    def emit(n: int, **fields: Any) -> str:
        return audit_log.emit(tenant_id="acme", action="test.query", occurred_at=f"2026-01-0{n}T00:00:00Z", **fields)

    ids = [emit(1, actor=("user", "u-1"), target=("doc", "d-1"), request_id="r-1"),
           emit(2, actor=("user", "u-2"), target=("doc", "d-2"), outcome="failure", correlation_id="c-2"),
           emit(3, actor=("user", "u-1"), target=("doc", "d-2"), request_id="r-3")]
    audit_log.emit(tenant_id="globex", action="test.query", actor=("user", "u-1"), occurred_at="2026-01-02T00:00:00Z")
    assert audit_log.flush()

    def query(**filters: Any) -> list[str]:
        return [e.event_id for e in audit_log.query("acme", **filters).events]

    assert query() == ids[::-1]
    assert query(actor_id="u-1") == [ids[2], ids[0]]
    assert query(target_id="d-2") == [ids[2], ids[1]]
    assert query(outcome="failure") == [ids[1]]
    assert query(request_id="r-3") == [ids[2]]
    assert query(correlation_id="c-2") == [ids[1]]
    assert query(since="2026-01-02T00:00:00Z") == [ids[2], ids[1]]
    assert query(until="2026-01-02T00:00:00Z") == [ids[1], ids[0]]
    assert query(since="2026-01-02T00:00:00Z", until="2026-01-02T00:00:00Z", actor_id="u-2") == [ids[1]]
    assert query(since="1h") == []  # a span counts back from now
    assert query(actor_id="nobody") == []
    with pytest.raises(InvalidQuery):
        audit_log.query("acme", outcome="maybe")
    with pytest.raises(InvalidQuery):
        audit_log.query("acme", since="last tuesday")


# -- builder -------------------------------------------------------------------------


def test_the_builder_sets_every_field_it_offers(audit_log: AuditLog) -> None:
    """Each fluent method lands in its field; proofs, failed(code, message) and merged metadata included."""
    published = audit_log.event("acme").action("content.publish").actor("agent", "publisher") \
        .target("post", "p-1").succeeded().with_api_proof({"post_id": "ig_789"}).emit()
    failed = audit_log.event().tenant("acme").action("content.publish").actor("agent", "publisher") \
        .target("post", "p-2").failed("PLATFORM_ERROR", "Rate limit exceeded").emit()
    detailed = audit_log.event("acme").action("skill.update").partial().source("svc") \
        .request("r-9", ip_address="203.0.113.5", user_agent="ua").correlation("a" * 32, "b" * 16) \
        .caused_by(published).latency(3.25).metadata(a=1).metadata(b=2).change({"v": 1}, {"v": 2}) \
        .with_screenshot_proof("https://example.invalid/s.png", hash="cd" * 32).emit()
    proofs = {
        "hash": audit_log.event("acme").action("t.p").with_hash_proof("ef" * 32).emit(),
        "url": audit_log.event("acme").action("t.p").with_url_proof("https://example.invalid/x").emit(),
        "pending": audit_log.event("acme").action("t.p").pending().emit(),
    }
    assert audit_log.flush()
    first = stored(audit_log, published)
    assert (first.action, first.actor_type, first.actor_id, first.target_type, first.target_id, first.outcome) == (
        "content.publish", "agent", "publisher", "post", "p-1", "success")
    assert first.proof == {"type": "api_response", "data": {"post_id": "ig_789"}}
    second = stored(audit_log, failed)
    assert (second.outcome, second.error_code, second.error_message, second.target_id) == (
        "failure", "PLATFORM_ERROR", "Rate limit exceeded", "p-2")
    third = stored(audit_log, detailed)
    assert (third.outcome, third.source, third.request_id, third.ip_address, third.user_agent) == (
        "partial", "svc", "r-9", "203.0.113.5", "ua")
    assert (third.correlation_id, third.span_id, third.parent_event_id, third.latency_ms) == (
        "a" * 32, "b" * 16, published, 3.25)
    assert (third.metadata, third.before, third.after) == ({"a": 1, "b": 2}, {"v": 1}, {"v": 2})
    assert third.proof == {"type": "screenshot", "url": "https://example.invalid/s.png", "hash": "cd" * 32}
    assert stored(audit_log, proofs["hash"]).proof == {"type": "hash", "hash": "ef" * 32}
    assert stored(audit_log, proofs["url"]).proof == {"type": "url", "url": "https://example.invalid/x"}
    assert stored(audit_log, proofs["pending"]).outcome == "pending"


def test_builders_used_from_many_threads_never_mix_fields(audit_log: AuditLog) -> None:
    """Threads each interleave two builders: every stored event carries one builder's fields only."""
    threads, rounds = 8, 40
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(rounds):
            tag_a, tag_b = f"{n}-{i}-a", f"{n}-{i}-b"
            a, b = audit_log.event("acme"), audit_log.event("acme")
            a.action("test.thread.a")
            b.action("test.thread.b")
            a.actor("user", tag_a)
            b.actor("user", tag_b)
            b.target("doc", tag_b).failed(tag_b, "b failed")
            a.target("doc", tag_a).succeeded()
            a.metadata(tag=tag_a).request(tag_a)
            b.metadata(tag=tag_b).request(tag_b)
            b.emit()
            a.emit()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert audit_log.flush(20)
    events = list(audit_log.iter_events("acme"))
    assert len(events) == threads * rounds * 2
    for event in events:
        tag = event.actor_id
        assert tag is not None
        assert event.target_id == event.request_id == event.metadata["tag"] == tag
        if tag.endswith("-a"):
            assert (event.action, event.outcome, event.error_code) == ("test.thread.a", "success", None)
        else:
            assert (event.action, event.outcome, event.error_code) == ("test.thread.b", "failure", tag)
    assert len({e.actor_id for e in events}) == len(events)


# -- helpers -------------------------------------------------------------------------


def test_helpers_store_the_documented_actions_and_fields(audit_log: AuditLog) -> None:
    """login, logout, data_export, data_deletion and settings_change: their action names and fields."""
    ids = {
        "login": audit_log.login("acme", "u-1", ip_address="203.0.113.5", user_agent="ua", method="sso"),
        "failed_login": audit_log.login("acme", "u-2", outcome="failure", method="password"),
        "logout": audit_log.logout("acme", "u-1", reason="idle"),
        "export": audit_log.data_export("acme", "u-1", target=("report", "r-1"), export_format="csv",
                                        record_count=5),
        "deletion": audit_log.data_deletion("acme", "svc-1", actor_type="service", target=("user", "u-9"),
                                            record_count=3, reason="gdpr"),
        "settings": audit_log.settings_change("acme", "u-1", "theme", {"mode": "dark"}, {"mode": "light"}),
    }
    assert audit_log.flush()
    shape = {name: (e.action, e.actor_type, e.actor_id, e.target_type, e.target_id, e.outcome, e.metadata)
             for name, e in ((n, stored(audit_log, i)) for n, i in ids.items())}
    assert shape == {
        "login": ("auth.login", "user", "u-1", None, None, "success", {"method": "sso"}),
        "failed_login": ("auth.login", "user", "u-2", None, None, "failure", {"method": "password"}),
        "logout": ("auth.logout", "user", "u-1", None, None, "success", {"reason": "idle"}),
        "export": ("data.export", "user", "u-1", "report", "r-1", "success", {"format": "csv", "record_count": 5}),
        "deletion": ("data.deletion", "service", "svc-1", "user", "u-9", "success",
                     {"record_count": 3, "reason": "gdpr"}),
        "settings": ("settings.change", "user", "u-1", "setting", "theme", "success", {}),
    }
    login = stored(audit_log, ids["login"])
    assert (login.ip_address, login.user_agent) == ("203.0.113.5", "ua")
    settings = stored(audit_log, ids["settings"])
    assert (settings.before, settings.after) == ({"mode": "dark"}, {"mode": "light"})


# -- context -------------------------------------------------------------------------


def test_context_fills_fields_inside_the_block_only(audit_log: AuditLog) -> None:
    """Inside context() emit gets its fields (explicit arguments win, metadata merges); after it, nothing."""
    with audit_log.context(tenant_id="acme", actor=("user", "u-1"), target=("skill", "s-0"), request_id="r-1",
                           source="web", ip_address="203.0.113.5", metadata={"app": "web", "k": "ctx"}):
        inside = audit_log.emit(action="skill.create", target=("skill", "s-1"), metadata={"k": "own"})
    with pytest.raises(InvalidEvent) as raised:
        audit_log.emit(action="skill.create")
    assert raised.value.field == "tenant_id"
    outside = audit_log.emit(tenant_id="acme", action="skill.create")
    assert audit_log.flush()
    event = stored(audit_log, inside)
    assert (event.actor_type, event.actor_id, event.target_id, event.request_id, event.source, event.ip_address) == (
        "user", "u-1", "s-1", "r-1", "web", "203.0.113.5")
    assert event.metadata == {"app": "web", "k": "own"}
    plain = stored(audit_log, outside)
    assert (plain.actor_id, plain.request_id, plain.source, plain.metadata) == (None, None, None, {})


def test_nested_contexts_layer_and_restore(audit_log: AuditLog) -> None:
    """An inner context() overrides some fields for its block; leaving it restores the outer ones."""
    with audit_log.context(tenant_id="acme", request_id="outer", source="svc"):
        with audit_log.context(request_id="inner"):
            inner = audit_log.emit(action="test.ctx")
        after = audit_log.emit(action="test.ctx")
    assert audit_log.flush()
    assert (stored(audit_log, inner).request_id, stored(audit_log, inner).source) == ("inner", "svc")
    assert (stored(audit_log, after).request_id, stored(audit_log, after).source) == ("outer", "svc")


def test_each_thread_sees_only_its_own_context(audit_log: AuditLog) -> None:
    """Threads inside their own context() blocks at the same moment never see each other's fields."""
    count = 6
    inside = threading.Barrier(count)
    ids: dict[int, str] = {}

    def work(n: int) -> None:
        with audit_log.context(tenant_id="acme", actor=("user", f"u-{n}"), request_id=f"r-{n}"):
            inside.wait()  # every thread is in its block before any emits
            ids[n] = audit_log.emit(action="test.ctx.thread")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert audit_log.flush()
    assert len(ids) == count
    for n, event_id in ids.items():
        event = stored(audit_log, event_id)
        assert (event.actor_id, event.request_id) == (f"u-{n}", f"r-{n}")


def test_each_asyncio_task_sees_only_its_own_context(audit_log: AuditLog) -> None:
    """Tasks run by asyncio.gather, all inside their blocks at once, each record their own fields."""
    count = 6
    ids: dict[int, str] = {}

    async def work(n: int, inside: asyncio.Barrier) -> None:
        with audit_log.context(tenant_id="acme", actor=("user", f"u-{n}"), request_id=f"r-{n}"):
            await inside.wait()  # every task has entered its block and yielded to the others
            ids[n] = audit_log.emit(action="test.ctx.task")

    async def main() -> None:
        inside = asyncio.Barrier(count)
        await asyncio.gather(*(work(n, inside) for n in range(count)))

    asyncio.run(main())
    assert audit_log.flush()
    assert len(ids) == count
    for n, event_id in ids.items():
        event = stored(audit_log, event_id)
        assert (event.actor_id, event.request_id) == (f"u-{n}", f"r-{n}")


# -- OpenTelemetry -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracer() -> Any:
    """The SDK's TracerProvider as the global provider (set once per process, as OpenTelemetry allows)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    return trace.get_tracer("sealog-tests")


def test_an_active_span_becomes_the_correlation_and_span_id(audit_log: AuditLog, tracer: Any) -> None:
    """With a span active, correlation_id is its 32-hex trace id and span_id its 16-hex span id."""
    with tracer.start_as_current_span("request") as span:
        traced = audit_log.emit(tenant_id="acme", action="test.otel")
        with tracer.start_as_current_span("child") as child:
            nested = audit_log.emit(tenant_id="acme", action="test.otel")
        given = audit_log.emit(tenant_id="acme", action="test.otel", correlation_id="mine")
    untraced = audit_log.emit(tenant_id="acme", action="test.otel")
    assert audit_log.flush()
    ctx, child_ctx = span.get_span_context(), child.get_span_context()
    event = stored(audit_log, traced)
    assert event.correlation_id == format(ctx.trace_id, "032x")
    assert event.span_id == format(ctx.span_id, "016x")
    assert re.fullmatch(r"[0-9a-f]{32}", event.correlation_id)
    assert event.span_id is not None
    assert re.fullmatch(r"[0-9a-f]{16}", event.span_id)
    inner = stored(audit_log, nested)
    assert (inner.correlation_id, inner.span_id) == (event.correlation_id, format(child_ctx.span_id, "016x"))
    assert stored(audit_log, given).correlation_id == "mine"  # an explicit id wins
    assert (stored(audit_log, untraced).correlation_id, stored(audit_log, untraced).span_id) == (None, None)


# -- @audited ------------------------------------------------------------------------


def test_audited_sync_success_records_outcome_latency_and_arguments(audit_log: AuditLog) -> None:
    """A successful call returns its value and records success, latency_ms > 0 and its arguments."""
    @audit_log.audited("tool.call", tenant_id="acme", actor=("agent", "a-1"))
    def search(query: str, limit: int = 10) -> list[str]:
        """Search the index."""
        return [query] * 2

    started = time.perf_counter()
    assert search("cats", limit=3) == ["cats", "cats"]
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert (search.__name__, search.__doc__) == ("search", "Search the index.")
    assert audit_log.flush()
    (event,) = audit_log.query("acme", action="tool.call").events
    assert (event.outcome, event.actor_id, event.error_code, event.error_message) == ("success", "a-1", None, None)
    assert event.latency_ms is not None
    assert 0 < event.latency_ms <= elapsed_ms
    assert event.metadata == {"args": {"query": "cats", "limit": 3}}


def test_audited_sync_failure_records_the_error_redacted_and_reraises_the_same_exception(audit_log: AuditLog) -> None:
    """An exception is recorded (class name, redacted message and args) and the very same object propagates."""
    boom = ValueError("login failed password=hunter2")

    @audit_log.audited("tool.call", tenant_id="acme")
    def call(query: str, api_key: str, note: str) -> None:
        raise boom

    with pytest.raises(ValueError, match="hunter2") as raised:
        call("q", api_key="sk-123", note="Bearer abcdefghijklmnopqrstuvwxyz")
    assert raised.value is boom
    assert raised.traceback[-1].name == "call"  # the original traceback, not a re-raise from the wrapper
    assert audit_log.flush()
    (event,) = audit_log.query("acme", action="tool.call").events
    assert (event.outcome, event.error_code) == ("failure", "ValueError")
    assert event.error_message == f"login failed password={REDACTED}"
    assert event.metadata == {"args": {"query": "q", "api_key": REDACTED, "note": REDACTED}}
    assert event.latency_ms is not None
    assert event.latency_ms > 0


def test_audited_async_success_and_failure(audit_log: AuditLog) -> None:
    """Coroutine functions are awaited: success and failure recorded, the original exception re-raised."""
    boom = KeyError("missing token=abc123secret")

    @audit_log.audited("tool.acall", tenant_id="acme")
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        if key == "bad":
            raise boom
        return key.upper()

    assert asyncio.run(fetch("ok")) == "OK"
    with pytest.raises(KeyError) as raised:
        asyncio.run(fetch("bad"))
    assert raised.value is boom
    assert audit_log.flush()
    events = {e.outcome: e for e in audit_log.query("acme", action="tool.acall").events}
    assert set(events) == {"success", "failure"}
    assert events["success"].metadata == {"args": {"key": "ok"}}
    assert events["success"].latency_ms is not None
    assert events["success"].latency_ms > 0
    failure = events["failure"]
    assert failure.error_code == "KeyError"
    assert failure.error_message is not None
    assert "abc123secret" not in failure.error_message
    assert REDACTED in failure.error_message


def test_audited_takes_the_tenant_from_the_context(audit_log: AuditLog) -> None:
    """A decorator without tenant_id records under the tenant of the caller's context()."""
    @audit_log.audited("tool.call")
    def work() -> int:
        return 1

    with audit_log.context(tenant_id="globex", request_id="r-7"):
        assert work() == 1
    assert audit_log.flush()
    (event,) = audit_log.query("globex", action="tool.call").events
    assert event.request_id == "r-7"


def test_audited_arguments_that_json_cannot_keep_never_break_the_call(audit_log: AuditLog) -> None:
    """A huge integer or NaN argument is recorded somehow, but the call's result and exception are untouched."""
    @audit_log.audited("tool.call", tenant_id="acme")
    def double(n: float) -> float:
        return n * 2

    assert double(2**64) == 2**65
    assert double(float("inf")) == float("inf")
    assert audit_log.flush()
    assert len(audit_log.query("acme", action="tool.call").events) == 2


# -- flush and close -----------------------------------------------------------------


def test_flush_returns_true_once_everything_emitted_is_stored(audit_log: AuditLog) -> None:
    """flush() is True only when every event emitted so far is in the store."""
    ids = [audit_log.emit(tenant_id="acme", action="test.flush", metadata={"i": i}) for i in range(300)]
    assert audit_log.flush(10) is True
    stats = audit_log.stats()
    assert (stats["emitted"], stats["stored"], stats["backlog"]) == (300, 300, 0)
    assert [e.event_id for e in audit_log.iter_events("acme")] == ids


def test_flush_is_bounded_by_its_timeout_when_the_store_is_away(tmp_path: Path) -> None:
    """With the store unreachable, flush(timeout) returns False about when the timeout ends."""
    log = AuditLog(f"sqlite:///{tmp_path / 'missing' / 'audit.db'}", spool_dir=tmp_path / "spool")
    try:
        log.emit(tenant_id="acme", action="test.flush")
        started = time.monotonic()
        assert log.flush(0.3) is False
        assert 0.25 <= time.monotonic() - started < 2.0
    finally:
        log.close(timeout=0.5)


def test_close_drains_is_idempotent_and_a_second_close_returns_at_once(tmp_path: Path, db_url: str) -> None:
    """close() stores what was emitted; a second close() returns True at once; emit afterwards is refused."""
    log = AuditLog(db_url, spool_dir=tmp_path / "spool")
    event_id = log.emit(tenant_id="acme", action="test.close")
    assert log.close() is True
    started = time.monotonic()
    assert log.close() is True
    assert time.monotonic() - started < 0.05
    with pytest.raises(SealogError):
        log.emit(tenant_id="acme", action="test.close")
    with AuditLog(db_url, spool_dir=tmp_path / "spool2") as reader:
        assert stored(reader, event_id).action == "test.close"
    with pytest.raises(SealogError):  # the with block closed it
        reader.emit(tenant_id="acme", action="test.close")


# -- the module-level default --------------------------------------------------------


@pytest.fixture
def no_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start without a default AuditLog and put back whatever was there afterwards."""
    monkeypatch.setattr(sealog._default, "_default", None)
    yield
    current = sealog._default._default
    if current is not None:
        current.close()


@pytest.mark.usefixtures("no_default")
def test_the_module_level_default_is_configured_and_used(tmp_path: Path, db_url: str) -> None:
    """configure(url, spool_dir=...) makes the AuditLog that sealog.emit and sealog.event use."""
    log = sealog.configure(db_url, spool_dir=tmp_path / "spool")
    assert isinstance(log, AuditLog)
    assert sealog.get_default() is log
    first = sealog.emit(tenant_id="acme", action="test.default")
    second = sealog.event("acme").action("test.default").actor("user", "u-1").emit()
    assert log.flush()
    assert stored(log, first).action == "test.default"
    assert stored(log, second).actor_id == "u-1"

    replacement = sealog.configure(db_url, spool_dir=tmp_path / "spool2")
    assert sealog.get_default() is replacement
    with pytest.raises(SealogError):  # configure closed the previous default
        log.emit(tenant_id="acme", action="test.default")
    third = sealog.emit(tenant_id="acme", action="test.default")
    assert replacement.flush()
    assert [e.event_id for e in replacement.iter_events("acme")] == [first, second, third]


# -- the DEBUG log -------------------------------------------------------------------


def test_every_event_is_logged_at_debug_with_the_structured_event(audit_log: AuditLog,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The sealog.events logger gets one DEBUG record per event, carrying the event as sealog_event."""
    with caplog.at_level(logging.DEBUG, logger="sealog.events"):
        event_id = audit_log.emit(tenant_id="acme", action="test.debug", actor=("user", "u-1"),
                                  metadata={"k": "v", "password": "hunter2"})
    records = [r for r in caplog.records if r.name == "sealog.events"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.DEBUG
    assert event_id in record.getMessage()
    fields: dict[str, Any] = record.sealog_event  # type: ignore[attr-defined]
    assert set(fields) == set(FIELDS)
    assert (fields["event_id"], fields["tenant_id"], fields["action"], fields["actor_id"]) == (
        event_id, "acme", "test.debug", "u-1")
    assert fields["metadata"] == {"k": "v", "password": REDACTED}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sealog.events"):
        audit_log.emit(tenant_id="acme", action="test.debug")
    assert not [r for r in caplog.records if r.name == "sealog.events"]


# -- patterns and paging -------------------------------------------------------------


def test_action_patterns_match_like_amqp_topics(audit_log: AuditLog) -> None:
    """`*` is exactly one word, `#` zero or more; a malformed pattern is InvalidQuery."""
    actions = ["auth.login", "auth.logout", "auth.mfa.verify", "gpt.oauth", "gpt.oauth.token_exchange",
               "gpt.oauth.token.refresh", "gpt.tool.call", "authx.login"]
    for action in actions:
        audit_log.emit(tenant_id="acme", action=action)
    audit_log.emit(tenant_id="globex", action="auth.login")
    assert audit_log.flush()

    def matching(pattern: str) -> set[str]:
        return {e.action for e in audit_log.query("acme", action=pattern).events}

    assert matching("auth.*") == {"auth.login", "auth.logout"}
    assert matching("auth.#") == {"auth.login", "auth.logout", "auth.mfa.verify"}
    assert matching("gpt.oauth.#") == {"gpt.oauth", "gpt.oauth.token_exchange", "gpt.oauth.token.refresh"}
    assert matching("gpt.*.token_exchange") == {"gpt.oauth.token_exchange"}
    assert matching("#.login") == {"auth.login", "authx.login"}
    assert matching("*.*.*") == {"auth.mfa.verify", "gpt.oauth.token_exchange", "gpt.tool.call"}
    assert matching("#") == set(actions)
    assert matching("auth.login") == {"auth.login"}
    assert matching("auth") == set()
    for bad in ("Auth.*", "auth..login", "auth.**", "auth.lo*", ""):
        with pytest.raises(InvalidQuery):
            audit_log.query("acme", action=bad)


def test_keyset_paging_returns_every_event_once_newest_first(audit_log: AuditLog) -> None:
    """250 events in pages of 100 (timestamps tied in threes): each exactly once, newest first."""
    base = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    ids = [audit_log.emit(tenant_id="acme", action="test.page", metadata={"i": i},
                          occurred_at=base + dt.timedelta(microseconds=i // 3)) for i in range(250)]
    audit_log.emit(tenant_id="globex", action="test.page", occurred_at=base)
    assert audit_log.flush()
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = audit_log.query("acme", limit=100, after=cursor)
        pages.append([e.event_id for e in page.events])
        if page.next is None:
            break
        cursor = page.next
    assert [len(p) for p in pages] == [100, 100, 50]
    seen = [event_id for page in pages for event_id in page]
    assert seen == ids[::-1]
    assert Counter(seen) == Counter(ids)
    with pytest.raises(InvalidQuery):
        audit_log.query("acme", after="not-a-cursor!")


# -- sealog.testing ------------------------------------------------------------------


def test_memory_store_and_assert_audited_serve_a_users_own_test(tmp_path: Path) -> None:
    """An application's test wires MemoryStore in, runs its code, and asserts that it audited."""
    store = MemoryStore()
    assert isinstance(store, sealog.Store)

    def application_login(log: AuditLog, user: str) -> None:  # the user's code under test
        log.login("acme", user, method="sso")

    log = AuditLog(store=store, spool_dir=tmp_path / "spool")
    try:
        application_login(log, "u-1")
        found = assert_audited(log, tenant_id="acme", action="auth.login", actor_id="u-1")
        assert (found.seq, found.metadata) == (1, {"method": "sso"})
        assert assert_audited(log, tenant_id="acme", action="auth.*", outcome="success").event_id == found.event_id
        with pytest.raises(AssertionError, match=r"no 'auth\.logout'"):
            assert_audited(log, tenant_id="acme", action="auth.logout", timeout=1)
        with pytest.raises(AssertionError, match="u-2"):
            assert_audited(log, tenant_id="acme", action="auth.login", actor_id="u-2", timeout=1)
        assert [e.event_id for e in store.events] == [found.event_id]
        assert log.verify().ok
    finally:
        log.close()
