"""What the viewer shows above and beside its list: events over time and the top values of a filter.

On SQLite a filter of time and outcome only is answered from the counts of migration 005, exactly:
actions and outcomes from whole days, the whole hours of the partial days at the span's edges, and
only the partial hours at its very edges from the events; the chart likewise from whole hours (or
minutes, for bars under an hour), whole minutes and the partial minutes. A few thousand rows at a
million events. Without a time span, actors and targets come from all-time totals; within one, from the
span's newest ``SAMPLE`` events. The counts are folded in here, from the events stored since the
last fold (``fold``), so writes pay nothing for them. Any other filter (an action pattern, an actor,
a request...) narrows the events through their indexes and is counted over its newest ``SAMPLE``
matching events (a pattern checked as the list of the actions it matches, from the totals).
Whatever is sampled, the summary says so (``sampled``, ``sampled_facets``).
"""

from __future__ import annotations

import heapq
import sqlite3
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .. import _patterns as patterns
from .. import _timefmt as timefmt
from .._errors import StoreUnavailable
from .base import Query, Store, where

SAMPLE: Final = 2_000
"""Events counted for what the counts cannot answer (actors and targets within a time span, any other
filter): the newest that match. Enough for a top 8; small enough to read in a few milliseconds."""
TOP: Final = 8
BARS: Final = 60
"""At most this many bars: a chart an eye can read and a page that stays small."""
WIDTHS: Final = tuple(timedelta(seconds=s) for s in (
    60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 28 * 86400, 364 * 86400))
FACETS: Final = ("action", "actor_id", "target_id", "outcome")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DIMS: Final = {"action": "a", "actor_id": "u", "target_id": "t"}
_ROW = tuple[str, str, str | None, str | None, str]
"""(occurred_at, action, actor_id, target_id, outcome) of one event."""


@dataclass(frozen=True)
class Bar:
    start: str
    end: str
    """The bar's span, ``[start, end)``, as stored timestamps."""
    total: int
    failures: int


@dataclass
class Summary:
    bars: list[Bar] = field(default_factory=list)
    width: timedelta = WIDTHS[3]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    total: int = 0
    failures: int = 0
    sampled: int | None = None
    """None: every matching event is counted; else only the newest ``sampled`` of them, in the facets
    named by ``sampled_facets`` (and the chart, when it names every facet)."""
    sampled_facets: tuple[str, ...] = ()


def summarize(store: Store, query: Query, now: str | None = None) -> Summary:
    """The chart and facets of a filter (``limit`` and ``after`` are ignored)."""
    query = replace(query, limit=SAMPLE, after=None)
    try:
        conn = _sqlite(store)
        if conn is not None and _counted(query) and _has_counts(conn) and _folded(conn, query.tenant_id):
            return _from_counts(conn, query, now or timefmt.now())
        actions = None
        if conn is not None and query.action and patterns.literal_prefix(query.action)[1] and _has_counts(conn) \
                and _folded(conn, query.tenant_id):
            actions = _actions(conn, query.tenant_id, query.action)
        rows, sampled = _newest(store, conn, query, actions)
        return _from_rows(rows, query, sampled, now or timefmt.now())
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{getattr(store, 'path', store)}: {exc}") from exc


def _sqlite(store: Store) -> sqlite3.Connection | None:
    from .sqlite import SQLiteStore

    return store._conn() if isinstance(store, SQLiteStore) else None


def _counted(query: Query) -> bool:
    return not any((query.action, query.actor_id, query.target_id, query.request_id, query.correlation_id))


