"""The store contract: every store (memory, SQLite, PostgreSQL) passes the same suite.

Insert, replay and dedupe on ``(tenant_id, event_id)``, per-tenant sealing, query filters
and paging, verify, a lost chain-head row, outage classification, and concurrent writers.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sealog import AuditLog, Event, InvalidQuery, StoreUnavailable
from sealog._event import CONTENT_FIELDS
from sealog.stores import Query, Store, open_store
from sealog.testing import MemoryStore

from ..children import start_emitter

GENESIS = "0" * 64
KINDS = ["memory", "sqlite", "postgres"]
DATABASES = ["sqlite", "postgres"]


def url_of(kind: str, request: pytest.FixtureRequest) -> str:
    """The database URL of a kind; PostgreSQL starts only when a postgres case runs."""
    fixture = "db_url" if kind == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


def new_store(kind: str, request: pytest.FixtureRequest) -> Store:
    return MemoryStore() if kind == "memory" else open_store(url_of(kind, request))


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A migrated store of each kind."""
    opened = new_store(request.param, request)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of a store that lives outside the process; nothing migrated yet."""
    return request.param, url_of(request.param, request)


def event(tenant: str = "acme", action: str = "auth.login", **fields: Any) -> Event:
    """A valid event with a fresh id; ``fields`` override anything."""
    values: dict[str, Any] = {"event_id": str(uuid.uuid4()), "tenant_id": tenant, "action": action,
                              "occurred_at": "2026-12-01T10:00:00.000000Z", **fields}
    return Event(**values)


def chain(store: Store, tenant: str) -> list[Event]:
    return list(store.iter_events(tenant))


def assert_sealed(store: Store, tenant: str, count: int) -> None:
    """seq 1..count without gaps, linked from 64 zeros, the head on the last event."""
    events = chain(store, tenant)
    assert [e.seq for e in events] == list(range(1, count + 1))
    assert [e.prev_hash for e in events] == [GENESIS] + [e.hash for e in events[:-1]]
    head = next(h for h in store.heads() if h.tenant_id == tenant)
    assert (head.seq, head.hash) == (count, events[-1].hash)


def content(e: Event) -> dict[str, Any]:
    return {name: getattr(e, name) for name in CONTENT_FIELDS}


# -- insert, replay, dedupe ----------------------------------------------------------


def test_write_seals_each_tenant_in_its_own_gap_free_chain(store: Store) -> None:
    """Interleaved tenants in one batch: each gets seq 1..n from 64 zeros; verify counts all."""
    batch = [event("acme" if i % 3 else "globex", metadata={"i": i}) for i in range(12)]
    assert store.write(batch) == 12
    assert store.write([event("acme"), event("globex"), event("initech")]) == 3
    assert_sealed(store, "acme", 9)
    assert_sealed(store, "globex", 5)
    assert_sealed(store, "initech", 1)
    assert {h.tenant_id: h.seq for h in store.heads()} == {"acme": 9, "globex": 5, "initech": 1}
    report = store.verify()
    assert report.ok, report.problems
    assert report.checked == 15
    assert store.verify("globex").checked == 5


def test_every_content_field_round_trips(store: Store) -> None:
    """get() returns exactly what was written, plus the seal fields."""
    full = event(outcome="failure", actor_type="user", actor_id="u-1", target_type="doc", target_id="d-1",
                 ip_address="2001:db8::1", user_agent="curl/8", request_id="r-1", correlation_id="c-1",
                 span_id="s-1", parent_event_id="p-1", source="svc", latency_ms=12.5, error_code="E42",
                 error_message="nope", metadata={"n": 1, "f": 0.1, "nested": {"l": [1, None, True, "☃"]}},
                 proof={"type": "hash", "hash": "ab"}, before={"plan": "free"}, after=["pro", 2.5])
    assert store.write([full]) == 1
    stored = store.get("acme", full.event_id)
    assert stored is not None
    assert content(stored) == content(full)
    assert (stored.seq, stored.prev_hash) == (1, GENESIS)
    assert stored.hash is not None
    assert stored.recorded_at is not None
    assert store.get("acme", "no-such-id") is None


def test_replayed_batch_adds_no_row_and_uses_no_seq(store: Store) -> None:
    """A batch written again (a lost commit acknowledgement) is stored once; the chain goes on at n+1."""
    batch = [event(metadata={"i": i}) for i in range(10)]
    assert store.write(batch) == 10
    assert store.write(batch) == 0
    newcomer = event()
    assert store.write([*batch[5:], newcomer]) == 1
    assert_sealed(store, "acme", 11)
    assert chain(store, "acme")[-1].event_id == newcomer.event_id
    assert store.verify().ok


def test_a_big_batch_replayed_in_its_later_part_is_stored_once(store: Store) -> None:
    """2,300 events, the last 1,200 already stored: the store meets them past its first chunks (SQLite inserts
    in 500-row chunks on another thread while it seals the next), rolls back, and adds only the new ones."""
    old = [event(metadata={"i": i}) for i in range(1_200)]
    assert store.write(old) == 1_200
    new = [event(metadata={"i": i}) for i in range(1_200, 2_300)]
    assert store.write([*new, *old]) == 1_100
    assert_sealed(store, "acme", 2_300)
    assert {e.event_id for e in chain(store, "acme")} == {e.event_id for e in old + new}
    assert store.verify().ok


def test_replay_with_other_content_keeps_the_first(store: Store) -> None:
    """Same (tenant, id), different occurred_at and metadata: nothing added, the first version stays."""
    first = event(metadata={"v": 1})
    assert store.write([first]) == 1
    changed = event(event_id=first.event_id, occurred_at="2027-01-01T00:00:00.000000Z", metadata={"v": 2},
                    outcome="failure")
    assert store.write([changed]) == 0
    stored = store.get("acme", first.event_id)
    assert stored is not None
    assert content(stored) == content(first)
    assert_sealed(store, "acme", 1)


def test_duplicates_within_one_batch_first_wins(store: Store) -> None:
    """Two events with one (tenant, id) in a batch: one row, the first one's content."""
    first = event(metadata={"v": 1})
    second = event(event_id=first.event_id, metadata={"v": 2}, occurred_at="2026-12-02T00:00:00.000000Z")
    assert store.write([first, event(), second]) == 2
    stored = store.get("acme", first.event_id)
    assert stored is not None
    assert stored.metadata == {"v": 1}
    assert_sealed(store, "acme", 2)


