"""Sustained throughput from emit() to stored, sealed rows in SQLite, against raw executemany.

Each round emits N events through AuditLog (writer storing into SQLite) and calls
flush(); the figure is N / (time from the first emit to flush returning). Right after
it, the baseline inserts the very same rows (read back from that round's database)
with plain ``sqlite3.executemany`` into a fresh file made by sealog's own migration
(``SQLiteStore(url).migrate()``: same schema, indexes and triggers), with the same
PRAGMAs (WAL, synchronous=FULL), one ``BEGIN IMMEDIATE ... COMMIT`` per batch, in
batches of the sizes the writer actually used. A second baseline uses full batches
of the writer's maximum size, and SQLiteStore.write alone (sealing and inserting the
same events, no spool, writer thread or emit) shows what the store's own work costs.
The issue's baseline ("the hand-written one") is what a team would write without sealog:
the same rows into a table with only a primary key (event_id) and a unique
``(tenant_id, seq)`` index, WAL, 1,000 rows a transaction.
Rounds alternate sealog and the baselines.
Bar: sealog >= 0.6 of the hand-written baseline (issue 13); goal >= 0.8.
"""

from __future__ import annotations

import cProfile
import pstats
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from common import Bar, event_kwargs, header, median, parser, sqlite_url, table, temp_dir, verdict
from sealog import AuditLog
from sealog._event import FIELDS, JSON_FIELDS, SEAL_FIELDS, Event
from sealog._writer import MAX_BATCH
from sealog.stores.sqlite import SQLiteStore

_COLUMNS = ", ".join(f'"{name}"' for name in FIELDS)
PROCESS = "sealog emit -> flush() returned (default writer=process)"
THREAD = "sealog emit -> flush() returned, writer=thread"
ALONE = "SQLiteStore.write alone (seal + insert), same batches"
SAME = "executemany, the writer's batches, sealog's schema"
BARE = "  the same without its seven search indexes"
SEARCH_INDEXES = ("events_tenant_time", "events_tenant_action", "events_tenant_actor", "events_request",
                  "events_correlation", "events_tenant_target", "events_tenant_outcome")
"""What the queries use; the write path reads only the key (tenant_id, seq) and (tenant_id, event_id)."""
HAND = "hand-written: executemany, PK + (tenant_id, seq) only, 1,000 a transaction (the baseline)"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"


@dataclass
class SealogRun:
    seconds: float
    emit_seconds: float
    batches: list[int]
    rows: list[tuple[Any, ...]]


def recording(write: Callable[[list[bytes]], Any], sizes: list[int]) -> Callable[[list[bytes]], Any]:
    """Wrap the writer's sink to note each batch size (one list append per batch)."""

    def wrapped(lines: list[bytes]) -> Any:
        sizes.append(len(lines))
        return write(lines)

    return wrapped


def run_sealog(directory: Path, calls: list[dict[str, Any]], mode: str, profile: bool = False) -> SealogRun:
    path = directory / f"sealog-{mode}.db"
    log = AuditLog(sqlite_url(path), spool_dir=directory / f"spool-{mode}", writer=mode)  # type: ignore[arg-type]
    sizes: list[int] = []
    # Reaching inside on purpose: the batch sizes the writer used, for the baseline.
    sink = log._writer.sink
    sink.write_lines = recording(sink.write_lines, sizes)  # type: ignore[method-assign]
    try:
        if not log.flush(60):  # the migration is done before the clock starts
            raise RuntimeError("the store did not come up")
        sizes.clear()
        writer_profile = profile_writer(log) if profile else None
        emit = log.emit
        started = time.perf_counter()
        for kw in calls:
            emit(**kw)
        emitted = time.perf_counter()
        if not log.flush(timeout=600):
            raise RuntimeError(f"flush timed out: {log.stats()}")
        seconds = time.perf_counter() - started
        if writer_profile is not None:
            print(f"cProfile of the writer thread (writer={mode}), by own time:")
            pstats.Stats(writer_profile).sort_stats("tottime").print_stats(15)
        stored = log.stats()["stored"]
        if stored != len(calls):
            raise RuntimeError(f"stored {stored} of {len(calls)} events")
    finally:
        log.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY occurred_at, event_id").fetchall()
    conn.close()
    return SealogRun(seconds, emitted - started, sizes, rows)


def profile_writer(log: AuditLog) -> cProfile.Profile:
    """Profile what the writer thread does per batch (a diagnostic that reaches inside)."""
    profiler = cProfile.Profile()
    writer = log._writer
    deliver = writer._deliver_batch

    def profiled() -> bool:
        profiler.enable()
        try:
            return deliver()
        finally:
            profiler.disable()

    writer._deliver_batch = profiled  # type: ignore[method-assign]
    return profiler


def run_baseline(path: Path, rows: list[tuple[Any, ...]], batches: Sequence[int], *, search: bool = True) -> float:
    """Seconds to insert ``rows`` in ``batches`` with bare executemany, one transaction each."""
    store = SQLiteStore(sqlite_url(path))
    store.migrate()
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for name in () if search else SEARCH_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    try:
        return run_batches(conn, rows, batches)
    finally:
        conn.close()


