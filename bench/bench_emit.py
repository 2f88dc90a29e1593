"""emit() cost in the caller, against logging's non-blocking path (QueueHandler + QueueListener).

Three contenders, measured in alternating batches so machine noise hits all alike:

- sealog, store up: AuditLog on SQLite in a temp dir, storing through its default
  writer (the writer thread hands spool lines to a ``sealog._worker`` child process that
  seals and inserts); and the same with ``writer="thread"`` (sealing in this process);
- sealog, store down: AuditLog whose store's directory does not exist, so the writer
  keeps retrying and every event waits in the spool (where the spool matters);
- logging: ``logger.info`` with %-args through ``QueueHandler`` into a ``queue.Queue``,
  a ``QueueListener`` writing each record to a file.

Each timed batch is followed, untimed, by draining that contender's consumer (flush() or
queue.join()), so one side's background work does not land in the other's batches.
Figure: the median over batches of the mean ns per call. Bar: ratio <= 1.0, goal <= 0.5.

Instructions, which a shared machine does not blur: ``--loop store-down|logging --calls N``
makes N calls inside ``itertools.starmap`` and exits, for callgrind to count only that loop
in the calling thread (the QueueListener's and the writer's threads land in other files):

    valgrind --tool=callgrind --separate-threads=yes --toggle-collect=starmap_next \
        .venv/bin/python bench/bench_emit.py --loop store-down --calls 5000
    grep totals callgrind.out.<pid>-01    # divided by 5000: instructions per call
"""

from __future__ import annotations

import collections
import cProfile
import itertools
import logging
import logging.handlers
import pstats
import queue
import sys
from pathlib import Path
from typing import Any

from common import (
    Bar,
    Contender,
    event_kwargs,
    header,
    interleaved,
    median,
    parser,
    quantile,
    sqlite_url,
    table,
    temp_dir,
    unreachable_url,
    verdict,
)
from sealog import AuditLog

BATCH_SIZE = 200
FORMAT = "audit tenant=%s action=%s actor=user:%s target=document:%s metadata=%s"
Row = tuple[str, str, str, str, dict[str, Any]]
UP = "sealog emit, store up"
THREADED = "sealog emit, store up, writer=thread"


def sample_rows(n: int, *, ten_strings: bool = False) -> list[Row]:
    """Rows for both sides; ``ten_strings``: metadata of ten ordinary strings (what redaction scans)."""
    rows = []
    for i in range(n):
        kw = event_kwargs(i)
        meta = ({f"field_{k}": f"ordinary value {k} of row {i}, nothing to see here" for k in range(10)}
                if ten_strings else kw["metadata"])
        rows.append((kw["tenant_id"], kw["action"], kw["actor"][1], kw["target"][1], meta))
    return rows


def sealog_runner(log: AuditLog, rows: list[Row]) -> Any:
    def run(n: int) -> None:
        emit = log.emit
        for tenant, action, user, doc, meta in rows[:n]:
            emit(tenant_id=tenant, action=action, actor=("user", user), target=("document", doc),
                 metadata=meta)

    return run


def logging_runner(logger: logging.Logger, rows: list[Row]) -> Any:
    def run(n: int) -> None:
        info = logger.info
        for tenant, action, user, doc, meta in rows[:n]:
            info(FORMAT, tenant, action, user, doc, meta)

    return run


def std_logging(path: Path) -> tuple[logging.Logger, logging.handlers.QueueListener, queue.Queue[Any]]:
    """The standard library's non-blocking path: the caller only enqueues; a thread writes."""
    records: queue.Queue[Any] = queue.Queue()
    target = logging.FileHandler(path)
    target.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    listener = logging.handlers.QueueListener(records, target)
    logger = logging.getLogger("bench.audit")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.handlers.QueueHandler(records))
    return logger, listener, records


