"""Peak memory while 1,000,000 events are emitted with the store unreachable.

Each figure comes from a child process of its own, so nothing of the parent or of an
earlier run is counted. Children, run in this order in the same run:

- baseline: ``import sealog``, nothing else (the brief's bare process);
- an AuditLog created against the unreachable store, nothing emitted;
- the same after 100,000 events, and after 1,000,000 events.

The store is unreachable because its parent directory does not exist (permissions would
not stop root), so SQLiteStore.migrate raises StoreUnavailable and the writer retries;
the child reports the retries it counted. The spool gets a directory of its own,
since the default (beside the database) would create the missing parent.
Figures: peak RSS (VmHWM) of each child, its RSS every tenth of the way, and the spool
size on disk; also the peak RSS of the sealog writer process the AuditLog starts (the
default writer), which holds no backlog either. Bar: peak RSS growth over the baseline <= 64 MiB; goal <= 16 MiB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Bar, dir_bytes, event_kwargs, header, parser, table, temp_dir, unreachable_url, verdict

MIB = 1024 * 1024


def memory() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in bytes."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def worker_memory() -> int:
    """Peak RSS summed over this process's children (the sealog writer process, if any)."""
    total = 0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total


def child(mode: str, n: int, directory: Path) -> dict[str, Any]:
    """Runs in the child process: the measurement itself."""
    import sealog

    result: dict[str, Any] = {"mode": mode, "events": n, "samples": []}
    if mode == "import":
        result["sealog"] = sealog.__name__
        return {**result, **memory()}
    log = sealog.AuditLog(unreachable_url(directory), spool_dir=directory / "spool")
    emit = log.emit
    step = max(1, n // 10)
    started = time.perf_counter()
    for i in range(n):
        emit(**event_kwargs(i))
        if (i + 1) % step == 0:
            result["samples"].append((i + 1, memory()["VmRSS"], log.stats()["spool_bytes"]))
    result["emit_seconds"] = time.perf_counter() - started
    if n:
        time.sleep(0.2)  # let the writer's periodic work (if any) run once more
    result.update(memory())
    result["worker"] = worker_memory()
    result["stats"] = log.stats()
    log.close(timeout=0.5)  # the writer cannot deliver: the events stay in the spool
    return result


def run_child(mode: str, n: int, directory: Path) -> dict[str, Any]:
    directory.mkdir()
    command = [sys.executable, __file__, "--child", mode, "-n", str(n), "--dir", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} {n} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["stderr"] = done.stderr.strip()
    result["disk"] = dir_bytes(directory / "spool") if (directory / "spool").exists() else 0
    return result


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("-n", type=int, help="events in the big run (default 1,000,000; quick 20,000)")
    cli.add_argument("--child", choices=("import", "emit"), help=argparse_hidden())
    cli.add_argument("--dir", type=Path, help=argparse_hidden())
    args = cli.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n or 0, args.dir)))
        return 0

    n = args.n or (20_000 if args.quick else 1_000_000)
    header("spool memory: peak RSS while the store is unreachable", args.quick, events=n)
    runs = []
    with temp_dir() as tmp:
        for number, (mode, events) in enumerate((("import", 0), ("emit", 0), ("emit", n // 10), ("emit", n))):
            runs.append(run_child(mode, events, tmp / f"run{number}"))
    base = runs[0]["VmHWM"]
    labels = ["bare: import sealog", "AuditLog, 0 events", f"AuditLog, {n // 10:,} events",
              f"AuditLog, {n:,} events"]
    table(
        ("child process", "peak RSS MiB", "RSS MiB", "growth over bare MiB", "ratio to bare",
         "writer process MiB", "spool on disk MB", "retries", "emit events/s"),
        [(label, r["VmHWM"] / MIB, r["VmRSS"] / MIB, (r["VmHWM"] - base) / MIB, r["VmHWM"] / base,
          r["worker"] / MIB if "worker" in r else "-",
          r["disk"] / 1e6, r.get("stats", {}).get("retries", "-"),
          r["events"] / r["emit_seconds"] if r["events"] else "-")
         for label, r in zip(labels, runs, strict=True)],
    )
    big = runs[-1]
    table(("events emitted", "RSS MiB", "spool backlog MB"),
          [(count, rss / MIB, spool / 1e6) for count, rss, spool in big["samples"]])
    mid = runs[-2]
    per_event = (big["VmHWM"] - mid["VmHWM"]) / max(1, big["events"] - mid["events"])
    stats = big["stats"]
    print(f"slope between the last two runs: {per_event:,.1f} bytes of peak RSS per undelivered event")
    print(f"writer in the big run: {stats['retries']} retries, {stats['stored']} stored, "
          f"backlog {stats['backlog']:,}, last error: {stats['last_error']}")
    if big["stderr"]:
        print(f"its log: {big['stderr'].splitlines()[0]}")
    print()
    problems = []
    if stats["retries"] == 0:
        problems.append("the writer never retried: the store was not unreachable")
    if stats["backlog"] != n:
        problems.append(f"backlog {stats['backlog']} != {n} emitted")
    for problem in problems:
        print(f"warning: {problem}")
    code = verdict([Bar("peak RSS growth MiB", (big["VmHWM"] - base) / MIB, 64, 16, False)], args.check)
    return 1 if problems and args.check else code


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
