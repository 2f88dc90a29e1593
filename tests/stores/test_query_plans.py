"""Query plans (migration 007, resolved action patterns) never change what a search returns.

Every filter and action pattern combination, paged through to the end, on SQLite and a real
PostgreSQL, against a brute-force filter over all stored events: the same rows, in the same
order, with the same cursors. Patterns cover each plan: an exact action, ``#`` (no action
condition), patterns resolved to the tenant's stored actions (``auth.*``, ``auth.#``,
``*.login``, ``#.revoke``), one matching nothing (an empty page at once), and one matching more
actions than the cap (the single range search).
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sealog import Event
from sealog._patterns import matches
from sealog.stores import Query, Store, open_store
from sealog.stores.base import MAX_ACTIONS, encode_cursor
from sealog.stores.sqlite import SQLiteStore

from ..fixtures.pgserver import PgServer
from .test_contract import DATABASES

TENANT = "acme"
# Near misses around the prefixes: 'auth' itself (auth.# matches it), 'auth-x' sorts between
# 'auth' and 'auth.', 'authx' right after 'auth/'; 'bulk.*' matches more actions than the cap.
ACTIONS = ["auth", "auth.login", "auth.logout", "auth.mfa.verify", "auth-x.login", "authx.login", "user.login",
           "user.role.revoke", "api_key.revoke", "tool.call", "a.b.login", "login",
           *(f"bulk.a{i:02d}" for i in range(MAX_ACTIONS + 10))]
PATTERNS = [None, "#", "auth.login", "auth.*", "auth.#", "*.login", "#.revoke", "#.login", "*.*.*", "auth.*.#",
            "nothing.*", "*.nothing", "bulk.*", "#.a07"]
OUTCOMES = ["success", "failure", "partial", "pending"]
ACTORS = ["u-1", "u-2", "u-3"]
TARGETS = ["t-1", "t-2", "t-3", "t-4"]
# Few distinct times: many events share one, so the seq tie-break of the order is exercised.
TIMES = [f"2026-11-{day:02d}T{hour:02d}:00:00.000000Z" for day in (1, 2, 3) for hour in (3, 9, 15, 21)]
FILTERS: list[dict[str, Any]] = [
    {},
    {"since": TIMES[4]},
    {"until": TIMES[7]},
    {"since": TIMES[2], "until": TIMES[9]},
    {"actor_id": "u-2"},
    {"target_id": "t-3"},
    {"outcome": "failure"},
    {"outcome": "pending", "since": TIMES[3]},
    {"actor_id": "u-1", "outcome": "success"},
    {"target_id": "t-1", "outcome": "failure", "until": TIMES[10]},
    {"actor_id": "u-3", "target_id": "t-2"},
]


@dataclass
class Populated:
    store: Store
    events: list[Event]  # as stored (with seq), all tenants


def events_for(tenant: str, count: int, rng: random.Random) -> list[Event]:
    # Every action at least once, the rest weighted to the short list (so 'bulk.*' is not everything).
    actions = ACTIONS + rng.choices(ACTIONS[:12], k=count - len(ACTIONS))
    rng.shuffle(actions)
    return [Event(event_id=str(uuid.uuid4()), tenant_id=tenant, action=action, outcome=rng.choice(OUTCOMES),
                  occurred_at=rng.choice(TIMES), actor_id=rng.choice(ACTORS), target_id=rng.choice(TARGETS))
            for action in actions]


@pytest.fixture(scope="module", params=DATABASES)
def populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    """One store per kind, migrated and written once: 500 events in the tenant, 150 in another."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'audit.db'}"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.create_database(f"plans_{uuid.uuid4().hex[:12]}")
    store = open_store(url)
    store.migrate()
    rng = random.Random(2026)
    for tenant, count in ((TENANT, 500), ("other", 150)):
        batch = events_for(tenant, count, rng)
        for start in range(0, len(batch), 100):
            store.write(batch[start : start + 100])
    stored = [e for tenant in (TENANT, "other") for e in store.iter_events(tenant)]
    yield Populated(store, stored)
    store.close()


def expected(events: list[Event], query: Query) -> list[Event]:
    """The brute-force answer: filter every stored event in Python, newest first, seq breaking ties."""
    found = [e for e in events if e.tenant_id == query.tenant_id
             and (query.action is None or matches(query.action, e.action))
             and all(getattr(query, f) is None or getattr(e, f) == getattr(query, f)
                     for f in ("actor_id", "target_id", "outcome"))
             and (query.since is None or e.occurred_at >= query.since)
             and (query.until is None or e.occurred_at <= query.until)]
    return sorted(found, key=lambda e: (e.occurred_at, e.seq or 0), reverse=True)


def assert_pages(store: Store, events: list[Event], query: Query) -> int:
    """Page through ``query`` to the end; every page and cursor as the brute force says. Returns the rows."""
    want = expected(events, query)
    seen: list[Event] = []
    after = None
    while True:
        page = store.query(replace(query, after=after))
        chunk = want[len(seen) : len(seen) + query.limit]
        assert [e.event_id for e in page] == [e.event_id for e in chunk], (query, after)
        assert list(page) == chunk, query
        seen += page
        more = len(seen) < len(want)
        assert page.next == (encode_cursor(chunk[-1].occurred_at, chunk[-1].seq or 0) if more else None), query
        if page.next is None:
            break
        after = page.next
    assert len(seen) == len(want)
    return len(seen)