def profile_emit(log: AuditLog, rows: list[Row], calls: int) -> None:
    run = sealog_runner(log, rows)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls // len(rows)):
        run(len(rows))
    profiler.disable()
    log.flush(60)
    print(f"cProfile of {calls:,} emits (store up), caller thread, by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def loop(contender: str, calls: int) -> int:
    """``calls`` calls in one C-driven loop (``--loop``), after a warm-up, for callgrind."""
    rows = sample_rows(BATCH_SIZE)
    with temp_dir() as tmp:
        if contender == "logging":
            logger, listener, records = std_logging(tmp / "std.log")
            listener.start()
            info = logger.info
            args: list[tuple[Any, ...]] = [(FORMAT, t, a, u, d, m) for t, a, u, d, m in rows]

            def call(*fields: Any) -> None:  # one Python frame per call on both sides
                info(*fields)
        else:
            down = AuditLog(unreachable_url(tmp), spool_dir=tmp / "down.spool")
            emit = down.emit
            args = [(t, a, ("user", u), ("document", d), m) for t, a, u, d, m in rows]

            def call(*fields: Any) -> None:
                t, a, actor, target, m = fields
                emit(tenant_id=t, action=a, actor=actor, target=target, metadata=m)
        for fields in args:  # warm-up, outside starmap: not counted
            call(*fields)
        work = (args * (calls // len(args) + 1))[:calls]
        collections.deque(itertools.starmap(call, work), maxlen=0)
        if contender == "logging":
            records.join()
            listener.stop()
        else:
            down.close(timeout=0.5)
    return 0


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--loop", choices=("store-down", "logging"),
                     help="only make --calls calls of one contender, for callgrind (see the docstring)")
    cli.add_argument("--calls", type=int, default=5000, help="calls for --loop (default 5000)")
    cli.add_argument("--batches", type=int, help="timed batches per contender (default 600, quick 40)")
    cli.add_argument("--profile", action="store_true", help="also print a cProfile of emit")
    cli.add_argument("--ten-strings", action="store_true",
                     help="metadata of ten ordinary strings on both sides (the redaction scan's workload)")
    args = cli.parse_args()
    if args.loop:
        return loop(args.loop, args.calls)
    batches = args.batches or (40 if args.quick else 600)
    header("emit() cost in the caller vs logging.QueueHandler", args.quick,
           batches=batches, batch_size=BATCH_SIZE, calls_per_contender=batches * BATCH_SIZE)
    rows = sample_rows(BATCH_SIZE, ten_strings=args.ten_strings)
    with temp_dir() as tmp:
        up = AuditLog(sqlite_url(tmp / "audit.db"), spool_dir=tmp / "up.spool")
        threaded = AuditLog(sqlite_url(tmp / "threaded.db"), spool_dir=tmp / "threaded.spool",
                            writer="thread")
        down = AuditLog(unreachable_url(tmp), spool_dir=tmp / "down.spool")
        logger, listener, records = std_logging(tmp / "std.log")
        listener.start()
        try:
            if not (up.flush(30) and threaded.flush(30)):
                print("the store did not come up", file=sys.stderr)
                return 2
            contenders = [
                Contender(UP, sealog_runner(up, rows), lambda: up.flush(60)),
                Contender(THREADED, sealog_runner(threaded, rows), lambda: threaded.flush(60)),
                Contender("sealog emit, store down", sealog_runner(down, rows)),
                Contender("logging QueueHandler", logging_runner(logger, rows), records.join),
            ]
            samples = interleaved(contenders, batches=batches, batch_size=BATCH_SIZE)
            if args.profile:
                profile_emit(up, rows, 20_000)
            up_stats, threaded_stats, down_stats = up.stats(), threaded.stats(), down.stats()
        finally:
            listener.stop()
            up.close()
            threaded.close()
            down.close(timeout=0.5)

    base = median(samples["logging QueueHandler"])
    table(
        ("contender", "median ns/call", "p10", "p90", "calls/s", "ratio vs logging"),
        [(name, median(s), quantile(s, 0.1), quantile(s, 0.9), 1e9 / median(s), median(s) / base)
         for name, s in samples.items()],
    )
    table(
        ("AuditLog", "emitted", "stored", "backlog", "retries", "spool MB", "last_error"),
        [(name, s["emitted"], s["stored"], s["backlog"], s["retries"], s["spool_bytes"] / 1e6,
          str(s["last_error"])[:60])
         for name, s in (("store up", up_stats), ("store up, thread", threaded_stats),
                         ("store down", down_stats))],
    )
    if down_stats["retries"] == 0:
        print("warning: the unreachable store was never retried; the outage figure is suspect\n")
    return verdict(
        [Bar("emit/logging, store up", median(samples[UP]) / base, 1.0, 0.5, False),
         Bar("emit/logging, store down", median(samples["sealog emit, store down"]) / base, 1.0, 0.5, False)],
        args.check,
    )


if __name__ == "__main__":
    sys.exit(main())