def _has_counts(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'viewer_folded'").fetchone()
    return row is not None


def _folded(conn: sqlite3.Connection, tenant: str) -> bool:
    """Fold; False when this process may not write the file (a read-only copy): count the events instead."""
    try:
        fold(conn, tenant)
    except sqlite3.OperationalError as exc:
        if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
            raise
        return False
    return True


FOLD_CHUNK: Final = 10_000
"""Events per fold transaction: the writer waits for at most one chunk."""
_FOLDS: Final = (  # the unary + keeps SQLite on the seq range: grouping by the actor index scans all ids
    "INSERT INTO viewer_counts SELECT tenant_id, 'm', substr(occurred_at, 1, 16), '', outcome, "
    "count(*) FROM events WHERE tenant_id = ? AND seq > ? AND seq <= ? GROUP BY 3, 4, 5 "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_counts SELECT tenant_id, 'h', substr(occurred_at, 1, 13), '', outcome, "
    "count(*) FROM events WHERE tenant_id = ? AND seq > ? AND seq <= ? GROUP BY 3, 4, 5 "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_counts SELECT tenant_id, 'ha', substr(occurred_at, 1, 13), action, outcome, "
    "count(*) FROM events WHERE tenant_id = ? AND seq > ? AND seq <= ? GROUP BY 3, 4, 5 "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_counts SELECT tenant_id, 'da', substr(occurred_at, 1, 10), action, outcome, "
    "count(*) FROM events WHERE tenant_id = ? AND seq > ? AND seq <= ? GROUP BY 3, 4, 5 "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_totals SELECT tenant_id, 'a', '*', action, count(*) FROM events WHERE tenant_id = ? "
    "AND seq > ? AND seq <= ? GROUP BY +action ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_totals SELECT tenant_id, 'u', '*', actor_id, count(*) FROM events WHERE tenant_id = ? "
    "AND seq > ? AND seq <= ? AND +actor_id IS NOT NULL GROUP BY +actor_id "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_totals SELECT tenant_id, 't', '*', target_id, count(*) FROM events WHERE tenant_id = ? "
    "AND seq > ? AND seq <= ? AND +target_id IS NOT NULL GROUP BY +target_id "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_totals SELECT tenant_id, 'u', outcome, actor_id, count(*) FROM events WHERE tenant_id = ? "
    "AND seq > ? AND seq <= ? AND +actor_id IS NOT NULL AND outcome <> 'success' GROUP BY 3, +actor_id "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "INSERT INTO viewer_totals SELECT tenant_id, 't', outcome, target_id, count(*) FROM events WHERE tenant_id = ? "
    "AND seq > ? AND seq <= ? AND +target_id IS NOT NULL AND outcome <> 'success' GROUP BY 3, +target_id "
    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
)


def _current(conn: sqlite3.Connection, tenant: str) -> bool:
    row = conn.execute("SELECT f.seq = h.seq AND f.prunes = (SELECT count(*) FROM prune_cuts p WHERE p.tenant_id = ?) "
                       "FROM chain_heads h JOIN viewer_folded f USING (tenant_id) WHERE tenant_id = ?",
                       (tenant, tenant)).fetchone()
    return bool(row and row[0])


def fold(conn: sqlite3.Connection, tenant: str) -> int:
    """Bring the tenant's counts up to its newest event; returns the events folded in.

    Events are append-only and numbered, so the events after the last folded seq are exactly the
    new ones; a prune (the one way events leave) since the last fold starts the tenant's counts over.
    """
    folded = 0
    if _current(conn, tenant):  # the common case, a page view with nothing new: no write lock taken
        return 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = conn.execute("SELECT seq FROM chain_heads WHERE tenant_id = ?", (tenant,)).fetchone()
            if head is None:  # no events (yet): nothing to keep, not even a row for a name someone typed
                conn.execute("COMMIT")
                return folded
            prunes = conn.execute("SELECT count(*) FROM prune_cuts WHERE tenant_id = ?", (tenant,)).fetchone()[0]
            seen, seen_prunes = conn.execute("SELECT seq, prunes FROM viewer_folded WHERE tenant_id = ?",
                                             (tenant,)).fetchone() or (0, 0)
            if prunes != seen_prunes:
                conn.execute("DELETE FROM viewer_counts WHERE tenant_id = ?", (tenant,))
                conn.execute("DELETE FROM viewer_totals WHERE tenant_id = ?", (tenant,))
                seen = 0
            upto: int = min(head[0], seen + FOLD_CHUNK)
            if upto > seen:
                for sql in _FOLDS:
                    conn.execute(sql, (tenant, seen, upto))
            conn.execute("INSERT INTO viewer_folded VALUES (?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE "
                         "SET seq = excluded.seq, prunes = excluded.prunes", (tenant, max(upto, seen), prunes))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        folded += max(upto - seen, 0)
        if upto >= head[0]:
            return folded


# -- from the counts ------------------------------------------------------------------------


def _from_counts(conn: sqlite3.Connection, query: Query, now: str) -> Summary:
    tenant, lo, hi = query.tenant_id, query.since, query.until
    summary = Summary()
    counters = {name: Counter[str]() for name in FACETS}
    upto = _exclusive(hi)

    # Actions and outcomes: whole days, then the whole hours of the partial days at the edges, from the
    # counts; only the partial hours at the very edges from the events.
    ranges, raw = _pieces(lo, upto, (10, 13))
    for size, first, last in ranges:
        for action, out, n in _sums(conn, tenant, "da" if size == 10 else "ha", first, last, query.outcome,
                                    "value"):
            counters["action"][action] += n
            counters["outcome"][out] += n
    for span in raw:
        sql = ("SELECT action, outcome, count(*) FROM events WHERE tenant_id = ? AND occurred_at >= ? "
               f"AND occurred_at < ?{' AND outcome = ?' if query.outcome else ''} GROUP BY action, outcome")
        for action, out, n in conn.execute(sql, [tenant, *span, *([query.outcome] if query.outcome else [])]):
            counters["action"][action] += n
            counters["outcome"][out] += n
    summary.total = sum(counters["outcome"].values())
    summary.failures = counters["outcome"]["failure"]

    # Actors and targets: all-time totals by count; within a time span, the span's events (the newest
    # SAMPLE of them when there are more).
    if lo is None and hi is None and query.outcome != "success":  # success has no totals of its own
        for name, dim in (("actor_id", "u"), ("target_id", "t")):
            sql = ("SELECT value, n FROM viewer_totals WHERE tenant_id = ? AND dim = ? AND outcome = ? AND n > 0 "
                   f"ORDER BY n DESC, value LIMIT {TOP}")
            counters[name].update(dict(conn.execute(sql, (tenant, dim, query.outcome or "*"))))
    else:
        rows, summary.sampled = _newest(None, conn, query)
        for _, _, actor, target, _ in rows:
            if actor is not None:
                counters["actor_id"][actor] += 1
            if target is not None:
                counters["target_id"][target] += 1
        if summary.sampled:
            summary.sampled_facets = ("actor_id", "target_id")
    summary.facets = {name: _top(c) for name, c in counters.items()}

    # Chart: whole hours (or minutes, for bars narrower than an hour) from the counts, whole minutes at
    # the edges of the hours from the counts, the partial minutes at the very edges from the events.
    high = hi or max(now, _last_time(conn, tenant) or now)
    low = lo or _at_least_an_hour(_first_time(conn, tenant) or now, high)
    summary.width = width = _width(low, high)
    bars = _bars(low, high, width)
    ranges, raw = _pieces(lo, upto, (13, 16) if width >= timedelta(hours=1) else (16,))
    for size, first, last in ranges:
        rows_ = _sums(conn, tenant, "h" if size == 13 else "m", first, last, query.outcome, "bucket")
        _fill(bars, width, ((bucket + _ZERO[size:], out, n) for bucket, out, n in rows_))
    for span in raw:
        _fill(bars, width, _times(conn, tenant, span, query.outcome))
    summary.bars = _finish(bars, width)
    return summary


_ZERO: Final = "0000-01-01T00:00:00.000000Z"
_UNITS: Final = {10: timedelta(days=1), 13: timedelta(hours=1), 16: timedelta(minutes=1)}
"""Bucket sizes (characters of a stored timestamp: day, hour, minute) and the time each spans."""
_Span = tuple[str, str]
"""[start, end) of stored timestamps."""
_END: Final = "~"
"""Sorts after every stored timestamp."""


def _exclusive(hi: str | None) -> str | None:
    """An inclusive upper bound as an exclusive one (stored timestamps are whole microseconds)."""
    try:
        return None if hi is None else _stamp(_parse(hi) + timedelta(microseconds=1))
    except (OverflowError, ValueError):  # the last microsecond of year 9999: nothing is later
        return None


def _pieces(lo: str | None, hi: str | None, sizes: tuple[int, ...]
            ) -> tuple[list[tuple[int, str | None, str | None]], list[_Span]]:
    """``[lo, hi)`` (None: unbounded) as ranges of whole buckets, coarsest first: (size, first bucket,
    last bucket, None for unbounded), finer buckets for the partial ones at the edges, and what even
    the finest cannot cover as spans to read from the events."""
    if not sizes:
        assert lo is not None
        return [], [(lo, hi or _END)] if lo < (hi or _END) else []
    size, finer = sizes[0], sizes[1:]
    start = None if lo is None else _ceil(lo, size)
    end = None if hi is None else hi[:size] + _ZERO[size:]
    if (lo is not None and start is None) or (start is not None and end is not None and start >= end):
        return _pieces(lo, hi, finer)  # no whole bucket of this size inside
    try:
        last = None if end is None else _stamp(_parse(end) - _UNITS[size])[:size]
    except (OverflowError, ValueError):  # ends in the first bucket of year 1: none before it
        last = ""
    ranges: list[tuple[int, str | None, str | None]] = [(size, None if start is None else start[:size], last)]
    raw: list[_Span] = []
    edges = ([(lo, start)] if lo is not None and start != lo else []) + ([(end, hi)] if end != hi else [])
    for a, b in edges:
        more, spans = _pieces(a, b, finer)
        ranges += more
        raw += spans
    return ranges, raw


def _ceil(stamp: str, size: int) -> str | None:
    """The first bucket boundary at or after ``stamp``; None past year 9999."""
    floor = stamp[:size] + _ZERO[size:]
    if floor == stamp:
        return floor
    try:
        return _stamp(_parse(floor) + _UNITS[size])
    except (OverflowError, ValueError):
        return None


def _sums(conn: sqlite3.Connection, tenant: str, dim: str, first: str | None, last: str | None,
          outcome: str | None, by: str) -> list[tuple[str, str, int]]:
    """(bucket or value, outcome, events) of one kind of count over buckets ``[first, last]``."""
    sql = f"SELECT {by}, outcome, sum(n) FROM viewer_counts WHERE tenant_id = ? AND dim = ?"
    params: list[str] = [tenant, dim]
    for bound, op in ((first, ">="), (last, "<=")):
        if bound is not None:
            sql += f" AND bucket {op} ?"
            params.append(bound)
    if outcome:
        sql += " AND outcome = ?"
        params.append(outcome)
    return conn.execute(f"{sql} GROUP BY {by}, outcome", params).fetchall()


def _times(conn: sqlite3.Connection, tenant: str, span: _Span, outcome: str | None) -> Iterator[tuple[str, str]]:
    sql = ("SELECT occurred_at, outcome FROM events WHERE tenant_id = ? AND occurred_at >= ? AND occurred_at < ?"
           + (" AND outcome = ?" if outcome else ""))
    yield from conn.execute(sql, [tenant, *span, *([outcome] if outcome else [])])


def _first_time(conn: sqlite3.Connection, tenant: str) -> str | None:
    row = conn.execute("SELECT min(occurred_at) FROM events WHERE tenant_id = ?", (tenant,)).fetchone()
    return row[0] if row else None


def _last_time(conn: sqlite3.Connection, tenant: str) -> str | None:
    row = conn.execute("SELECT max(occurred_at) FROM events WHERE tenant_id = ?", (tenant,)).fetchone()
    return row[0] if row else None


# -- from the newest matching events --------------------------------------------------------


def _actions(conn: sqlite3.Connection, tenant: str, pattern: str) -> list[str] | None:
    """The tenant's actions that match a pattern, from the folded totals; None when too many to list."""
    found = [value for (value,) in conn.execute("SELECT value FROM viewer_totals WHERE tenant_id = ? AND dim = 'a' "
                                                "AND outcome = '*'", (tenant,)) if patterns.matches(pattern, value)]
    return found if len(found) <= 200 else None


def _newest(store: Store | None, conn: sqlite3.Connection | None, query: Query,
            actions: list[str] | None = None) -> tuple[list[_ROW], int | None]:
    """The newest ``SAMPLE`` + 1 matching events' counted fields (the extra one says: sampled).

    ``actions``: the actions a pattern matches, checked as a list instead of the pattern (a call into
    Python for each event scanned); the ``+`` keeps SQLite walking the time index, newest first.
    """
    if conn is not None:
        from .sqlite import _DIALECT

        condition, params = where(replace(query, after=None, action=None if actions is not None else query.action),
                                  _DIALECT)
        if actions is not None:
            condition += f" AND +action IN ({', '.join(['%s'] * len(actions))})"
            params += actions
        sql = (f"SELECT occurred_at, action, actor_id, target_id, outcome FROM events "
               f"WHERE {condition.replace('%s', '?')} ORDER BY occurred_at DESC, seq DESC LIMIT {SAMPLE + 1}")
        rows: list[_ROW] = conn.execute(sql, params).fetchall()
    else:
        assert store is not None
        rows = []
        after = None
        while len(rows) <= SAMPLE:
            page = store.query(replace(query, limit=10_000, after=after))
            rows += [(e.occurred_at, e.action, e.actor_id, e.target_id, e.outcome) for e in page]
            if page.next is None:
                break
            after = page.next
    if len(rows) > SAMPLE:
        return rows[:SAMPLE], SAMPLE
    return rows, None


def _from_rows(rows: list[_ROW], query: Query, sampled: int | None, now: str) -> Summary:
    counters = {name: Counter[str]() for name in FACETS}
    _count(counters, rows)
    summary = Summary(facets={name: _top(c) for name, c in counters.items()}, total=len(rows),
                      failures=counters["outcome"]["failure"], sampled=sampled,
                      sampled_facets=FACETS if sampled else ())
    high = query.until or max(now, rows[0][0] if rows else now)
    low = (rows[-1][0] if sampled else query.since) or _at_least_an_hour(rows[-1][0] if rows else now, high)
    summary.width = _width(low, high)
    bars = _bars(low, high, summary.width)
    _fill(bars, summary.width, ((r[0], r[4]) for r in rows))
    summary.bars = _finish(bars, summary.width)
    return summary


# -- shared ---------------------------------------------------------------------------------


def _count(counters: dict[str, Counter[str]], rows: Iterable[_ROW]) -> None:
    action, actor, target, outcome = (counters[name] for name in FACETS)
    for _, a, u, t, o in rows:
        action[a] += 1
        outcome[o] += 1
        if u is not None:
            actor[u] += 1
        if t is not None:
            target[t] += 1


def _top(counter: Counter[str]) -> list[tuple[str, int]]:
    counter = +counter  # only positive counts
    return [(value, n) for value, n in heapq.nsmallest(TOP, counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _at_least_an_hour(low: str, high: str) -> str:
    """An open span's start: its first event, or an hour back when that is later (one full-width bar says little)."""
    return min(low, _stamp(_parse(high) - timedelta(hours=1)))


def _width(low: str, high: str) -> timedelta:
    span = _parse(high) - _parse(low)
    return next((w for w in WIDTHS if span / w < BARS), WIDTHS[-1])


def _bars(low: str, high: str, width: timedelta) -> dict[int, list[int]]:
    """Bar index (whole widths since 1970) -> [total, failures], every bar of the span present."""
    first, last = _index(low, width), _index(high, width)
    first = max(first, last - 4 * BARS)  # a clock far off cannot make a page of a million bars
    return {i: [0, 0] for i in range(first, last + 1)}


def _index(stamp: str, width: timedelta) -> int:
    return (_parse(stamp) - _EPOCH) // width


def _fill(bars: dict[int, list[int]], width: timedelta, rows: Iterable[tuple[Any, ...]]) -> None:
    """Add (time, outcome[, n]) rows to their bars; a row outside the bars is not shown."""
    first, last = min(bars), max(bars)
    starts = [_stamp(_EPOCH + i * width) for i in range(first, last + 2)]  # as text: no parsing per row
    for row in rows:
        i = bisect_right(starts, row[0])
        if 0 < i < len(starts):
            bar = bars[first + i - 1]
            n = row[2] if len(row) > 2 else 1
            bar[0] += n
            if row[1] == "failure":
                bar[1] += n


def _finish(bars: dict[int, list[int]], width: timedelta) -> list[Bar]:
    return [Bar(_stamp(_EPOCH + i * width), _stamp(_EPOCH + (i + 1) * width), total, failures)
            for i, (total, failures) in sorted(bars.items())]


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _stamp(value: datetime) -> str:
    return timefmt.format_datetime(value)
