"""The list page's chart and facets (``stores._summary``) against a brute-force count of the same events:
from the folded counts (with the partial hours and days at a filter's edges read from the events), after
new writes and after a prune, and from the newest events for other filters."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sealog import Event
from sealog import _patterns as patterns
from sealog import _timefmt as timefmt
from sealog._log import make_query
from sealog.stores import _summary
from sealog.stores._summary import Summary, fold, summarize
from sealog.stores.sqlite import SQLiteStore
from sealog.testing import MemoryStore

NOW = datetime(2026, 6, 15, 12, 34, 56, 789000, tzinfo=UTC)
STAMP = timefmt.format_datetime(NOW)


def events(n: int, seed: int, start: datetime = NOW - timedelta(days=9), tenant: str = "acme",
           actions: tuple[str, ...] = ("auth.login", "auth.logout", "data.export", "tool.call")) -> list[Event]:
    rnd = random.Random(seed)
    span = (NOW - start).total_seconds()
    return [Event(event_id=str(uuid.UUID(int=rnd.getrandbits(128))), tenant_id=tenant,
                  action=rnd.choice(actions),
                  occurred_at=timefmt.format_datetime(start + timedelta(seconds=rnd.uniform(0, span))),
                  outcome=rnd.choice(["success"] * 8 + ["failure", "partial"]),
                  actor_id=rnd.choice([None, "u-1", "u-2", "u-3", f"u-{rnd.randrange(50)}"]),
                  target_id=rnd.choice([None, f"t-{rnd.randrange(30)}"]), request_id=f"r-{rnd.randrange(40)}")
            for _ in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    yield store
    store.close()


def brute(stored: list[Event], summary: Summary, **q: str) -> None:
    """The summary equals counting every matching event by hand, facets and bars alike."""
    query = make_query("acme", **q)
    match = [e for e in stored if e.tenant_id == "acme"
             and (query.since is None or e.occurred_at >= query.since)
             and (query.until is None or e.occurred_at <= query.until)
             and (query.outcome is None or e.outcome == query.outcome)
             and (query.actor_id is None or e.actor_id == query.actor_id)
             and (query.action is None or patterns.matches(query.action, e.action))]
    newest = sorted(match, key=lambda e: e.occurred_at, reverse=True)[:_summary.SAMPLE]
    assert summary.sampled == (_summary.SAMPLE if len(match) > _summary.SAMPLE and summary.sampled_facets else None)
    for name in _summary.FACETS:  # a sampled facet: counted over the newest SAMPLE matching events
        counted = newest if name in summary.sampled_facets else match
        counts = Counter(getattr(e, name) for e in counted if getattr(e, name) is not None)
        assert summary.facets[name] == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_summary.TOP], name
    charted = newest if "outcome" in summary.sampled_facets else match  # a sampled chart: the newest events
    assert summary.total == len(charted)
    assert summary.failures == sum(e.outcome == "failure" for e in charted)
    assert summary.bars, q
    for bar in summary.bars:
        inside = [e for e in charted if bar.start <= e.occurred_at < bar.end]
        assert (bar.total, bar.failures) == (len(inside), sum(e.outcome == "failure" for e in inside)), (q, bar)
    assert sum(b.total for b in summary.bars) == len(charted)  # no event falls outside the bars


FILTERS = [{}, {"since": "2026-06-14T12:34:56.789000Z"}, {"since": "2026-06-10T00:00:00.000000Z"},
           {"since": "2026-06-09T05:00:00.000000Z", "until": "2026-06-12T23:59:59.999999Z"},
           {"since": "2026-06-11T10:15:00.000000Z", "until": "2026-06-13T07:45:00.000000Z", "outcome": "failure"},
           {"since": "2026-06-15T10:00:00.000000Z"}, {"since": "2026-06-15T11:20:00.000000Z", "until": STAMP},
           {"outcome": "partial"}, {"outcome": "success"}, {"until": "2026-06-12T00:00:00.000000Z"},
           {"since": "2026-06-15T09:07:31.500000Z"}, {"since": "2026-06-15T12:10:00.000001Z", "until": STAMP},
           {"since": "2026-06-10T00:00:00.000000Z", "until": "2026-06-10T23:59:59.999999Z"},
           {"since": "2026-06-08T23:59:59.999999Z", "until": "2026-06-11T00:00:00.000000Z", "outcome": "success"}]


@pytest.mark.parametrize("q", FILTERS)
def test_counts_equal_a_brute_force_count(store: SQLiteStore, q: dict[str, str]) -> None:
    """Whole and partial days and hours, outcomes, open and closed spans: every figure is exact."""
    stored = events(3000, 1)
    store.write(stored)
    brute(stored, summarize(store, make_query("acme", **q), STAMP), **q)


def test_new_events_are_folded_in_and_other_tenants_stay_apart(store: SQLiteStore) -> None:
    """A page after new writes counts them (only the new ones are read); another tenant's never."""
    first, later = events(1500, 2), events(700, 3)
    store.write(first + events(300, 4, tenant="globex"))
    brute(first, summarize(store, make_query("acme"), STAMP))
    store.write(later)
    assert fold(store._conn(), "acme") == 700
    assert fold(store._conn(), "acme") == 0
    brute(first + later, summarize(store, make_query("acme", since="2026-06-13T00:00:00Z"), STAMP),
          since="2026-06-13T00:00:00Z")


