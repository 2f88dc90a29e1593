"""The viewer's list page (with its activity chart and facets) at 10^4, 10^5 and 10^6 events in one tenant.

Each store is built once through ``SQLiteStore.write`` (the store's own write path: sealing and tree
rows) in batches of 20,000 and cached under
``/tmp/sealog-bench-viewer/`` (delete it to rebuild; 10^6 events take several minutes). The events
spread over the 30 days before the build, with 49 actions, ~2,000 actors (Pareto: a few very
busy), 20,000 targets and 3 % failures.

For each size and filter, requests alternate (so the shared machine's noise hits all alike) and it
reports p50 and p95 of:

- page: ``GET /events?...`` through the ASGI app (session cookie, rendering, chart and facets);
- summary: the chart and facets alone (``stores._summary.summarize``), what the bar is about;
- list: the page's 50 newest matching events alone (``AuditLog.query``), the baseline the page adds to.

Bar: summary p50 <= 100 ms at 10^6 events for the list as first opened (no filter), and for
time filters (since=24h: bars of an hour; since=6h: bars of 15 minutes). Their chart, actions and
outcomes are summed from the folded counts (days, hours and minutes; only the partial minutes or
hours at a span's edges are read from the events); their actors and targets, and everything of
other filters (an action pattern, an actor), count the newest 2,000 matching events. Those other
filters' figures are printed, not barred.

The chart and facets read counts the viewer folds in from the events stored since its last fold
(``stores._summary.fold``; writes pay nothing). Also reported: the first fold of a whole store (the
first page view after a bulk import, once), and the fold of 1,000 new events (what a page view after
1,000 writes pays on top).
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Bar, header, median, parser, quantile, table, temp_dir, verdict
from sealog import AuditLog, Event
from sealog import _timefmt as timefmt
from sealog._log import make_query
from sealog.stores._summary import fold, summarize
from sealog.stores.sqlite import SQLiteStore

CACHE = Path("/tmp/sealog-bench-viewer")
ACTIONS = [f"{a}.{b}" for a in ("auth", "content", "data", "settings", "tool", "billing", "admin")
           for b in ("create", "read", "update", "delete", "login", "export", "call")]
FILTERS = {
    "none (as first opened)": {},
    "since=24h": {"since": "24h"},
    "since=6h": {"since": "6h"},
    "outcome=failure": {"outcome": "failure"},
    "actor_id=u-1": {"actor_id": "u-1"},
    "action=auth.*": {"action": "auth.*"},
}
BARRED = ("none (as first opened)", "since=24h", "since=6h")


def events(n: int, start: datetime, seconds: float, rnd: random.Random) -> Iterator[Event]:
    step = seconds / n
    for i in range(n):
        yield Event(event_id=str(uuid.UUID(int=rnd.getrandbits(128))), tenant_id="acme", action=rnd.choice(ACTIONS),
                    occurred_at=timefmt.format_datetime(start + timedelta(seconds=i * step)),
                    outcome="failure" if rnd.random() < 0.03 else "success", actor_type="user",
                    actor_id=f"u-{int(rnd.paretovariate(1.2)) % 2000}", target_type="doc",
                    target_id=f"d-{rnd.randrange(20000)}", request_id=f"r-{i}", ip_address="203.0.113.9",
                    metadata={"i": i})


def build(path: Path, n: int, days: int = 30) -> float:
    store = SQLiteStore(f"sqlite:///{path}")
    store.migrate()
    rnd = random.Random(7)
    started = time.perf_counter()
    batch: list[Event] = []
    for event in events(n, datetime.now(UTC) - timedelta(days=days), days * 86400, rnd):
        batch.append(event)
        if len(batch) == 20_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store.close()
    return time.perf_counter() - started


def cached(n: int) -> Path:
    path = CACHE / f"gen-{n}.db"
    if path.exists():
        with sqlite3.connect(path) as conn:
            ready = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'viewer_counts'").fetchone()[0]
            done = conn.execute("SELECT seq FROM chain_heads WHERE tenant_id = 'acme'").fetchone()
        if ready and done and done[0] == n:
            store = SQLiteStore(f"sqlite:///{path}")  # a cache older than the schema: migrate it once, here
            store.migrate()
            store.close()
            return path
        path.unlink()
    CACHE.mkdir(exist_ok=True)
    print(f"   building {n:,} events in {path} ...", flush=True)
    print(f"   built in {build(path, n):.0f} s", flush=True)
    return path


def settled(path: Path, patience: float = 300) -> None:
    """Wait until a new log's writer thread has let go of the copy (its start-up migration takes the
    write lock; on a store older than the schema, for as long as building an index takes)."""
    conn = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    deadline = time.monotonic() + patience
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        conn.close()


def measure(n: int, rounds: int) -> tuple[list[list[object]], list[object]]:
    from starlette.testclient import TestClient

    from sealog.server.app import create_app
    from sealog.server.keys import KeyStore

    path = cached(n)
    rows: list[list[object]] = []
    with temp_dir() as tmp:
        copy = tmp / "audit.db"  # the folds write: keep the cache pristine for the next run
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        source.backup(target)
        source.close()  # closed, not just committed (``with`` does not close): a connection left open
        target.close()  # on the copy can hold the lock the fold below waits for
        log = AuditLog(f"sqlite:///{copy}", spool_dir=tmp / "spool", writer="thread")
        settled(copy)
        keys = KeyStore(log.url)
        keys.migrate()
        store = log._reader()
        assert isinstance(store, SQLiteStore)
        started = time.perf_counter()
        fold(store._conn(), "acme")
        first_fold = time.perf_counter() - started
        with TestClient(create_app(log, keys)) as client:
            assert client.post("/signin", data={"api_key": keys.create("acme")[1]}).status_code == 200
            samples: dict[tuple[str, str], list[float]] = {}
            matched: dict[str, int] = {}
            for round_no in range(rounds + 1):
                for name, q in FILTERS.items():
                    for what, call in (
                        ("page", lambda q=q: client.get("/events", params=q).raise_for_status()),
                        ("summary", lambda q=q: summarize(store, make_query("acme", **q))),
                        ("list", lambda q=q: log.query("acme", limit=50, **q)),
                    ):
                        started = time.perf_counter()
                        result = call()
                        elapsed = (time.perf_counter() - started) * 1000
                        if what == "summary":
                            matched[name] = result.total  # type: ignore[union-attr]
                        if round_no:  # the first round warms the page cache
                            samples.setdefault((name, what), []).append(elapsed)
            for name in FILTERS:
                page, summary, listing = (samples[(name, w)] for w in ("page", "summary", "list"))
                rows.append([f"{n:,}", name, matched[name], median(page), quantile(page, 0.95), median(summary),
                             quantile(summary, 0.95), median(listing)])
        store.write(list(events(1000, datetime.now(UTC) - timedelta(minutes=5), 300, random.Random(n))))
        started = time.perf_counter()
        assert fold(store._conn(), "acme") == 1000
        incremental = (time.perf_counter() - started) * 1000
        log.close()
    return rows, [f"{n:,}", first_fold, incremental]


def main() -> int:
    args = parser(__doc__).parse_args()
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    rounds = 5 if args.quick else 30
    header("viewer list page: chart and facets", args.quick, sizes=sizes, rounds=rounds, cache=CACHE)
    results = [measure(n, rounds) for n in sizes]
    rows = [row for found, _ in results for row in found]
    table(("events", "filter", "matched", "page p50 ms", "page p95 ms", "summary p50 ms", "summary p95 ms",
           "list p50 ms"), rows)
    table(("events", "first fold s", "fold of 1,000 new ms"), [folds for _, folds in results])
    largest = f"{sizes[-1]:,}"
    bars = [Bar(f"summary p50 ms at {largest}, {row[1]}", float(row[5]), 100.0, 50.0, False)  # type: ignore[arg-type]
            for row in rows if row[0] == largest and row[1] in BARRED]
    return verdict(bars, args.check)


if __name__ == "__main__":
    sys.exit(main())
