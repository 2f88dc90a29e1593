"""What each of the SQLite store's search indexes costs an insert, against the issue's hand-written table.

The same sealed rows (made once through AuditLog) are inserted with bare ``executemany``,
1,000 a transaction, WAL, synchronous=FULL, into: the issue 13 hand-written table (only a
primary key on event_id and a unique (tenant_id, seq)); sealog's own events table with all
its indexes; the same with each search index left out in turn; and with none of them.
Variants alternate within each round. The figure is CPU seconds of this process (SQLite
inserts in the calling thread), which a shared machine blurs less than wall time; both are
printed, each as a ratio of the hand-written table's rate. No bar: this shows where an
insert's cost goes, for the storage decision issue 13's bars need.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from common import event_kwargs, header, median, parser, sqlite_url, table, temp_dir
from sealog import AuditLog
from sealog._event import FIELDS

_COLUMNS = ", ".join(f'"{name}"' for name in FIELDS)
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"
HAND = "hand-written: PK (event_id) + unique (tenant_id, seq)"
ALL = "sealog's schema, every index"


def sealed_rows(directory: Path, n: int) -> tuple[list[tuple[Any, ...]], str, dict[str, str]]:
    """Rows as sealog stores them, the events table's DDL and its index DDLs by name."""
    path = directory / "source.db"
    with AuditLog(sqlite_url(path), spool_dir=directory / "spool", writer="thread") as log:
        for i in range(n):
            log.emit(**event_kwargs(i))
        if not log.flush(600):
            raise RuntimeError(f"flush timed out: {log.stats()}")
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY occurred_at, event_id").fetchall()
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()[0]
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                    "AND tbl_name = 'events' AND sql IS NOT NULL").fetchall())
    conn.close()
    return rows, ddl, indexes


def variants(ddl: str, indexes: dict[str, str]) -> dict[str, list[str]]:
    hand = ", ".join(f'"{name}"' + (" TEXT PRIMARY KEY" if name == "event_id" else "") for name in FIELDS)
    found = {HAND: [f"CREATE TABLE events ({hand})", "CREATE UNIQUE INDEX hand_tenant_seq ON events (tenant_id, seq)"],
             ALL: [ddl, *indexes.values()]}
    for name in indexes:
        found[f"  without {name}"] = [ddl, *(sql for other, sql in indexes.items() if other != name)]
    found["sealog's table, no search index"] = [ddl]
    return found


def insert(path: Path, statements: list[str], rows: list[tuple[Any, ...]]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to insert ``rows``, 1,000 a transaction, with the store's PRAGMAs."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size = 16384")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA cache_size = -65536")
        for statement in statements:
            conn.execute(statement)
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, len(rows), 1_000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows[start : start + 1_000])
            conn.execute("COMMIT")
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        conn.close()


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("-n", type=int, help="events (default 50,000; quick 10,000)")
    cli.add_argument("--rounds", type=int, help="alternating rounds (default 3; quick 1)")
    args = cli.parse_args()
    n = args.n or (10_000 if args.quick else 50_000)
    rounds = args.rounds or (1 if args.quick else 3)
    header("SQLite: what each search index costs an insert", args.quick, events=n, rounds=rounds)
    with temp_dir() as tmp:
        rows, ddl, indexes = sealed_rows(tmp, n)
        schemas = variants(ddl, indexes)
        cpu: dict[str, list[float]] = {name: [] for name in schemas}
        wall: dict[str, list[float]] = {name: [] for name in schemas}
        for round_no in range(rounds):
            for i, (name, statements) in enumerate(schemas.items()):
                used, took = insert(tmp / f"r{round_no}-{i}.db", statements, rows)
                cpu[name].append(n / used)
                wall[name].append(n / took)
    hand_cpu, hand_wall = median(cpu[HAND]), median(wall[HAND])
    table(("schema (median of rounds)", "rows/CPU-s", "ratio (CPU)", "rows/s", "ratio (wall)"),
          [(name, median(cpu[name]), median(cpu[name]) / hand_cpu, median(wall[name]), median(wall[name]) / hand_wall)
           for name in schemas])
    return 0


if __name__ == "__main__":
    sys.exit(main())
