"""Arbitrary input: emit either accepts (and the event is stored) or raises InvalidEvent."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealog import AuditLog, InvalidEvent

anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
              st.binary(max_size=5), st.just({1, 2}), st.just(object()), st.just(decimal.Decimal("1.5")),
              st.datetimes(timezones=st.just(dt.UTC))),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3)),
    max_leaves=8,
)
maybe_text = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.just("a" * 2000))
actions = st.one_of(st.sampled_from(["auth.login", "a.b_c-d.e", "x"]), st.text(max_size=20), st.none())


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine in ten examples valid here, so that the other fields get exercised too."""
    return st.integers(0, 9).flatmap(lambda n: valid if n else other)


kwargs = st.fixed_dictionaries({
    "tenant_id": mostly(st.sampled_from(["acme", "globex"]), maybe_text),
    "action": mostly(st.sampled_from(["auth.login", "a.b_c-d.e", "x"]), actions),
}, optional={
    "outcome": st.one_of(st.sampled_from(["success", "failure", "partial", "pending"]), maybe_text),
    "actor": st.one_of(st.none(), st.tuples(st.text(max_size=5), st.text(max_size=5)), st.just(("only",)),
                       st.tuples(st.integers(), st.integers())),
    "target_id": maybe_text, "request_id": maybe_text, "user_agent": maybe_text,
    "ip_address": mostly(st.sampled_from([None, "203.0.113.5", "::1", "2001:db8::1"]),
                         st.one_of(st.just("300.1.1.1"), st.text(max_size=10))),
    "latency_ms": st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=3)),
    "metadata": st.one_of(st.none(), st.dictionaries(st.text(max_size=10), st.text(max_size=10)),
                          st.dictionaries(st.text(max_size=10), anything, max_size=4), anything),
    "proof": st.one_of(st.none(), st.fixed_dictionaries({"type": st.sampled_from(["hash", "url", "bogus"])}),
                       anything),
    "before": anything, "after": anything,
    "occurred_at": st.one_of(st.none(), st.datetimes(timezones=st.just(dt.UTC)), st.text(max_size=30),
                             st.just("2026-01-02T03:04:05+02:00")),
})


@pytest.fixture(scope="module")
def fuzz_log(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root: Path = tmp_path_factory.mktemp("fuzz")
    log = AuditLog(f"sqlite:///{root / 'audit.db'}", spool_dir=root / "spool")
    yield log
    log.close()


accepted: list[str] = []


@given(kwargs)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_emit_accepts_or_raises_invalid_event(fuzz_log: AuditLog, fields: dict[str, Any]) -> None:
    """Nothing but an event id or InvalidEvent (naming a field) ever comes out of emit."""
    try:
        accepted.append(fuzz_log.emit(**fields))
    except InvalidEvent as exc:
        problem = exc
    else:
        return
    assert problem.field
    assert isinstance(problem, ValueError)


def test_every_accepted_event_is_stored_once_and_the_writer_is_healthy(fuzz_log: AuditLog) -> None:
    """After the fuzzing: all accepted ids stored exactly once, nothing quarantined, chains verify."""
    assert len(accepted) >= 30, f"the fuzz test must run first and accept events ({len(accepted)})"
    assert fuzz_log.flush(30)
    stats = fuzz_log.stats()
    assert stats["quarantined"] == 0
    assert stats["stored"] == len(accepted)
    for event_id in accepted[:: max(1, len(accepted) // 50)]:
        assert sum(fuzz_log.get(t, event_id) is not None for t in _tenants(fuzz_log)) == 1
    assert fuzz_log.verify().ok


def _tenants(log: AuditLog) -> list[str]:
    assert log.store is not None
    return [head.tenant_id for head in log.store.heads()]