def test_a_prune_starts_the_counts_over(tmp_path: Path) -> None:
    """After a prune removed old events, the counts are those of the events left."""
    from sealog import AuditLog

    log = AuditLog(f"sqlite:///{tmp_path / 'p.db'}", spool_dir=tmp_path / "spool", writer="thread")
    try:
        for e in sorted(events(400, 5), key=lambda e: e.occurred_at):  # a prune cuts a prefix of the chain
            log.emit(**{k: v for k, v in e.to_dict().items() if v is not None and k not in ("seq", "prev_hash",
                                                                                             "hash", "recorded_at")})
        assert log.flush(20)
        store = log._reader()
        assert summarize(store, make_query("acme"), STAMP).total == 400
        log.prune("acme", "2026-06-12T00:00:00Z")
        assert log.flush(20)
        left = list(log.iter_events("acme"))
        assert 1 < len(left) < 400
        brute(left, summarize(store, make_query("acme"), STAMP))
    finally:
        log.close()


def test_other_filters_count_their_newest_events_and_say_when_sampled(store: SQLiteStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An actor filter is counted from the matching events; past SAMPLE of them, from the newest, flagged."""
    stored = events(2000, 6)
    store.write(stored)
    whole = summarize(store, make_query("acme", actor_id="u-1"), STAMP)
    assert whole.sampled is None
    brute(stored, whole, actor_id="u-1")
    monkeypatch.setattr(_summary, "SAMPLE", 100)
    part = summarize(store, make_query("acme", actor_id="u-1"), STAMP)
    assert part.sampled == 100
    assert part.total == 100
    assert set(part.sampled_facets) == set(_summary.FACETS)


def test_a_store_without_sql_is_counted_from_its_pages() -> None:
    """The in-memory store (sealog.testing) gets the same summary from its query pages."""
    store = MemoryStore()
    stored = events(500, 7)
    store.write(stored)
    brute(stored, summarize(store, make_query("acme", since="2026-06-12T00:00:00Z"), STAMP),
          since="2026-06-12T00:00:00Z")


def test_random_spans_over_dense_minutes_equal_a_brute_force_count(store: SQLiteStore) -> None:
    """Spans cut anywhere (partial days, hours and minutes at both edges, bars of a minute to a day) over
    events dense enough that every minute holds some: days, hours and minutes from the counts, the
    rest from the events, and every figure still exact."""
    stored = events(4000, 8, start=NOW - timedelta(hours=30)) + events(1000, 9)
    store.write(stored)
    rnd = random.Random(10)
    for _ in range(40):
        lo, hi = sorted(NOW - timedelta(hours=32) * rnd.random() for _ in range(2))
        q = {"since": timefmt.format_datetime(lo), "until": timefmt.format_datetime(hi)}
        if rnd.random() < 0.3:
            q["outcome"] = rnd.choice(["failure", "success"])
        if rnd.random() < 0.2:
            del q["until"]
        brute(stored, summarize(store, make_query("acme", **q), STAMP), **q)


def test_time_spans_after_new_writes_and_a_prune(tmp_path: Path) -> None:
    """New events in hours and minutes already folded add to their counts; a prune starts them over."""
    from sealog import AuditLog

    log = AuditLog(f"sqlite:///{tmp_path / 'p.db'}", spool_dir=tmp_path / "spool", writer="thread")
    spans = [{"since": "2026-06-15T11:02:03.000000Z"}, {"since": "2026-06-14T23:30:00.000000Z",
                                                        "until": "2026-06-15T12:00:30.000000Z"},
             {"since": "2026-06-13T05:00:00.000000Z", "until": "2026-06-15T12:34:00.000000Z"}]

    def emit(batch: list[Event]) -> None:
        for e in sorted(batch, key=lambda e: e.occurred_at):  # a prune cuts a prefix of the chain
            log.emit(**{k: v for k, v in e.to_dict().items()
                        if v is not None and k not in ("seq", "prev_hash", "hash", "recorded_at")})
        assert log.flush(20)

    try:
        emit(events(600, 11, start=NOW - timedelta(days=3)))
        store = log._reader()
        for q in spans:
            brute(list(log.iter_events("acme")), summarize(store, make_query("acme", **q), STAMP), **q)
        emit(events(300, 12, start=NOW - timedelta(hours=2)))  # into hours and minutes already folded
        assert fold(store._conn(), "acme") == 300
        for q in spans:
            brute(list(log.iter_events("acme")), summarize(store, make_query("acme", **q), STAMP), **q)
        log.prune("acme", "2026-06-14T00:00:00Z")
        assert log.flush(20)
        left = list(log.iter_events("acme"))
        assert 300 < len(left) < 900
        for q in spans:
            brute(left, summarize(store, make_query("acme", **q), STAMP), **q)
    finally:
        log.close()


def test_an_action_pattern_is_counted_from_its_newest_events(store: SQLiteStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A pattern is checked as the list of the tenant's matching actions (from the folded totals): the
    same events as the pattern itself, an action first seen after the last fold included."""
    stored = events(1500, 13)
    store.write(stored)
    for q in ({"action": "auth.*"}, {"action": "#.call"}, {"action": "auth.*", "since": "2026-06-13T08:00:00Z"}):
        brute(stored, summarize(store, make_query("acme", **q), STAMP), **q)
    fresh = events(50, 14, start=NOW - timedelta(hours=1), actions=("auth.sso",))
    store.write(fresh)
    brute(stored + fresh, summarize(store, make_query("acme", action="auth.*"), STAMP), action="auth.*")
    monkeypatch.setattr(_summary, "SAMPLE", 100)
    part = summarize(store, make_query("acme", action="auth.*"), STAMP)
    assert part.sampled == 100
    assert dict(part.facets["action"])["auth.sso"] == 50  # the newest 100: the 50 new ones among them
    brute(stored + fresh, part, action="auth.*")