@pytest.mark.parametrize("action", PATTERNS)
def test_every_filter_pages_like_brute_force(populated: Populated, action: str | None) -> None:
    counts = []
    for filters in FILTERS:
        for limit in (1, 9, 10_000) if not filters else (9,):
            query = Query(TENANT, action=action, limit=limit, **filters)
            counts.append(assert_pages(populated.store, populated.events, query))
    if action in ("nothing.*", "*.nothing"):
        assert not any(counts)
    else:  # the data reach every plan: each pattern matches something
        assert counts[0] > 0


def test_the_cap_and_the_tenant_fixture_are_what_the_patterns_need(populated: Populated) -> None:
    """'bulk.*' must match more actions than the cap, '*.login' fewer; the other tenant stays out."""
    actions = {e.action for e in populated.events if e.tenant_id == TENANT}
    assert sum(matches("bulk.*", a) for a in actions) > MAX_ACTIONS
    assert 1 < sum(matches("*.login", a) for a in actions) <= MAX_ACTIONS
    assert all(e.tenant_id == "other" for e in populated.store.query(Query("other", action="auth.*", limit=10_000)))


def traced(store: SQLiteStore, query: Query) -> list[str]:
    """The statements a SQLite search runs."""
    statements: list[str] = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    try:
        store.query(query)
    finally:
        conn.set_trace_callback(None)
    return statements


def test_sqlite_plans_resolve_patterns_and_use_the_new_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.migrate()
    rng = random.Random(7)
    store.write(events_for(TENANT, 200, rng))

    def searches(statements: list[str]) -> list[str]:
        return [s for s in statements if "ORDER BY occurred_at DESC" in s]

    resolved = searches(traced(store, Query(TENANT, action="*.login")))
    assert len(resolved) == 1
    assert resolved[0].count("UNION ALL") == 3  # auth, auth-x, authx, user
    assert "sealog_match" not in resolved[0]
    assert searches(traced(store, Query(TENANT, action="nothing.*"))) == []  # an empty page at once
    over_cap = searches(traced(store, Query(TENANT, action="bulk.*")))
    assert len(over_cap) == 1
    assert "UNION ALL" not in over_cap[0]
    assert "sealog_match" in over_cap[0]
    # '+outcome' beside a selective filter; the outcome index alone.
    assert "+outcome = " in searches(traced(store, Query(TENANT, actor_id="u-1", outcome="failure")))[0]
    alone = searches(traced(store, Query(TENANT, outcome="failure")))[0]
    assert "+outcome" not in alone

    conn = sqlite3.connect(store.path)
    try:
        def plan(sql: str, *params: str) -> str:
            return " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

        select = "SELECT * FROM events WHERE tenant_id = ? AND {} ORDER BY occurred_at DESC, seq DESC LIMIT 10"
        assert "events_tenant_target" in plan(select.format("target_id = ?"), TENANT, "t-1")
        assert "events_tenant_outcome" in plan(select.format("outcome = ?"), TENANT, "pending")
        assert "events_tenant_outcome" not in plan(select.format("actor_id = ? AND +outcome = ?"), TENANT, "u-1",
                                                   "failure")
    finally:
        conn.close()
        store.close()


def test_postgres_has_the_new_indexes(pg_url: str) -> None:
    import psycopg

    store = open_store(pg_url)
    store.migrate()
    store.close()
    with psycopg.connect(pg_url) as conn:
        found = {row[0]: row[1] for row in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sealog_events'")}
    assert "(tenant_id, target_id, occurred_at, seq)" in found["sealog_events_tenant_target"]
    assert "(tenant_id, outcome, occurred_at, seq)" in found["sealog_events_tenant_outcome"]


def test_sqlite_replay_lookup_seeks_each_key_instead_of_scanning(tmp_path: Path) -> None:
    """A replayed batch is checked against the (tenant_id, event_id) key by a seek per key; the
    lookup finds exactly the stored ones (an IN (VALUES ...) row-value test scanned the whole index)."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'replay.db'}")
    store.migrate()
    stored = [Event(event_id=f"e-{i}", tenant_id="acme", action="auth.login", occurred_at="2026-01-01T00:00:00.000000Z")
              for i in range(20)]
    store.write(stored)
    fresh = [msgspec.structs.replace(e, event_id=f"new-{i}") for i, e in enumerate(stored[:5])]
    statements: list[str] = []
    conn = sqlite3.connect(tmp_path / "replay.db")
    conn.set_trace_callback(statements.append)
    try:
        unseen = SQLiteStore._unseen(conn, [*stored[::2], *fresh, stored[0]])
        assert [e.event_id for e in unseen] == [e.event_id for e in fresh]
        [lookup] = [s for s in statements if "VALUES" in s]
        conn.set_trace_callback(None)
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + lookup))
    finally:
        conn.close()
        store.close()
    assert "SEARCH e USING" in plan, plan
    assert "SCAN events" not in plan, plan
