"""Arbitrary input: emit either returns an event id (and the event is stored once) or raises
InvalidEvent; nothing else escapes, and the writer never meets a row it cannot store."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealog import AuditLog, InvalidEvent

UTC = dt.UTC
# Values emit must refuse or turn into JSON, never choke on.
ODD_OBJECTS = [
    object(), {1, 2}, frozenset({"a"}), b"bytes", bytearray(b"x"), decimal.Decimal("1.5"), 1j,
    uuid.UUID(int=1), dt.date(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1),
    range(3), Ellipsis, float("nan"), float("inf"), -float("inf"), 2**53, 2**64, -(2**53), "\ud800", "a\x00b",
    ("tuple", 1), [], {},
]
keys = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.just(("t",)), st.sampled_from(["password", "token"]))
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(ODD_OBJECTS)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(keys, inner, max_size=3)),
    max_leaves=10,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid eleven times in twelve per field, so that about half the calls are accepted."""
    return st.integers(0, 11).flatmap(lambda n: valid if n else other)


any_text = st.one_of(st.text(max_size=30), st.just("a" * 2000), st.sampled_from(["", " ", "\x00", "\ud800"]))
maybe_text = mostly(st.one_of(st.none(), st.text(max_size=20)), any_text)
aware_datetimes = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1),
                               timezones=st.timezones())
TEXT_FIELDS = ("actor_type", "actor_id", "target_type", "target_id", "user_agent", "request_id",
               "correlation_id", "span_id", "parent_event_id", "source", "error_code", "error_message")
pairs = st.one_of(st.none(), st.tuples(st.text(max_size=8), st.text(max_size=8)))
bad_pairs = st.one_of(st.just(("only",)), st.just(("a", "b", "c")), st.tuples(st.integers(), st.integers()), anything)

emit_kwargs = st.fixed_dictionaries({
    "tenant_id": mostly(st.sampled_from(["acme", "globex", "Ünïcode ☃", "t" * 128]), st.one_of(st.none(), any_text)),
    "action": mostly(st.sampled_from(["auth.login", "a.b_c-d.e", "x", "gpt.oauth.token_exchange"]),
                     st.one_of(st.none(), any_text)),
}, optional={
    "outcome": mostly(st.sampled_from(["success", "failure", "partial", "pending"]), any_text),
    "actor": mostly(pairs, bad_pairs),
    "target": mostly(pairs, bad_pairs),
    **dict.fromkeys(TEXT_FIELDS, maybe_text),
    "ip_address": mostly(st.sampled_from([None, "203.0.113.5", "::1", "2001:db8:0::1", "fe80::1%eth0"]),
                         st.one_of(st.sampled_from(["300.1.1.1", "1.2.3", "10.0.0.0/8"]), any_text)),
    "latency_ms": mostly(st.one_of(st.none(), st.floats(min_value=0, allow_nan=False, allow_infinity=False),
                                   st.integers(0, 10**6)),
                         st.one_of(st.floats(max_value=-1e-9), st.text(max_size=3), st.booleans())),
    "metadata": mostly(st.one_of(st.none(), st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
                       st.one_of(st.dictionaries(keys, anything, max_size=4), anything)),
    "proof": mostly(
        st.one_of(st.none(), st.fixed_dictionaries(
            {"type": st.sampled_from(["screenshot", "api_response", "hash", "url", "none"])},
            optional={"data": json_values, "url": st.text(max_size=20), "hash": st.text(max_size=20)})),
        st.one_of(anything, st.fixed_dictionaries({"type": st.sampled_from(["bogus", "", "HASH"])},
                                                  optional={"data": anything}))),
    "before": mostly(json_values, anything),
    "after": mostly(json_values, anything),
    "occurred_at": mostly(
        st.one_of(st.none(), aware_datetimes, st.sampled_from(["2026-01-02T03:04:05+02:00", "2026-01-02T03:04:05.123456Z"])),
        st.one_of(any_text, st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)))),
})


def stored_ids(log: AuditLog) -> Counter[str]:
    assert log.store is not None
    return Counter(e.event_id for head in log.store.heads() for e in log.iter_events(head.tenant_id))


def test_emit_returns_an_id_or_raises_invalid_event_and_stores_each_accepted_once(tmp_path: Path) -> None:
    """200 arbitrary calls: an id or InvalidEvent each time; then all ids stored once, none quarantined, chains verify."""
    accepted: list[str] = []
    refused: Counter[str] = Counter()
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool")
    try:
        @given(emit_kwargs)
        @settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        def emit_anything(fields: dict[str, Any]) -> None:
            problem: InvalidEvent | None = None
            try:
                event_id = log.emit(**fields)
            except InvalidEvent as exc:  # anything else escapes and fails the test
                problem = exc
            if problem is not None:
                assert isinstance(problem, ValueError)
                assert problem.field
                refused[problem.field] += 1
                return
            assert isinstance(event_id, str)
            accepted.append(event_id)

        emit_anything()
        assert len(accepted) >= 20, f"too few accepted to check the writer: {len(accepted)}, refused {refused}"
        assert len(refused) >= 5, f"the invalid half hardly ran: {refused}"
        assert log.flush(30)
        stats = log.stats()
        assert stats["quarantined"] == 0, stats["last_error"]
        assert stats["stored"] == len(accepted)
        assert stored_ids(log) == Counter(accepted)  # each accepted id exactly once, nothing else
        report = log.verify()
        assert report.ok, report.problems[:3]
        assert report.checked == len(accepted)
    finally:
        log.close()


wild = st.one_of(anything, st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers()))
wild_kwargs = st.fixed_dictionaries({
    "tenant_id": mostly(st.just("acme"), wild),
    "action": mostly(st.just("auth.login"), wild),
}, optional={
    "outcome": wild, "error_message": wild, "error_code": wild, "ip_address": wild, "actor": wild,
    "proof": st.one_of(wild, st.fixed_dictionaries({"type": wild})),
    "occurred_at": st.one_of(st.datetimes(timezones=st.timezones()), st.sampled_from(
        ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z"])),
})


def test_emit_with_any_type_in_any_field_raises_only_invalid_event(tmp_path: Path) -> None:
    """Lists, dicts, numbers and odd objects in the scalar fields: still only InvalidEvent comes out."""
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread") as log:
        @given(wild_kwargs)
        @settings(max_examples=200, deadline=None, database=None, report_multiple_bugs=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        def emit_anything(fields: dict[str, Any]) -> None:
            problem: InvalidEvent | None = None
            try:
                log.emit(**fields)
            except InvalidEvent as exc:
                problem = exc
            assert problem is None or problem.field

        emit_anything()
        assert log.flush(30)
        assert log.stats()["quarantined"] == 0
