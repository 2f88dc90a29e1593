"""Bad input: every contract case raises InvalidEvent (a ValueError) naming the field, and
nothing of a rejected event reaches the spool."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealog import AuditLog, InvalidEvent, SealogError
from sealog._event import MAX_EVENT_BYTES, check_occurred_at
from sealog.testing import MemoryStore


@pytest.fixture(scope="module")
def mem_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditLog]:
    """One in-memory AuditLog for the rejection cases: they never reach a store."""
    log = AuditLog(store=MemoryStore(), spool_dir=tmp_path_factory.mktemp("event") / "spool")
    yield log
    log.close()


OK: dict[str, Any] = {"tenant_id": "acme", "action": "test.event"}
NAN, INF = float("nan"), float("inf")

CASES = [
    # (id, emit keyword arguments over OK, the field InvalidEvent must name)
    pytest.param({"tenant_id": None}, "tenant_id", id="missing-tenant"),
    pytest.param({"tenant_id": ""}, "tenant_id", id="empty-tenant"),
    pytest.param({"tenant_id": "   "}, "tenant_id", id="blank-tenant"),
    pytest.param({"tenant_id": 42}, "tenant_id", id="tenant-not-text"),
    pytest.param({"tenant_id": "a\nb"}, "tenant_id", id="tenant-unprintable"),
    pytest.param({"tenant_id": "t" * 129}, "tenant_id", id="tenant-too-long"),
    pytest.param({"tenant_id": ["acme"]}, "tenant_id", id="tenant-a-list"),
    pytest.param({"action": None}, "action", id="missing-action"),
    pytest.param({"action": "Auth.Login"}, "action", id="action-upper-case"),
    pytest.param({"action": "auth..login"}, "action", id="action-empty-word"),
    pytest.param({"action": "auth login"}, "action", id="action-space"),
    pytest.param({"action": ".auth"}, "action", id="action-leading-dot"),
    pytest.param({"action": "auth."}, "action", id="action-trailing-dot"),
    pytest.param({"action": "auth.*"}, "action", id="action-a-pattern"),
    pytest.param({"action": ["auth"]}, "action", id="action-a-list"),
    pytest.param({"outcome": "ok"}, "outcome", id="unknown-outcome"),
    pytest.param({"outcome": "SUCCESS"}, "outcome", id="outcome-upper-case"),
    pytest.param({"outcome": None}, "outcome", id="outcome-none"),
    pytest.param({"metadata": {"a", "b"}}, "metadata", id="metadata-a-set"),
    pytest.param({"metadata": ["a"]}, "metadata", id="metadata-a-list"),
    pytest.param({"metadata": "text"}, "metadata", id="metadata-a-string"),
    pytest.param({"metadata": {"o": object()}}, "metadata", id="metadata-holds-an-object"),
    pytest.param({"metadata": {"c": 1j}}, "metadata", id="metadata-holds-a-complex"),
    pytest.param({"metadata": {"tags": {"a", "b"}}}, "metadata", id="metadata-holds-a-set"),
    pytest.param({"before": object()}, "before", id="before-an-object"),
    pytest.param({"after": [object()]}, "after", id="after-holds-an-object"),
    pytest.param({"metadata": {"n": 2**53}}, "metadata", id="integer-2**53"),
    pytest.param({"metadata": {"n": -(2**53)}}, "metadata", id="integer-minus-2**53"),
    pytest.param({"before": {"n": [2**64]}}, "before", id="huge-integer-in-before"),
    pytest.param({"after": 2**60}, "after", id="huge-integer-after"),
    pytest.param({"proof": {"type": "hash", "n": 2**53}}, "proof", id="huge-integer-in-proof"),
    pytest.param({"metadata": {"x": NAN}}, "metadata", id="nan-in-metadata"),
    pytest.param({"metadata": {"x": [INF]}}, "metadata", id="infinity-in-metadata"),
    pytest.param({"before": NAN}, "before", id="nan-before"),
    pytest.param({"after": {"x": -INF}}, "after", id="infinity-in-after"),
    pytest.param({"latency_ms": NAN}, "latency_ms", id="nan-latency"),
    pytest.param({"latency_ms": INF}, "latency_ms", id="infinite-latency"),
    pytest.param({"latency_ms": -1.0}, "latency_ms", id="negative-latency"),
    pytest.param({"latency_ms": "5"}, "latency_ms", id="latency-text"),
    pytest.param({"metadata": {1: "x"}}, "metadata", id="integer-key"),
    pytest.param({"metadata": {"a": {None: 1}}}, "metadata", id="none-key-nested"),
    pytest.param({"before": {("a", "b"): 1}}, "before", id="tuple-key-in-before"),
    pytest.param({"metadata": {"blob": "x" * (MAX_EVENT_BYTES + 1)}}, "event", id="oversize-event"),
    pytest.param({"metadata": {f"k{i}": "x" * 1000 for i in range(70)}}, "event", id="oversize-by-many-keys"),
    pytest.param({"ip_address": "300.1.1.1"}, "ip_address", id="ip-out-of-range"),
    pytest.param({"ip_address": "not-an-ip"}, "ip_address", id="ip-text"),
    pytest.param({"ip_address": ""}, "ip_address", id="ip-empty"),
    pytest.param({"ip_address": "10.0.0.0/8"}, "ip_address", id="ip-a-network"),
    pytest.param({"ip_address": 5}, "ip_address", id="ip-an-integer"),
    pytest.param({"occurred_at": "yesterday"}, "occurred_at", id="occurred-at-words"),
    pytest.param({"occurred_at": "2026-01-02T03:04:05"}, "occurred_at", id="occurred-at-no-zone"),
    pytest.param({"occurred_at": "2026-13-02T03:04:05Z"}, "occurred_at", id="occurred-at-month-13"),
    pytest.param({"occurred_at": dt.datetime(2026, 1, 2)}, "occurred_at", id="occurred-at-naive"),
    pytest.param({"occurred_at": 1767322800}, "occurred_at", id="occurred-at-a-number"),
    pytest.param({"occurred_at": "0001-01-01T00:00:00+01:00"}, "occurred_at", id="occurred-at-before-year-1-utc"),
    pytest.param({"proof": {"type": "video"}}, "proof", id="proof-unknown-type"),
    pytest.param({"proof": {"data": 1}}, "proof", id="proof-without-type"),
    pytest.param({"proof": "screenshot"}, "proof", id="proof-not-an-object"),
    pytest.param({"proof": {"type": ["hash"]}}, "proof", id="proof-type-a-list"),
    pytest.param({"actor": ("user",)}, "actor", id="actor-one-item"),
    pytest.param({"actor": ("user", "u-1", "x")}, "actor", id="actor-three-items"),
    pytest.param({"actor": 5}, "actor", id="actor-a-number"),
    pytest.param({"actor": "user:u-1"}, "actor", id="actor-a-string"),
    pytest.param({"actor": ("user", 5)}, "actor_id", id="actor-id-not-text"),
    pytest.param({"actor": "ab"}, "actor", id="actor-a-two-letter-string"),
    pytest.param({"target": ("post",)}, "target", id="target-one-item"),
    pytest.param({"actor_id": "a" * 2000}, "actor_id", id="actor-id-too-long"),
    pytest.param({"target_type": "t" * 1025}, "target_type", id="target-type-too-long"),
    pytest.param({"request_id": "r" * 1025}, "request_id", id="request-id-too-long"),
    pytest.param({"source": "s" * 1025}, "source", id="source-too-long"),
    pytest.param({"user_agent": "u" * 4097}, "user_agent", id="user-agent-too-long"),
    pytest.param({"error_message": "e" * 16385}, "error_message", id="error-message-too-long"),
    pytest.param({"event_id": ""}, "event_id", id="event-id-empty"),
    pytest.param({"event_id": "e" * 129}, "event_id", id="event-id-too-long"),
    pytest.param({"event_id": 7}, "event_id", id="event-id-a-number"),
    pytest.param({"ip_address": "fe80::1%" + "z" * 80}, "ip_address", id="ip-zone-too-long"),
    pytest.param({"user_agent": 5}, "user_agent", id="user-agent-not-text"),
    pytest.param({"error_message": 5}, "error_message", id="error-message-a-number"),
    pytest.param({"metadata": {"k": "a\x00b"}}, "metadata", id="nul-in-metadata"),
    pytest.param({"actor_id": "a\x00b"}, "actor_id", id="nul-in-actor-id"),
    pytest.param({"metadata": {"k": "\ud800"}}, "metadata", id="lone-surrogate"),
]


@pytest.mark.parametrize(("fields", "field"), CASES)
def test_bad_input_raises_invalid_event_naming_the_field(mem_log: AuditLog, fields: dict[str, Any], field: str) -> None:
    """emit refuses the caller's mistake with InvalidEvent (a ValueError) whose .field is the culprit."""
    before = mem_log.stats()["emitted"]
    with pytest.raises(InvalidEvent) as raised:
        mem_log.emit(**(OK | fields))
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, SealogError)
    assert raised.value.field == field, str(raised.value)
    assert str(raised.value).startswith(f"{field}: ")
    assert mem_log.stats()["emitted"] == before  # nothing was spooled