@pytest.mark.parametrize("same_batch", [False, True], ids=["two-batches", "one-batch"])
def test_same_event_id_in_two_tenants_is_two_events(store: Store, same_batch: bool) -> None:
    """One tenant's ids never suppress another's: both stored, each tenant sees only its own."""
    theirs = event("other", "billing.charge", event_id="inv-1", actor_id="them")
    ours = event("acme", "auth.login", event_id="inv-1", actor_id="us")
    if same_batch:
        assert store.write([theirs, ours]) == 2
    else:
        assert store.write([theirs]) == 1
        assert store.write([ours]) == 1
    mine, other = store.get("acme", "inv-1"), store.get("other", "inv-1")
    assert mine is not None
    assert other is not None
    assert (mine.tenant_id, mine.actor_id) == ("acme", "us")
    assert (other.tenant_id, other.actor_id) == ("other", "them")
    assert [e.actor_id for e in store.query(Query("acme")).events] == ["us"]
    assert [e.actor_id for e in store.query(Query("other")).events] == ["them"]
    assert store.write([ours, theirs]) == 0  # and each is still recognised as a replay
    assert_sealed(store, "acme", 1)
    assert_sealed(store, "other", 1)
    assert store.verify().ok


def test_empty_batch_adds_nothing(store: Store) -> None:
    """write([]) is a no-op: 0 rows, no chain head."""
    assert store.write([]) == 0
    assert store.heads() == []
    assert store.verify().ok


