"""Verification speed: `sealog verify --full` against a bare ordered read of the same rows, and incremental verify.

Part 1 (default 100,000 events in four tenants, SQLite, built with SQLiteStore.write). Each round
times, alternating:

- ``sealog verify --full``, the command (run in-process, so interpreter start-up is not counted;
  its default ``--jobs``: one process per core for several tenants);
- the baseline: a bare ``SELECT`` of the same rows (every content column, seq, prev_hash, hash),
  in tenant and seq order, doing nothing with them (the least any verifier must read);
- ``store.verify()`` in one process (``jobs=1``), for reference.

Bar: the command's events/s >= 0.5x the bare read's (goal 0.8x).

Part 2 (default one tenant of 1,000,000 events; --quick 100,000): a full ``sealog verify`` (which
remembers the position), 1% new events written, then ``sealog verify`` (incremental). Bar: the
incremental run takes <= 5% of the full run's time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from uuid_utils import uuid7

from common import TENANTS, Bar, event_kwargs, header, median, parser, sqlite_url, table, temp_dir, verdict
from sealog import _timefmt as timefmt
from sealog._canonical import SORTED_FIELDS
from sealog._cli import main as cli_main
from sealog._event import Event
from sealog.stores.sqlite import SQLiteStore

BUILD_BATCH = 5_000
_COLUMNS = ", ".join(f'"{name}"' for name in SORTED_FIELDS)
_SELECT = f"SELECT {_COLUMNS}, seq, prev_hash, hash FROM events WHERE tenant_id = ? ORDER BY seq"


def make_event(i: int, tenant: str | None = None) -> Event:
    kw = event_kwargs(i)
    return Event(
        event_id=str(uuid7()), tenant_id=tenant or kw["tenant_id"], action=kw["action"],
        occurred_at=timefmt.now(), actor_type=kw["actor"][0], actor_id=kw["actor"][1],
        target_type=kw["target"][0], target_id=kw["target"][1], metadata=kw["metadata"],
        ip_address="203.0.113.5" if i % 3 == 0 else None,
        latency_ms=12.5 + i % 100 if kw["action"] == "tool.call" else None,
    )


def build(store: SQLiteStore, start: int, n: int, tenant: str | None = None) -> float:
    store.migrate()
    started = time.perf_counter()
    for first in range(start, start + n, BUILD_BATCH):
        store.write([make_event(i, tenant) for i in range(first, min(start + n, first + BUILD_BATCH))])
    return time.perf_counter() - started


def bare_read(path: Path) -> int:
    count = 0
    conn = sqlite3.connect(path)
    try:
        for tenant in TENANTS:
            for _ in conn.execute(_SELECT, (tenant,)):
                count += 1
    finally:
        conn.close()
    return count


def command(url: str, *args: str) -> str:
    """`sealog verify` in this process; its output, which must say ok."""
    result = CliRunner().invoke(cli_main, ["verify", "--url", url, *args], catch_exceptions=False)
    if result.exit_code != 0 or ": ok" not in result.stdout:
        raise RuntimeError(f"sealog verify {' '.join(args)} failed on an untouched store:\n{result.output}")
    return result.stdout


def events_in(output: str) -> int:
    return int(output.split(" events in ", 1)[0].rsplit(maxsplit=1)[-1])


def timed(work: Callable[[], int], expected: int) -> float:
    started = time.perf_counter()
    count = work()
    seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"{work} saw {count} events, expected {expected}")
    return expected / seconds


def full_vs_read(tmp: Path, n: int, rounds: int) -> dict[str, list[float]]:
    path = tmp / "verify.db"
    url = sqlite_url(path)
    store = SQLiteStore(url)
    try:
        seconds = build(store, 0, n)
        print(f"part 1: built {n:,} events in {len(TENANTS)} tenants with SQLiteStore.write: {seconds:.1f}s\n")

        def one_process() -> int:
            report = store.verify(jobs=1)
            if not report.ok:
                raise RuntimeError(f"verify found problems in an untouched store: {report.problems[:3]}")
            return report.checked

        contenders: dict[str, Callable[[], int]] = {
            "sealog verify --full (the command)": lambda: events_in(command(url, "--full")),
            "bare ordered SELECT of the same rows": lambda: bare_read(path),
            "store.verify(), one process": one_process,
        }
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        order = list(contenders)
        for _ in range(rounds):
            for name in order:
                rates[name].append(timed(contenders[name], n))
            order = order[1:] + order[:1]
    finally:
        store.close()
    return rates


def incremental(tmp: Path, n: int) -> tuple[float, float, int]:
    path = tmp / "incremental.db"
    url = sqlite_url(path)
    store = SQLiteStore(url)
    try:
        seconds = build(store, 0, n, "big")
        print(f"part 2: built {n:,} events in one tenant: {seconds:.1f}s")
        started = time.perf_counter()
        full = command(url, "--full")
        full_seconds = time.perf_counter() - started
        added = n // 100
        build(store, n, added, "big")
        started = time.perf_counter()
        again = command(url)
        incremental_seconds = time.perf_counter() - started
    finally:
        store.close()
    if events_in(full) != n or events_in(again) != added:
        raise RuntimeError(f"unexpected counts: {full!r} then {again!r}")
    print(f"  full:        {full.strip()}\n  incremental: {again.strip()}\n")
    return full_seconds, incremental_seconds, added


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("-n", type=int, help="part 1: events in the store (default 100,000; quick 20,000)")
    cli.add_argument("--big", type=int, help="part 2: events in the big tenant (default 1,000,000; quick 100,000)")
    cli.add_argument("--rounds", type=int, help="part 1: alternating rounds (default 3; quick 1)")
    args = cli.parse_args()
    n = args.n or (20_000 if args.quick else 100_000)
    big = args.big or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    header("sealog verify vs a bare ordered read; incremental verify", args.quick, events=n,
           tenants=len(TENANTS), rounds=rounds, big_tenant=big)
    with temp_dir() as tmp:
        rates = full_vs_read(tmp, n, rounds)
        full_seconds, incremental_seconds, added = incremental(tmp, big)

    figure = median(rates["sealog verify --full (the command)"])
    baseline = median(rates["bare ordered SELECT of the same rows"])
    table(
        ("part 1 (median of rounds)", "events/s", "us/event", "x bare read"),
        [(name, median(r), 1e6 / median(r), median(r) / baseline) for name, r in rates.items()],
    )
    table(
        ("part 2", "seconds", "events", "x full"),
        [(f"sealog verify --full, {big:,} events", full_seconds, big, 1.0),
         (f"sealog verify after {added:,} new events", incremental_seconds, added,
          incremental_seconds / full_seconds)],
    )
    return verdict([
        Bar("verify --full / bare read", figure / baseline, 0.5, 0.8, True),
        Bar("incremental / full time", incremental_seconds / full_seconds, 0.05, None, False),
    ], args.check)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