def test_the_valid_baseline_is_accepted(mem_log: AuditLog) -> None:
    """The cases above differ from an accepted event only in the field they name."""
    assert mem_log.emit(**OK)


def test_an_event_just_under_the_size_limit_is_accepted(mem_log: AuditLog) -> None:
    """The 64 KiB limit is on the encoded event, not lower."""
    assert mem_log.emit(**OK, metadata={"blob": "x" * (MAX_EVENT_BYTES - 2000)})


def test_rejected_events_leave_no_trace_in_the_chain(tmp_path: Path) -> None:
    """After many rejections, the first good event is stored alone, as seq 1 of a verified chain."""
    with AuditLog(store=MemoryStore(), spool_dir=tmp_path / "spool") as log:
        for case in CASES:
            fields: dict[str, Any] = case.values[0]  # type: ignore[assignment]
            if not case.marks:
                with pytest.raises(InvalidEvent):
                    log.emit(**(OK | fields))
        event_id = log.emit(**OK)
        assert log.flush()
        assert log.stats()["emitted"] == 1
        stored = list(log.iter_events("acme"))
        assert [(e.event_id, e.seq) for e in stored] == [(event_id, 1)]
        assert log.verify().ok


def test_context_fields_are_validated_like_emit_arguments(mem_log: AuditLog) -> None:
    """An unknown name or a malformed actor in context() is refused by name."""
    with pytest.raises(InvalidEvent) as raised:
        mem_log.context(tenant_id="acme", colour="red")
    assert raised.value.field == "colour"
    with pytest.raises(InvalidEvent) as raised:
        mem_log.context(actor=("user",))
    assert raised.value.field == "actor"