def run_hand_written(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Seconds for the issue's baseline: a bare table, a primary key and one unique index, 1,000 a transaction."""
    columns = ", ".join(f'"{name}"' + (" TEXT PRIMARY KEY" if name == "event_id" else "") for name in FIELDS)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"CREATE TABLE events ({columns})")
    conn.execute("CREATE UNIQUE INDEX events_tenant_seq ON events (tenant_id, seq)")
    try:
        return run_batches(conn, rows, full_batches(len(rows), 1_000))
    finally:
        conn.close()


def run_batches(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], batches: Sequence[int]) -> float:
    started = time.perf_counter()
    at = 0
    for size in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, rows[at : at + size])
        conn.execute("COMMIT")
        at += size
    seconds = time.perf_counter() - started
    if at != len(rows):
        raise RuntimeError(f"baseline inserted {at} of {len(rows)} rows")
    return seconds


def run_store_write(path: Path, events: list[Event], batches: Sequence[int]) -> float:
    """Seconds for SQLiteStore.write alone (sealing + insert), no spool, writer or emit."""
    store = SQLiteStore(sqlite_url(path))
    store.migrate()
    try:
        started = time.perf_counter()
        at = 0
        for size in batches:
            store.write(events[at : at + size])
            at += size
        return time.perf_counter() - started
    finally:
        store.close()


def unsealed(rows: list[tuple[Any, ...]]) -> list[Event]:
    """Events as emit made them, from stored rows (seal fields dropped, JSON decoded)."""
    events = []
    for row in rows:
        values = dict(zip(FIELDS, row, strict=True))
        for name in SEAL_FIELDS:
            values[name] = None
        for name in JSON_FIELDS:
            values[name] = msgspec.json.decode(values[name])
        events.append(Event(**{k: v for k, v in values.items() if v is not None}))
    return events


def full_batches(n: int, size: int) -> list[int]:
    return [min(size, n - at) for at in range(0, n, size)]


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("-n", type=int, help="events per round (default 100,000; quick 5,000)")
    cli.add_argument("--rounds", type=int, help="alternating rounds (default 3; quick 1)")
    cli.add_argument("--profile", action="store_true",
                     help="profile the writer thread and SQLiteStore.write in an extra round")
    args = cli.parse_args()
    n = args.n or (5_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    header("throughput: emit -> sealed rows in SQLite vs raw executemany", args.quick,
           events=n, rounds=rounds, writer_max_batch=MAX_BATCH)
    calls = [event_kwargs(i) for i in range(n)]
    rates: dict[str, list[float]] = {}
    batch_means: list[float] = []
    for round_no in range(rounds):
        with temp_dir() as tmp:
            modes = ("process", "thread") if round_no % 2 == 0 else ("thread", "process")
            runs = {mode: run_sealog(tmp, calls, mode) for mode in modes}
            run = runs["process"]
            timings = {
                PROCESS: run.seconds,
                "  emit loop alone (caller side, writer=process)": run.emit_seconds,
                THREAD: runs["thread"].seconds,
                ALONE: run_store_write(tmp / "write.db", unsealed(run.rows), run.batches),
                SAME: run_baseline(tmp / "same.db", run.rows, run.batches),
                BARE: run_baseline(tmp / "bare.db", run.rows, run.batches, search=False),
                HAND: run_hand_written(tmp / "hand.db", run.rows),
                f"executemany, batches of {MAX_BATCH}": run_baseline(
                    tmp / "full.db", run.rows, full_batches(n, MAX_BATCH)),
            }
        batch_means.append(n / len(run.batches))
        for name, seconds in timings.items():
            rates.setdefault(name, []).append(n / seconds)
        print(f"round {round_no + 1} ({' then '.join(modes)} first): writer=process {n / timings[PROCESS]:,.0f}/s, "
              f"writer=thread {n / timings[THREAD]:,.0f}/s, hand-written {n / timings[HAND]:,.0f}/s, "
              f"{len(run.batches)} batches")
    print()
    figure = median(rates[PROCESS])
    baseline = median(rates[HAND])
    print(f"writer batches (process mode): mean {median(batch_means):,.0f} events per transaction\n")
    table(("path (median of rounds)", "events/s", "ratio to the hand-written baseline"),
          [(name, median(r), median(r) / baseline) for name, r in rates.items()])
    if args.profile:
        profile_round(calls)
    return verdict([Bar("sealog/hand-written executemany", figure / baseline, 0.6, 0.8, True)],
                   args.check)


def profile_round(calls: list[dict[str, Any]]) -> None:
    with temp_dir() as tmp:
        run = run_sealog(tmp, calls, "process", profile=True)
        events = unsealed(run.rows)
        store = SQLiteStore(sqlite_url(tmp / "profiled.db"))
        store.migrate()
        profiler = cProfile.Profile()
        profiler.enable()
        for at in range(0, len(events), MAX_BATCH):
            store.write(events[at : at + MAX_BATCH])
        profiler.disable()
        store.close()
    print("cProfile of SQLiteStore.write (what the writer process does), by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    sys.exit(main())
