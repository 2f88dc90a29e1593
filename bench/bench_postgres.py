"""PostgreSQL: sealed throughput against bare COPY and naive INSERTs; query latency at 1M rows.

One server (Debian's PostgreSQL, fsync on, loopback), one run:
(a) N events emitted through AuditLog and flushed (sealed, COPY, idempotent) against the
    hand-written way of issue 13: psycopg COPY of the very same rows, 5,000 a transaction, into
    a table of the same columns with only a primary key (event_id) and a unique
    (tenant_id, seq) index: bar >= 0.5, goal >= 0.8. COPY into sealog's own schema (all its
    indexes and triggers) is printed beside it, to show what the indexes cost;
(b) sealog against the naive way, one autocommit INSERT per event: bar >= 10x, goal >= 15x;
(c) median latency of one tenant's events of one action over the last day, 100 newest,
    through PostgresStore.query, in a table of 1,000,000 events across 20 tenants: bar <= 20 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from msgspec.structs import astuple
from psycopg import sql

from common import (
    Bar,
    Match,
    cpu_per_event,
    cpu_seconds,
    event_kwargs,
    header,
    parent_pid,
    parser,
    table,
    temp_dir,
    verdict,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.pgserver import PgServer, remove_server, start_server

from sealog import AuditLog
from sealog._chain import SCALAR_FIELDS, seal
from sealog._event import FIELDS, Event
from sealog._writer import MAX_BATCH
from sealog.stores.base import Query
from sealog.stores.postgres import PostgresStore

BATCH = MAX_BATCH  # the baseline copies in the batch size the writer uses


def sealed_rows(events: list[Event]) -> list[tuple[Any, ...]]:
    now = "2026-01-01T00:00:00.000000Z"
    return [(*astuple(s.event)[: len(SCALAR_FIELDS)], *(raw.decode() for raw in s.json.values()),
             s.seq, s.prev_hash, s.hash, now) for s in seal(events, {})]


def fresh_db(server: PgServer, name: str) -> str:
    url = server.create_database(name)
    PostgresStore(url).migrate()
    return url


SEARCH_INDEXES = ("sealog_events_tenant_time", "sealog_events_tenant_action", "sealog_events_tenant_actor",
                  "sealog_events_request", "sealog_events_correlation", "sealog_events_tenant_target",
                  "sealog_events_tenant_outcome", "sealog_events_tenant_event")
"""What the queries use; the write path reads only (tenant_id, seq) and sealog_event_ids."""
PROCESSES = ("emitting process", "writer process", "PostgreSQL backend", "PostgreSQL other (WAL writer, ...)")


def process_groups(database: str) -> dict[str, Match]:
    me = str(os.getpid())
    return {
        PROCESSES[0]: lambda pid, _cmd: str(pid) == me,
        PROCESSES[1]: lambda pid, cmd: "sealog._worker" in cmd and parent_pid(pid) == me,
        PROCESSES[2]: lambda _pid, cmd: cmd.startswith("postgres:") and f" {database} " in cmd,
        PROCESSES[3]: lambda _pid, cmd: cmd.startswith("postgres:"),
    }


def run_sealog(url: str, spool: Path, n: int) -> tuple[float, list[Event], dict[str, float]]:
    groups = process_groups(url.rsplit("/", 1)[1])
    with AuditLog(url, spool_dir=spool) as log:
        assert log.flush(60)  # writer process started and migrated before the clock runs
        before = cpu_seconds(groups)
        started = time.perf_counter()
        for i in range(n):
            log.emit(**event_kwargs(i))
        assert log.flush(600)
        elapsed = time.perf_counter() - started
        cpu = cpu_per_event(before, cpu_seconds(groups), n)
        events = [e for t in ("acme", "globex", "initech", "umbrella") for e in log.iter_events(t)]
    return n / elapsed, events, cpu


def without_search_indexes(url: str) -> str:
    with psycopg.connect(url) as conn:
        for name in SEARCH_INDEXES:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return url


def hand_written_db(server: PgServer, name: str) -> str:
    """The issue's baseline table: sealog's columns, a primary key and one unique index, nothing else."""
    url = fresh_db(server, name)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE hand_events (LIKE sealog_events)")
        conn.execute("ALTER TABLE hand_events ADD PRIMARY KEY (event_id)")
        conn.execute("CREATE UNIQUE INDEX hand_tenant_seq ON hand_events (tenant_id, seq)")
    return url


def run_copy(url: str, rows: list[tuple[Any, ...]], table: str = "sealog_events",
             cpu: dict[str, float] | None = None) -> float:
    columns = sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS)
    groups = process_groups(url.rsplit("/", 1)[1])
    with psycopg.connect(url) as conn:
        before = cpu_seconds(groups)
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            with conn.transaction(), conn.cursor() as cur, \
                    cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)) as copy:
                for row in rows[start:start + BATCH]:
                    copy.write_row(row)
        rate = len(rows) / (time.perf_counter() - started)
        if cpu is not None:
            cpu.update(cpu_per_event(before, cpu_seconds(groups), len(rows)))
        return rate


def run_naive(url: str, rows: list[tuple[Any, ...]]) -> float:
    insert = sql.SQL("INSERT INTO sealog_events ({}) VALUES ({})").format(
        sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS), sql.SQL(", ").join(sql.Placeholder() * len(FIELDS)))
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for row in rows:
            conn.execute(insert, row)
        return len(rows) / (time.perf_counter() - started)


def big_table_rows(total: int, tenants: int) -> Iterator[list[tuple[Any, ...]]]:
    """Realistic sealed rows spread over the last 30 days, in chunks."""
    now = datetime.now(UTC)
    heads: dict[str, tuple[int, str]] = {}
    for start in range(0, total, 20_000):
        chunk = []
        for i in range(start, min(total, start + 20_000)):
            when = now - timedelta(seconds=(total - i) * 30 * 86400 / total)
            chunk.append(Event(event_id=f"b-{i}", tenant_id=f"tenant-{i % tenants}",
                               action=("auth.login", "data.export", "content.publish", "tool.call")[(i // tenants) % 4],
                               occurred_at=when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), actor_type="user",
                               actor_id=f"u-{i % 500}", metadata={"i": i, "method": "sso"}))
        recorded = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        yield [(*astuple(s.event)[: len(SCALAR_FIELDS)], *(raw.decode() for raw in s.json.values()),
                s.seq, s.prev_hash, s.hash, recorded) for s in seal(chunk, heads)]


def query_latency(server: PgServer, total: int, samples: int) -> float:
    url = fresh_db(server, "big")
    columns = sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS)
    with psycopg.connect(url) as conn:
        for chunk in big_table_rows(total, 20):
            with conn.transaction(), conn.cursor() as cur, \
                    cur.copy(sql.SQL("COPY sealog_events ({}) FROM STDIN").format(columns)) as copy:
                for row in chunk:
                    copy.write_row(row)
        conn.execute("ANALYZE sealog_events")
        conn.commit()
    store = PostgresStore(url)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    timings = []
    try:
        for i in range(samples + 5):
            started = time.perf_counter()
            page = store.query(Query(tenant_id=f"tenant-{i % 20}", action="data.export", since=since, limit=100))
            if i >= 5:
                timings.append((time.perf_counter() - started) * 1000)
            assert page.events
    finally:
        store.close()
    return statistics.median(timings)


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("-n", type=int, help="events per round (default 50,000; quick 5,000)")
    cli.add_argument("--big", type=int, help="rows of the query-latency table (default 1,000,000; quick 50,000)")
    args = cli.parse_args()
    n = args.n or (5_000 if args.quick else 50_000)
    naive_n = 1_000 if args.quick else 5_000
    big = args.big or (50_000 if args.quick else 1_000_000)
    header("PostgreSQL store", args.quick, events=n, naive_events=naive_n, query_table=big, batch=BATCH)
    server = start_server(fsync=True)
    try:
        with temp_dir() as tmp:
            sealog_rates, copy_rates, schema_rates, bare_rates = [], [], [], []
            sealog_cpu: list[dict[str, float]] = []
            hand_cpu: list[dict[str, float]] = []
            rows: list[tuple[Any, ...]] = []
            for round_no in range(3):
                rate, events, cpu = run_sealog(fresh_db(server, f"s{round_no}"), tmp / f"spool{round_no}", n)
                sealog_rates.append(rate)
                sealog_cpu.append(cpu)
                rows = sealed_rows(events)
                hand_cpu.append({})
                copy_rates.append(run_copy(hand_written_db(server, f"h{round_no}"), rows, "hand_events", hand_cpu[-1]))
                schema_rates.append(run_copy(fresh_db(server, f"c{round_no}"), rows))
                bare_rates.append(run_copy(without_search_indexes(fresh_db(server, f"b{round_no}")), rows))
            naive = run_naive(fresh_db(server, "naive"), rows[:naive_n])
        latency = query_latency(server, big, 50)
    finally:
        remove_server(server)
    # Each round runs sealog and COPY back to back, so the machine's noise hits both: the
    # figure is the median of the per-round ratios.
    ratios = [a / b for a, b in zip(sealog_rates, copy_rates, strict=True)]
    table(("round", "sealog events/s", "hand-written COPY events/s", "ratio"),
          [(i + 1, a, b, r) for i, (a, b, r) in enumerate(zip(sealog_rates, copy_rates, ratios, strict=True))])
    sealog_rate = statistics.median(sealog_rates)
    table(("path", "events/s"), [("sealog emit -> sealed rows (median of 3)", sealog_rate),
                                 ("hand-written COPY: PK + (tenant_id, seq) only (median of 3)",
                                  statistics.median(copy_rates)),
                                 ("COPY into sealog's schema, no sealing (median of 3)", statistics.median(schema_rates)),
                                 ("  the same without its eight search indexes (median of 3)",
                                  statistics.median(bare_rates)),
                                 ("one INSERT per event, autocommit", naive)])
    hand = statistics.median(copy_rates)
    rows_cpu = [(name, statistics.median(c[name] for c in sealog_cpu),
                 statistics.median(c[name] for c in hand_cpu) if name != PROCESSES[1] else "-") for name in PROCESSES]
    total = sum(statistics.median(c[name] for c in sealog_cpu) for name in PROCESSES)
    rows_cpu.append(("total", total, sum(statistics.median(c[name] for c in hand_cpu) for name in PROCESSES)))
    table(("process", "sealog CPU µs/event", "hand-written COPY CPU µs/event"), rows_cpu)
    print(f"CPU budget at the bar (0.5 x {hand:,.0f}/s on {os.cpu_count()} cores): "
          f"{(os.cpu_count() or 1) / (0.5 * hand) * 1e6:.0f} µs/event; sealog's total above: {total:.0f} µs/event")
    table(("query", "median ms"), [(f"one tenant, one action, last day, of {big:,} events", latency)])
    return verdict([
        Bar("sealog / hand-written COPY (median of rounds)", statistics.median(ratios), 0.5, 0.8, True),
        Bar("sealog / naive INSERT", sealog_rate / naive, 10, 15, True),
        Bar("query median ms", latency, 20, None, False),
    ], args.check)


if __name__ == "__main__":
    sys.exit(main())
