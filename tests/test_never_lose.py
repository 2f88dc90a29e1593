"""Never lose an accepted event: whatever emit is given, it returns an id or raises InvalidEvent,
and every id it returned is stored exactly once, on SQLite and on PostgreSQL alike.

The values are the ones that broke stores before: integers beyond 2**63 and ``int`` subclasses,
NaN and 1e16, lone surrogates and NUL, sets and bytes, year 1 and year 9999, actor pairs given
as strings or lists. The chains then verify in sealog and in the README's standalone verifier.
"""

from __future__ import annotations

import decimal
import enum
import hashlib
import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sealog import AuditLog, InvalidEvent
from sealog import _output as output


class Level(enum.IntEnum):
    LOW = 3
    HUGE = 2**60 + 1


class Colour(enum.StrEnum):
    RED = "red"


class Flag(int):
    """A user's int subclass: isinstance(x, int) but not exactly an int."""


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


EDGE_INTS = [0, -1, 2**53 - 1, -(2**53 - 1), 2**53, -(2**53), 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**40,
             True, False, Level.LOW, Level.HUGE, Flag(7), Flag(2**62)]
EDGE_FLOATS = [float("nan"), float("inf"), -float("inf"), 1e16, -0.0, 0.0, 1e21, 1e-7, 5e-324,
               1.7976931348623157e308, 2.0**53, 0.1, 1e15 + 0.3]
EDGE_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ufeff", "\u2028", "☃", "😀", "é" * 5000,
             "x" * 70_000, "password=hunter2", "Bearer abc.def.ghi"]
ODD = [object(), Opaque(), 1j, Ellipsis, range(2), Colour.RED, decimal.Decimal("1.5"), decimal.Decimal("NaN"),
       decimal.Decimal("1e400"), uuid.UUID(int=7), date(1, 1, 1), b"bytes", bytearray(b"\x00\xff"),
       frozenset({"a"}), {1, 2}]

any_offset = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
naive_datetimes = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))
aware_datetimes = st.builds(lambda d, tz: d.replace(tzinfo=tz), naive_datetimes, any_offset)
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.characters(categories=["Cc", "Cf", "Co"]))
texts = st.one_of(st.text(max_size=12), st.text(any_char, max_size=8),
                  st.sampled_from(EDGE_TEXT))
ints = st.one_of(st.integers(), st.sampled_from(EDGE_INTS))
floats = st.one_of(st.floats(), st.sampled_from(EDGE_FLOATS))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, naive_datetimes, aware_datetimes,
                    st.sampled_from(ODD))