def test_an_ip_address_from_the_context_is_validated(mem_log: AuditLog) -> None:
    """ip_address from context() must be a valid IP, as when it is passed to emit."""
    with pytest.raises(InvalidEvent) as raised, mem_log.context(ip_address="not-an-ip"):
        mem_log.emit(**OK)
    assert raised.value.field == "ip_address"


def test_metadata_from_the_context_is_checked_like_emit_metadata(mem_log: AuditLog) -> None:
    """Context metadata beyond +-(2**53-1) is refused: RFC 8785 (and so an outside verifier) cannot keep it."""
    with pytest.raises(InvalidEvent) as raised, mem_log.context(metadata={"n": 2**60}):
        mem_log.emit(**OK)
    assert raised.value.field == "metadata"


@pytest.mark.parametrize(("given", "stored"), [
    ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000000Z"),
    ("2026-01-02T03:04:05.5z", "2026-01-02T03:04:05.500000Z"),
    ("2026-01-02T03:04:05.123456+02:00", "2026-01-02T01:04:05.123456Z"),
    ("2026-01-01T23:30:00-01:00", "2026-01-02T00:30:00.000000Z"),
    (dt.datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=dt.timezone(dt.timedelta(hours=5))), "2026-01-01T22:04:05.000007Z"),
    pytest.param("0999-01-02T03:04:05Z", "0999-01-02T03:04:05.000000Z", id="year-999"),
])
def test_occurred_at_is_normalised_to_utc_microseconds_z(given: Any, stored: str) -> None:
    """Any RFC 3339 text or aware datetime becomes the one fixed-width stored form."""
    assert check_occurred_at(given) == stored