# -- query: filters, time bounds, paging ---------------------------------------------

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def at(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ACTIONS = ["auth.login", "auth.logout", "auth.mfa.verify", "auth", "billing.charge", "authx.login"]
OUTCOMES = ["success", "failure", "partial", "pending"]


def dataset() -> list[Event]:
    """24 events per tenant, one a minute, every filterable field varied; globex mirrors acme."""
    events = []
    for tenant in ("acme", "globex"):
        for i in range(24):
            events.append(event(tenant, ACTIONS[i % 6], occurred_at=at(i), actor_id=f"u-{i % 4}",
                                target_id=f"d-{i % 3}", outcome=OUTCOMES[i % 4], request_id=f"r-{i // 2}",
                                correlation_id=f"c-{i // 6}", metadata={"i": i}))
    return events


FILTERS: list[tuple[dict[str, Any], Callable[[Event], bool]]] = [
    ({}, lambda e: True),
    ({"action": "auth.login"}, lambda e: e.action == "auth.login"),
    ({"action": "auth.*"}, lambda e: e.action in ("auth.login", "auth.logout")),
    ({"action": "auth.#"}, lambda e: e.action in ("auth.login", "auth.logout", "auth.mfa.verify", "auth")),
    ({"action": "*.login"}, lambda e: e.action in ("auth.login", "authx.login")),
    ({"action": "#.verify"}, lambda e: e.action == "auth.mfa.verify"),
    ({"actor_id": "u-1"}, lambda e: e.actor_id == "u-1"),
    ({"target_id": "d-2"}, lambda e: e.target_id == "d-2"),
    ({"outcome": "failure"}, lambda e: e.outcome == "failure"),
    ({"request_id": "r-3"}, lambda e: e.request_id == "r-3"),
    ({"correlation_id": "c-2"}, lambda e: e.correlation_id == "c-2"),
    ({"since": at(5)}, lambda e: e.occurred_at >= at(5)),
    ({"until": at(5)}, lambda e: e.occurred_at <= at(5)),
    ({"since": at(3), "until": at(17), "action": "auth.#", "outcome": "success"},
     lambda e: at(3) <= e.occurred_at <= at(17) and e.action.split(".")[0] == "auth" and e.outcome == "success"),
    ({"actor_id": "nobody"}, lambda e: False),
]


def newest_first(events: list[Event]) -> list[str]:
    return [e.event_id for e in sorted(events, key=lambda e: e.occurred_at, reverse=True)]


def test_query_filters_match_exactly_newest_first_within_the_tenant(store: Store) -> None:
    """Each filter (action patterns, ids, outcome, since/until, combined) returns exactly the matches."""
    events = dataset()
    store.write(events)
    acme = [e for e in events if e.tenant_id == "acme"]
    wrong: list[tuple[dict[str, Any], object, object]] = []
    for filters, wanted in FILTERS:
        page = store.query(Query("acme", limit=1000, **filters))
        got = [e.event_id for e in page.events]
        if got != newest_first([e for e in acme if wanted(e)]) or page.next is not None:
            wrong.append((filters, len(got), page.next))
        if any(e.tenant_id != "acme" for e in page.events):
            wrong.append((filters, "another tenant's event", None))
    assert not wrong


def test_paging_has_no_overlap_no_gap_newest_first(store: Store) -> None:
    """limit 7 over 30 events (ties on occurred_at broken by seq): the pages add up to the whole, in order."""
    store.write([event(occurred_at=at(i // 3), metadata={"i": i}) for i in range(30)])
    store.write([event("globex", occurred_at=at(i)) for i in range(10)])
    whole = store.query(Query("acme", limit=1000)).events
    assert len(whole) == 30
    assert [(e.occurred_at, e.seq) for e in whole] == sorted(((e.occurred_at, e.seq) for e in whole), reverse=True)
    pages, cursor = [], None
    while True:
        page = store.query(Query("acme", limit=7, after=cursor))
        pages.append([e.event_id for e in page.events])
        cursor = page.next
        if cursor is None:
            break
        assert len(pages) < 10
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert [eid for p in pages for eid in p] == [e.event_id for e in whole]
    filtered = store.query(Query("acme", action="auth.*", limit=29))
    assert filtered.next is not None
    rest = store.query(Query("acme", action="auth.*", limit=29, after=filtered.next))
    assert (len(filtered.events), len(rest.events), rest.next) == (29, 1, None)


def test_page_iterates_its_events_and_has_len(store: Store) -> None:
    """A Page is a sequence of events: iterable, len, .events and .next."""
    store.write([event(occurred_at=at(i)) for i in range(5)])
    page = store.query(Query("acme", limit=3))
    assert len(page) == 3
    assert list(page) == page.events
    assert all(isinstance(e, Event) for e in page)
    assert page.next is not None
    last = store.query(Query("acme", limit=3, after=page.next))
    assert len(last) == 2
    assert last.next is None


def test_foreign_cursor_is_an_invalid_query(store: Store) -> None:
    """A cursor this store did not issue is InvalidQuery, not a driver error."""
    with pytest.raises(InvalidQuery):
        store.query(Query("acme", after="!!not-a-cursor!!"))


def test_auditlog_query_takes_datetime_timedelta_span_and_text(store: Store, tmp_path: Path) -> None:
    """since/until through AuditLog.query: aware datetime, timedelta, '2h' and RFC 3339 all bound alike."""
    now = datetime.now(UTC)
    stamps = [now - timedelta(hours=h) for h in (5, 3, 1.5, 0.5)]
    written = [event(occurred_at=s.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) for s in stamps]
    store.write(written)
    recent = {e.event_id for e in written[2:]}
    with AuditLog(store=store, spool_dir=tmp_path / "spool", writer="thread") as log:
        for since in (timedelta(hours=2), "2h", now - timedelta(hours=2),
                      (now - timedelta(hours=2)).isoformat(), (now - timedelta(hours=2)).astimezone().isoformat()):
            assert {e.event_id for e in log.query("acme", since=since).events} == recent, since
        old = log.query("acme", until=now - timedelta(hours=2))
        assert {e.event_id for e in old.events} == {e.event_id for e in written[:2]}
        between = log.query("acme", since=timedelta(hours=4), until=timedelta(hours=1))
        assert {e.event_id for e in between.events} == {written[1].event_id, written[2].event_id}
        with pytest.raises(InvalidQuery):
            log.query("acme", since=datetime(2026, 1, 1))  # naive: ambiguous
        with pytest.raises(InvalidQuery):
            log.query("acme", since="yesterday-ish")


# -- chain heads ---------------------------------------------------------------------


def delete_head(kind: str, url: str, tenant: str) -> None:
    """The plain SQL an operator (or a bad restore) might run."""
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("DELETE FROM chain_heads WHERE tenant_id = ?", (tenant,)).rowcount == 1
        return
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("DELETE FROM sealog_chain_heads WHERE tenant_id = %s", (tenant,)).rowcount == 1


def test_deleted_head_row_continues_the_chain_without_a_fork(database: tuple[str, str]) -> None:
    """With a tenant's head row gone, the next write goes on at the last seq + 1 with the right prev_hash."""
    kind, url = database
    store = open_store(url)
    try:
        store.migrate()
        store.write([event(metadata={"i": i}) for i in range(3)] + [event("globex")])
        last = chain(store, "acme")[-1]
        delete_head(kind, url, "acme")
        later = [event(metadata={"i": i}) for i in range(3, 5)]
        assert store.write(later) == 2
        events = chain(store, "acme")
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert events[3].prev_hash == last.hash
        assert [e.event_id for e in events[3:]] == [e.event_id for e in later]
        assert_sealed(store, "acme", 5)
        assert_sealed(store, "globex", 1)
        report = store.verify()
        assert report.ok, report.problems
    finally:
        store.close()


# -- outages -------------------------------------------------------------------------


def test_write_to_an_unmigrated_store_is_an_outage(database: tuple[str, str]) -> None:
    """No tables yet: write raises StoreUnavailable (retry later), never EventRejected."""
    _, url = database
    store = open_store(url)
    try:
        with pytest.raises(StoreUnavailable):
            store.write([event()])
        store.migrate()
        assert store.write([event()]) == 1  # the same object works once the schema exists
    finally:
        store.close()


# -- concurrency ---------------------------------------------------------------------


def test_concurrent_writers_extend_one_chain_per_tenant(request: pytest.FixtureRequest, store: Store) -> None:
    """Four threads, each with its own store object (one shared MemoryStore), two tenants: no gap, no fork."""
    kind = request.node.callspec.params["store"]
    writers = [store] * 4 if kind == "memory" else [open_store(store.url) for _ in range(4)]
    errors: list[BaseException] = []

    def work(writer: Store, n: int) -> None:
        try:
            for batch in range(20):
                writer.write([event(("acme", "globex")[(n + i) % 2], metadata={"n": n, "b": batch, "i": i})
                              for i in range(5)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, n)) for n, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if kind != "memory":
        for writer in writers:
            writer.close()
    assert not errors
    assert_sealed(store, "acme", 200)
    assert_sealed(store, "globex", 200)
    assert store.verify().ok


@pytest.mark.slow
def test_four_processes_two_tenants_each_chain_gap_free(database: tuple[str, str], tmp_path: Path) -> None:
    """Four AuditLog processes over two tenants: every returned id stored once, both chains seq 1..n, verify ok."""
    _, url = database
    store = open_store(url)
    store.migrate()
    try:
        children = [start_emitter(url, tmp_path / "spool", ("acme", "globex")[n % 2], count=150, threads=2)
                    for n in range(4)]
        returned: dict[str, list[str]] = {"acme": [], "globex": []}
        for n, child in enumerate(children):
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            returned[("acme", "globex")[n % 2]] += out.split()
        for tenant, ids in returned.items():
            assert len(ids) == 600
            assert Counter(e.event_id for e in chain(store, tenant)) == Counter(ids)
            assert_sealed(store, tenant, 600)
        assert store.verify().ok
    finally:
        store.close()


# -- verify while writing ------------------------------------------------------------

WRITER = textwrap.dedent('''
    import os, sys
    from sealog import AuditLog
    url, spool, stop = sys.argv[1:4]
    with AuditLog(url, spool_dir=spool, writer="thread") as log:
        rounds = 0
        while not os.path.exists(stop):
            for tenant in ("acme", "globex", "initech"):  # a small commit per tenant, as often as it can
                log.emit(tenant_id=tenant, action="test.verify", metadata={"r": rounds})
            if not log.flush(30):
                sys.exit(5)
            rounds += 1
            if rounds == 3:
                print("writing", flush=True)
''')


@pytest.mark.slow
def test_verify_while_another_process_writes_always_exits_0(database: tuple[str, str], tmp_path: Path) -> None:
    """`sealog verify` 20 times during a steady stream of commits: never a false tamper alarm."""
    _, url = database
    store = open_store(url)
    store.migrate()
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(tmp_path / "spool"), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        before = sum(h.seq for h in store.heads())
        for run in range(20):
            done = subprocess.run([sys.executable, "-m", "sealog", "verify", "--url", url], capture_output=True,
                                  text=True, timeout=60, check=False, cwd=tmp_path)
            assert done.returncode == 0, f"run {run}: {done.stdout}{done.stderr}"
        assert sum(h.seq for h in store.heads()) > before  # the writer really wrote meanwhile
        assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
    finally:
        stop.touch()
        _, err = writer.communicate(timeout=60)
        store.close()
    assert writer.returncode == 0, err
    final = open_store(url)
    try:
        assert final.verify().ok
    finally:
        final.close()