keys = st.one_of(texts, ints, st.none(), st.just(("t", 1)), st.sampled_from(["password", "token", "ssn"]))
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
                            st.frozensets(st.one_of(texts, st.integers()), max_size=3),
                            st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), ints, floats, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid shape nine times in ten per field, so that about half the calls are accepted."""
    return st.integers(0, 9).flatmap(lambda n: valid if n else other)


TENANTS = ["acme", "globex", "Ünïcode ☃", "t" * 128]
TEXT_FIELDS = ("actor_type", "actor_id", "target_type", "target_id", "user_agent", "request_id",
               "correlation_id", "span_id", "parent_event_id", "source", "error_code", "error_message")
pairs = st.one_of(st.tuples(texts, texts), texts, st.lists(texts, max_size=3), st.tuples(ints, texts),
                  st.tuples(texts, texts, texts), anything)
good_pairs = st.one_of(st.none(), st.tuples(st.text(max_size=8), st.text(max_size=8)))

emit_kwargs = st.fixed_dictionaries({
    "tenant_id": mostly(st.sampled_from(TENANTS), st.one_of(texts, anything)),
    "action": mostly(st.sampled_from(["auth.login", "a.b_c-d.e", "x"]), st.one_of(texts, anything)),
}, optional={
    "event_id": st.one_of(st.none(), st.sampled_from(["inv-1", "inv-2"]), texts, anything),
    "outcome": mostly(st.sampled_from(["success", "failure", "partial", "pending"]), anything),
    "actor": mostly(good_pairs, pairs),
    "target": mostly(good_pairs, pairs),
    **dict.fromkeys(TEXT_FIELDS, mostly(st.one_of(st.none(), st.text(max_size=12)), st.one_of(texts, anything))),
    "ip_address": mostly(st.sampled_from([None, "203.0.113.5", "::1", "2001:db8:0::1"]),
                         st.one_of(ints, texts, st.sampled_from(["300.1.1.1", "10.0.0.0/8", "fe80::1%eth0"]),
                                   anything)),
    "latency_ms": mostly(st.one_of(st.none(), st.floats(0, 1e9), st.integers(0, 10**6)), st.one_of(floats, ints,
                                                                                                    anything)),
    "metadata": mostly(st.dictionaries(st.text(max_size=8), json_like, max_size=4),
                       st.one_of(st.dictionaries(keys, anything, max_size=4), anything)),
    "proof": mostly(st.one_of(st.none(), st.fixed_dictionaries(
        {"type": st.sampled_from(["screenshot", "api_response", "hash", "url", "none"])},
        optional={"data": json_like, "hash": texts})),
        st.one_of(anything, st.fixed_dictionaries({"type": anything}, optional={"data": anything}))),
    "before": mostly(json_like, anything),
    "after": mostly(json_like, anything),
    "occurred_at": mostly(
        st.one_of(st.none(), aware_datetimes, st.sampled_from([
            "0001-01-01T00:00:00Z", "0999-06-30T12:00:00.5+00:00", "9999-12-31T23:59:59.999999Z",
            "2026-01-02T03:04:05+02:00"])),
        st.one_of(naive_datetimes, texts, anything, st.sampled_from([
            "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z", "2026-13-01T00:00Z",
            "2026-01-01T00:00:00"]))),
})


def readme_verify(lines: list[bytes]) -> None:
    """The README's standalone verifier ("Sealing"), word for word: hashlib, json and rfc8785 only."""
    prev = bytes(32)
    for line in lines:
        event = json.loads(line)
        content = {k: v for k, v in event.items() if k not in ("seq", "prev_hash", "hash", "recorded_at")}
        digest = hashlib.sha256(prev + rfc8785.dumps(content)).digest()
        assert event["prev_hash"] == prev.hex() and event["hash"] == digest.hex(), event["seq"]  # noqa: PT018
        prev = digest


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
# psycopg_pool's own thread draws from the global `random` (connection expiry jitter) while
# hypothesis draws examples; hypothesis then warns about `random` in a strategy that is not ours.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning",
                            "ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_every_accepted_event_is_stored_exactly_once(kind: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    """~150 arbitrary emits: an id or InvalidEvent each; stored (tenant, id) == accepted, none quarantined, chains verify."""
    url = str(request.getfixturevalue("db_url" if kind == "sqlite" else "pg_url"))
    accepted: set[tuple[str, str]] = set()
    refused: Counter[str] = Counter()
    spool = tmp_path / "spool"
    with AuditLog(url, spool_dir=spool, writer="thread") as log:
        @given(emit_kwargs)
        @example({"tenant_id": "acme", "action": "x", "event_id": "inv-1"})  # one id in two tenants: two events
        @example({"tenant_id": "globex", "action": "x", "event_id": "inv-1"})
        @example({"tenant_id": "acme", "action": "x", "metadata": {"n": Level.HUGE, "f": 1e16, "deep": [[-(2**64)]]}})
        @example({"tenant_id": "acme", "action": "x", "occurred_at": datetime(1, 1, 1, tzinfo=UTC)})
        @example({"tenant_id": "acme", "action": "x", "actor": "ab", "ip_address": 5, "latency_ms": float("nan")})
        @example({"tenant_id": "acme", "action": "x", "metadata": {"s": {1, 2}}})
        @settings(max_examples=150, deadline=None, database=None, report_multiple_bugs=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        def emit_anything(fields: dict[str, Any]) -> None:
            problem: InvalidEvent | None = None
            try:
                event_id = log.emit(**fields)
            except InvalidEvent as exc:  # anything else escapes and fails the test
                problem = exc
            if problem is not None:
                assert problem.field, problem
                refused[problem.field] += 1
                return
            assert isinstance(event_id, str)
            accepted.add((fields["tenant_id"], event_id))

        emit_anything()
        assert len(accepted) >= 20, f"too few accepted to prove anything: {len(accepted)}, refused {refused}"
        assert len(refused) >= 5, f"the invalid half hardly ran: {refused}"
        assert log.flush(60), log.stats()
        stats = log.stats()
        assert stats["quarantined"] == 0, stats["last_error"]
        assert not (spool / "quarantine.jsonl").exists()
        assert log.store is not None
        tenants = {t for t, _ in accepted} | {h.tenant_id for h in log.store.heads()}
        rows = Counter((t, e.event_id) for t in tenants for e in log.iter_events(t))
        assert set(rows) == accepted  # every accepted id stored, nothing else
        assert max(rows.values()) == 1  # and each once
        report = log.verify()
        assert report.ok, report.problems[:3]
        assert report.checked == len(accepted)
        for tenant in tenants:  # the bytes `sealog export` writes, checked with no sealog code
            readme_verify(b"".join(output.stream(log.iter_events(tenant), "jsonl")).splitlines())
    exported = tmp_path / "acme.jsonl"
    done = subprocess.run([sys.executable, "-m", "sealog", "export", "--url", url, "--tenant", "acme",
                           "-o", str(exported)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = exported.read_bytes().splitlines()
    assert len(lines) == sum(1 for t, _ in accepted if t == "acme")
    readme_verify(lines)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize(("field", "value"), [
    ("occurred_at", datetime(1, 1, 1, tzinfo=UTC)),
    ("occurred_at", "0001-01-01T00:00:00.000001Z"),
    ("occurred_at", datetime(999, 6, 30, 12, tzinfo=UTC)),
    ("occurred_at", "9999-12-31T23:59:59.999999Z"),
    ("metadata", {"level": Level.HUGE}),
    ("metadata", {"level": Level.LOW, "flag": Flag(7), "yes": True}),
    ("metadata", {"f": 1e16, "g": -0.0, "h": 1e21, "i": 5e-324}),
    ("after", [2**53 - 1, -(2**53 - 1), 1e16]),
], ids=["year-1", "year-1-text", "year-999", "year-9999", "intenum-2**60+1", "int-subclasses", "floats-1e16",
        "safe-ints"])
def test_edge_value_is_stored_exactly_or_refused_never_a_false_alarm(kind: str, field: str, value: Any,
                                                                     request: pytest.FixtureRequest,
                                                                     tmp_path: Path) -> None:
    """Year 1, year 999, year 9999, an IntEnum, a float 1e16: refused, or stored, verified and README-verified."""
    url = str(request.getfixturevalue("db_url" if kind == "sqlite" else "pg_url"))
    with AuditLog(url, spool_dir=tmp_path / "spool", writer="thread") as log:
        problem: InvalidEvent | None = None
        try:
            event_id = log.emit(tenant_id="acme", action="edge.value", **{field: value})
        except InvalidEvent as exc:
            problem = exc
        if problem is not None:  # refusing is fine, when it names the field
            assert problem.field == field, problem
            return
        assert log.flush(30), log.stats()
        assert log.stats()["quarantined"] == 0
        stored = log.get("acme", event_id)
        assert stored is not None
        report = log.verify()
        assert report.ok, report.problems
        lines = b"".join(output.stream(log.iter_events("acme"), "jsonl")).splitlines()
        readme_verify(lines)
    kept = json.loads(lines[0])[field]
    if field == "occurred_at":
        assert kept == rfc3339(value)
    else:
        assert same_json(kept, value), (kept, value)


def rfc3339(value: datetime | str) -> str:
    """The stored form, four-digit year included (strftime writes year 1 as '1' on glibc)."""
    moment = (datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value).astimezone(UTC)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond:06d}Z")


def same_json(kept: Any, value: Any) -> bool:
    """Equal, and of the same JSON kind: an int stays an integer, a float stays a float."""
    if isinstance(value, bool):
        return kept is value
    if isinstance(value, float):  # RFC 8785 writes -0.0 as 0, a number like any other zero
        return (type(kept) is float or value == 0) and kept == value
    if isinstance(value, int):
        return type(kept) is int and kept == value
    if isinstance(value, list | tuple):
        return isinstance(kept, list) and len(kept) == len(value) and all(map(same_json, kept, value))
    if isinstance(value, dict):
        return isinstance(kept, dict) and kept.keys() == value.keys() and all(same_json(kept[k], v)
                                                                              for k, v in value.items())
    return bool(kept == value)
