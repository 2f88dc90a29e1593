"""Verification speed (events/s) of a SQLite store, against a bare SHA-256 chain over the same bytes.

The store (default 200,000 events across four tenants) is built with SQLiteStore.write
in large batches. Each round then times, alternating:

- ``store.verify()``: the figure, every chain re-hashed from the database;
- reading the same columns in the same order, doing nothing with them (SQLite's share);
- reading plus ``canonical_row`` per row, no hashing (the encoding's share);
- the baseline: a bare loop of ``sha256(prev + canonical)`` over the canonical bytes
  read back beforehand and held in memory (the least any verifier must do).

Bar: verify >= 100,000 events/s.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from uuid_utils import uuid7

from common import TENANTS, Bar, event_kwargs, header, median, parser, sqlite_url, table, temp_dir, verdict
from sealog import _timefmt as timefmt
from sealog._canonical import SORTED_FIELDS, canonical_row
from sealog._event import Event
from sealog.stores.sqlite import SQLiteStore

BUILD_BATCH = 5_000
_COLUMNS = ", ".join(f'"{name}"' for name in SORTED_FIELDS)
_SELECT = f"SELECT {_COLUMNS}, seq, prev_hash, hash FROM events WHERE tenant_id = ? ORDER BY seq"


def make_event(i: int) -> Event:
    kw = event_kwargs(i)
    return Event(
        event_id=str(uuid7()), tenant_id=kw["tenant_id"], action=kw["action"],
        occurred_at=timefmt.now(), actor_type=kw["actor"][0], actor_id=kw["actor"][1],
        target_type=kw["target"][0], target_id=kw["target"][1], metadata=kw["metadata"],
        ip_address="203.0.113.5" if i % 3 == 0 else None,
        latency_ms=12.5 + i % 100 if kw["action"] == "tool.call" else None,
    )


def build(store: SQLiteStore, n: int) -> float:
    store.migrate()
    started = time.perf_counter()
    for start in range(0, n, BUILD_BATCH):
        store.write([make_event(i) for i in range(start, min(n, start + BUILD_BATCH))])
    return time.perf_counter() - started


def read_only(path: Path) -> int:
    count = 0
    with sqlite3.connect(path) as conn:
        for tenant in TENANTS:
            for _ in conn.execute(_SELECT, (tenant,)):
                count += 1
    conn.close()
    return count


def read_and_encode(path: Path) -> int:
    n = len(SORTED_FIELDS)
    count = 0
    with sqlite3.connect(path) as conn:
        for tenant in TENANTS:
            for row in conn.execute(_SELECT, (tenant,)):
                canonical_row(row[:n])
                count += 1
    conn.close()
    return count


def canonical_bytes(path: Path) -> list[list[bytes]]:
    """Each tenant's canonical event bytes in seq order, read back once (untimed)."""
    n = len(SORTED_FIELDS)
    with sqlite3.connect(path) as conn:
        chains = [[canonical_row(row[:n]) for row in conn.execute(_SELECT, (tenant,))] for tenant in TENANTS]
    conn.close()
    return chains


def bare_chain(chains: list[list[bytes]]) -> int:
    sha256 = hashlib.sha256
    count = 0
    for chain in chains:
        prev = bytes(32)
        for canonical in chain:
            prev = sha256(prev + canonical).digest()
        count += len(chain)
    return count


def timed(work: Callable[[], int], expected: int) -> float:
    started = time.perf_counter()
    count = work()
    seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"{work} saw {count} events, expected {expected}")
    return expected / seconds


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("-n", type=int, help="events in the store (default 200,000; quick 20,000)")
    cli.add_argument("--rounds", type=int, help="alternating rounds (default 3; quick 1)")
    args = cli.parse_args()
    n = args.n or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    header("verify speed vs a bare sha256 chain", args.quick, events=n, tenants=len(TENANTS), rounds=rounds)
    with temp_dir() as tmp:
        path = tmp / "verify.db"
        store = SQLiteStore(sqlite_url(path))
        try:
            build_seconds = build(store, n)
            print(f"built {n:,} events with SQLiteStore.write in batches of {BUILD_BATCH:,}: "
                  f"{build_seconds:.1f}s ({n / build_seconds:,.0f} events/s)\n")
            chains = canonical_bytes(path)

            def verify() -> int:
                report = store.verify()
                if not report.ok:
                    raise RuntimeError(f"verify found problems in an untouched store: {report.problems[:3]}")
                return report.checked

            contenders: dict[str, Callable[[], int]] = {
                "store.verify()": verify,
                "read the columns only": lambda: read_only(path),
                "read + canonical_row, no hash": lambda: read_and_encode(path),
                "bare sha256 chain, bytes in memory": lambda: bare_chain(chains),
            }
            rates: dict[str, list[float]] = {name: [] for name in contenders}
            order = list(contenders)
            for _ in range(rounds):
                for name in order:
                    rates[name].append(timed(contenders[name], n))
                order = order[1:] + order[:1]
        finally:
            store.close()

    figure = median(rates["store.verify()"])
    table(
        ("step (median of rounds)", "events/s", "us/event", "verify/this"),
        [(name, median(r), 1e6 / median(r), figure / median(r)) for name, r in rates.items()],
    )
    return verdict([Bar("verify events/s", figure, 100_000, None, True)], args.check)


if __name__ == "__main__":
    sys.exit(main())
