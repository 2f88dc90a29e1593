"""Shared helpers for the benches: arguments, timing, tables, bars, temp dirs, sample events.

Every bench runs its baseline beside the real thing in the same process and run
(alternating, so noise on this shared machine hits both alike) and prints the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TENANTS = ("acme", "globex", "initech", "umbrella")
ACTIONS = ("auth.login", "content.publish", "data.export", "settings.change", "tool.call")


# -- arguments and headers ---------------------------------------------------------------


def parser(description: str | None) -> argparse.ArgumentParser:
    """The flags every bench takes: ``--quick`` for a smoke run, ``--check`` to enforce bars."""
    first_line = (description or "").strip().splitlines()[0] if description else None
    result = argparse.ArgumentParser(description=first_line)
    result.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    result.add_argument("--check", action="store_true", help="exit 1 when a bar is missed")
    return result


def header(title: str, quick: bool, **settings: Any) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"== {title}{'  (--quick: smoke run, figures are rough)' if quick else ''}")
    print(f"   python {platform.python_version()}, {os.cpu_count()} cpus, load {load}")
    if settings:
        print("   " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print()


# -- temp dirs and URLs ------------------------------------------------------------------


@contextlib.contextmanager
def temp_dir(prefix: str = "sealog-bench-") -> Iterator[Path]:
    """A fresh directory under the system temp dir, removed afterwards (here: the real disk)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sqlite_url(path: Path) -> str:
    """``sqlite:///`` + an absolute path gives the four-slash absolute form."""
    return "sqlite:///" + str(path.resolve())


def unreachable_url(base: Path) -> str:
    """A store whose parent directory does not exist: SQLiteStore.migrate raises StoreUnavailable.

    Permissions would not do: the benches may run as root, which ignores them. Pass an
    explicit ``spool_dir`` with it, or the default spool dir (beside the DB) would create
    the missing parent.
    """
    return sqlite_url(base / "no-such-dir" / "audit.db")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- sample events -----------------------------------------------------------------------


def event_kwargs(i: int) -> dict[str, Any]:
    """A realistic emit: tenant, action, actor, target and three keys of metadata."""
    return {
        "tenant_id": TENANTS[i % len(TENANTS)],
        "action": ACTIONS[i % len(ACTIONS)],
        "actor": ("user", f"u-{i % 997}"),
        "target": ("document", f"doc-{i}"),
        "metadata": {"method": "password", "mfa": i % 2 == 0, "attempt": i % 5},
    }


# -- timing ------------------------------------------------------------------------------


@dataclass
class Contender:
    """One side of an interleaved measurement.

    ``run(n)`` makes ``n`` calls (timed); ``settle()`` runs untimed after each batch, e.g.
    to let a background consumer drain so it does not spill into the next contender's batch.
    """

    name: str
    run: Callable[[int], None]
    settle: Callable[[], None] = lambda: None


def interleaved(contenders: Sequence[Contender], *, batches: int, batch_size: int,
                warmup: int = 5) -> dict[str, list[float]]:
    """Mean ns per call of each batch, per contender; the order rotates every round."""
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = list(contenders)
    for round_no in range(warmup + batches):
        for contender in order:
            started = time.perf_counter_ns()
            contender.run(batch_size)
            elapsed = time.perf_counter_ns() - started
            contender.settle()
            if round_no >= warmup:
                samples[contender.name].append(elapsed / batch_size)
        order = order[1:] + order[:1]
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- output ------------------------------------------------------------------------------


def fmt(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows under headers; numbers right-aligned, text left-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    print()


# -- bars --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """A figure with the line it must cross (bar) and the one we aim for (goal, if any)."""

    name: str
    value: float
    bar: float
    goal: float | None
    higher_is_better: bool

    def meets(self, limit: float) -> bool:
        return self.value >= limit if self.higher_is_better else self.value <= limit


def verdict(bars: Sequence[Bar], check: bool) -> int:
    """Print each bar and goal as met or missed; the exit code for ``--check``."""
    sign = {True: ">=", False: "<="}
    rows = [
        (b.name, b.value, f"{sign[b.higher_is_better]} {fmt(b.bar)}",
         "met" if b.meets(b.bar) else "MISSED",
         "-" if b.goal is None else f"{sign[b.higher_is_better]} {fmt(b.goal)}",
         "-" if b.goal is None else "met" if b.meets(b.goal) else "not yet")
        for b in bars
    ]
    table(("figure", "value", "bar", "bar?", "goal", "goal?"), rows)
    missed = [b.name for b in bars if not b.meets(b.bar)]
    if missed and check:
        print(f"--check: bar missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


# -- CPU per process ---------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")
Match = Callable[[int, str], bool]


def cpu_seconds(groups: dict[str, Match]) -> dict[str, float]:
    """CPU seconds (user + system) of the running processes, summed per group (pid, command line)."""
    totals = dict.fromkeys(groups, 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        for name, match in groups.items():
            if match(int(entry), command):
                totals[name] += (int(stat[11]) + int(stat[12])) / _TICKS
                break
    return totals


def cpu_per_event(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {name: (after[name] - before[name]) / n * 1e6 for name in before}


def parent_pid(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]
    except OSError:
        return ""
