"""The embedded store: one SQLite file in WAL mode.

SQLite has a single writer, so ``BEGIN IMMEDIATE`` is the per-tenant lock: a batch is
deduplicated, sealed and inserted while no other thread or process can extend a chain.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, Final, TypeVar

from msgspec.structs import astuple

from .. import _patterns as patterns
from .. import _timefmt as timefmt
from .._canonical import SORTED_FIELDS, canonical_row, loads
from .._chain import SCALAR_FIELDS, VerifyReport, seal
from .._errors import EventRejected, SealogError, StoreUnavailable
from .._event import FIELDS, JSON_FIELDS, Event
from .._merkle import TILE_HEIGHT, RightEdge, TiledHashes, leaf_hash
from . import migrations
from .base import (
    ChainHead,
    Dialect,
    Edges,
    InclusionProof,
    NodeRow,
    Page,
    ProgressFn,
    Query,
    StoredCheckpoint,
    check_limit,
    check_tree_size,
    checked_head,
    consistency,
    contiguous,
    covered_by_nodes,
    grow,
    inclusion,
    page_of,
    rebuild_edge,
    resolvable,
    sealed_leaf,
    sizes_before,
    stored_actions,
    where,
)

log = logging.getLogger("sealog")
T = TypeVar("T")
_COLUMNS: Final = ", ".join(f'"{name}"' for name in FIELDS)
_INSERT: Final = f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"
_E_COLUMNS: Final = ", ".join(f'e."{name}"' for name in FIELDS)
_VERIFY_COLUMNS: Final = ", ".join(f'"{n}"' for n in SORTED_FIELDS)
_CHUNK: Final = 500
_N_CONTENT: Final = len(SCALAR_FIELDS)
assert FIELDS[_N_CONTENT : _N_CONTENT + len(JSON_FIELDS)] == JSON_FIELDS  # the row layout below
_INSERT_NODE: Final = "INSERT INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)"
_LEAF_SQL: Final = (f"SELECT seq, {_VERIFY_COLUMNS} FROM events WHERE tenant_id = ? AND seq > ? AND seq <= ? "
                    "ORDER BY seq")
_PRUNED_SQL: Final = "SELECT seq, hash FROM pruned_leaves WHERE tenant_id = ? AND seq > ? AND seq <= ? ORDER BY seq"
_REPLAY: Final = "SQLITE_CONSTRAINT_UNIQUE"
"""The only UNIQUE of events is (tenant_id, event_id): a replay. (tenant_id, seq) is the key."""


_DIALECT: Final = Dialect(time="%s", pattern=lambda p: ("sealog_match(%s, action)", [p]), hint_outcome=True)
_NEXT_ACTION: Final = "SELECT action FROM events WHERE tenant_id = ? AND action {} ? ORDER BY action LIMIT 1"


def translate(exc: sqlite3.Error, where: object) -> SealogError:
    """The one place where SQLite errors are classified (by type, never by message words).

    A constraint or a trigger refusing a row (IntegrityError) and a value SQLite cannot
    take (DataError) are the row's fault; everything else (locked, read-only, no such
    table, disk full, I/O) is an outage, and so is anything we cannot tell apart.
    """
    code = getattr(exc, "sqlite_errorname", "")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError) and code != "SQLITE_CONSTRAINT_PRIMARYKEY":
        return EventRejected(f"{where}: {exc}")
    return StoreUnavailable(f"{where}: {exc}")


def path_from_url(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url!r} (use sqlite:///relative.db or sqlite:////abs.db)")
    return Path(url.removeprefix("sqlite:///"))


def create_private(path: Path) -> None:
    """Create the database file 0600 (owner only) if it does not exist, whatever the umask.

    Audit events are personal data. SQLite gives the WAL and shared-memory files the
    database file's own mode, so they are private too. An existing file keeps the mode
    its operator chose.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # a missing directory or no permission: sqlite3.connect reports it
    try:
        os.fchmod(fd, 0o600)  # a umask like 0o277 would have left it read-only
    finally:
        os.close(fd)


def _match(pattern: str, action: str) -> bool:
    return patterns.compile_pattern(pattern).fullmatch("." + action) is not None


class SQLiteStore:
    """A Store over one SQLite file; connections are per thread, as sqlite3 requires."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_from_url(url)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._edges = Edges()

    # -- connections -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's connections are not ours to use
            self._local, self._all, self._pid = threading.local(), [], os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                create_private(self.path)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 10000")
                # A new file only (SQLite ignores it once a table exists): 16 KiB pages keep the
                # seven search indexes shallower, a third more rows/s than 4 KiB (bench_throughput.py).
                conn.execute("PRAGMA page_size = 16384")
                conn.execute("PRAGMA journal_mode = WAL")
                # Up to 64 MiB of pages, taken only as used: a batch touches a page of each index
                # per actor and target, and the default 2 MiB spilled them mid-transaction.
                conn.execute("PRAGMA cache_size = -65536")
                # FULL: a committed batch survives a power cut, and batching keeps it cheap.
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            conn.create_function("sealog_match", 2, _match, deterministic=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def _transaction(self) -> sqlite3.Connection:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        return conn

    # -- schema ----------------------------------------------------------------------

    def migrate(self) -> None:
        if not self.path.parent.exists():
            raise StoreUnavailable(f"directory {self.path.parent} does not exist")
        conn = self._transaction()
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS sealog_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM sealog_migrations")}
            for step in migrations.load("sqlite"):
                if step.version in done:
                    continue
                for statement in _statements(step.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO sealog_migrations VALUES (?, ?, ?)",
                    (step.version, step.name, timefmt.now()),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"{self.path}: cannot migrate: {exc}") from exc

    # -- writes ----------------------------------------------------------------------

    def write(self, events: Sequence[Event]) -> int:
        # Replays are rare (only after a crash), so first try the batch as all new and
        # look for known event_ids only when the unique index says there are some.
        try:
            try:
                return self._write(events, dedupe=False)
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != _REPLAY:
                    raise
            return self._write(events, dedupe=True)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def _write(self, events: Sequence[Event], *, dedupe: bool,
               within: Callable[[sqlite3.Connection], None] | None = None) -> int:
        conn = self._transaction()
        try:
            if within is not None:  # a prune: atomic with the event that records it (see _prune)
                within(conn)
            fresh = self._unseen(conn, events) if dedupe else _distinct(events)
            heads = self._heads_of(conn, {e.tenant_id for e in fresh})
            edges = {t: self._edges.begin(t, size, partial(self._rebuild, conn, t, size))
                     for t, size in sizes_before(fresh, heads).items()}
            nodes: list[NodeRow] = []
            recorded_at = timefmt.now()
            rows = []
            for s in seal(fresh, heads):
                rows.append((*astuple(s.event)[:_N_CONTENT], *(j.decode() for j in s.json.values()),
                             s.seq, s.prev_hash, s.hash, recorded_at))
                grow(s.event.tenant_id, edges[s.event.tenant_id], sealed_leaf(s), nodes)
            conn.executemany(_INSERT, rows)
            conn.executemany(_INSERT_NODE, nodes)
            conn.executemany(
                "INSERT INTO chain_heads VALUES (?, ?, ?) ON CONFLICT (tenant_id) "
                "DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                [(tenant, seq, digest) for tenant, (seq, digest) in heads.items()],
            )
            conn.execute("COMMIT")
            self._edges.commit(edges)
            return len(fresh)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _unseen(conn: sqlite3.Connection, events: Sequence[Event]) -> list[Event]:
        """The events whose (tenant, id) the store does not hold yet, each key once."""
        seen: set[tuple[str, str]] = set()
        keys = sorted({(e.tenant_id, e.event_id) for e in events})
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("(?, ?)" for _ in chunk)
            # A join, not ``(tenant_id, event_id) IN (VALUES ...)``: SQLite plans that as a scan of
            # the whole key index per chunk, growing with the table; the join seeks each key.
            sql = (f"SELECT e.tenant_id, e.event_id FROM (VALUES {marks}) AS k "
                   "JOIN events e ON e.tenant_id = k.column1 AND e.event_id = k.column2")
            seen.update(conn.execute(sql, [v for key in chunk for v in key]))
        return _distinct(events, seen)

    def _heads_of(self, conn: sqlite3.Connection, tenants: set[str]) -> dict[str, tuple[int, str]]:
        """Each tenant's head, checked against its last event (see ``checked_head``)."""
        heads: dict[str, tuple[int, str]] = {}
        for tenant in tenants:
            row = conn.execute("SELECT seq, hash FROM chain_heads WHERE tenant_id = ?", (tenant,)).fetchone()
            last = conn.execute("SELECT seq, hash FROM events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
                                (tenant,)).fetchone()
            head = checked_head(tenant, row, last, self.path)
            if head is not None:
                heads[tenant] = head
        return heads

    def _rebuild(self, conn: sqlite3.Connection, tenant_id: str, size: int) -> RightEdge:
        """The tenant's edge from its stored rows (another process wrote since, or a restart)."""
        top = conn.execute("SELECT max(idx) FROM tree_nodes WHERE tenant_id = ? AND level = ?",
                           (tenant_id, TILE_HEIGHT)).fetchone()[0]
        edge, missing = rebuild_edge(tenant_id, size, covered_by_nodes(top), _tiles(conn, tenant_id),
                                     lambda start, end: _leaves(conn, tenant_id, start, end), self.path)
        conn.executemany(_INSERT_NODE.replace("INSERT", "INSERT OR IGNORE", 1), missing)
        return edge

    # -- the verifiable log ------------------------------------------------------------

    def tree_size(self, tenant_id: str) -> int:
        row = self._read("SELECT seq FROM chain_heads WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return int(row[0]) if row else 0

    def tree_root(self, tenant_id: str, size: int) -> bytes:
        check_tree_size(tenant_id, size, self.tree_size(tenant_id))
        return self._tree(lambda tiles: RightEdge.rebuild(size, tiles).root(), tenant_id)

    def inclusion_proof(self, tenant_id: str, event_id: str, tree_size: int) -> InclusionProof:
        head = self.tree_size(tenant_id)
        sql = "SELECT seq FROM events WHERE tenant_id = ? AND event_id = ?"
        row = self._read(sql, (tenant_id, event_id)).fetchone()
        return self._tree(lambda tiles: inclusion(tenant_id, row[0] if row else None, tree_size, head, tiles),
                          tenant_id)

    def consistency_proof(self, tenant_id: str, first: int, second: int) -> list[bytes]:
        head = self.tree_size(tenant_id)
        return self._tree(lambda tiles: consistency(tenant_id, first, second, head, tiles), tenant_id)

    def _tree(self, compute: Callable[[TiledHashes], T], tenant_id: str) -> T:
        try:
            return compute(_tiles(self._conn(), tenant_id))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def leaves(self, tenant_id: str, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            last = end if end is not None else 2**63 - 1
            conn.execute("BEGIN")  # one snapshot: the leaves a prune kept, then the events after its cut
            for seq, digest in conn.execute(_PRUNED_SQL, (tenant_id, 0, last)):
                yield seq, bytes(digest)
            for row in conn.execute(_LEAF_SQL, (tenant_id, 0, last)):
                yield row[0], leaf_hash(canonical_row(row[1:]))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        finally:
            conn.close()

    def add_checkpoint(self, tenant_id: str, tree_size: int, root: bytes, note: str) -> None:
        conn = self._transaction()
        try:
            conn.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (tenant_id, tree_size, root, note, timefmt.now()))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise translate(exc, self.path) from exc

    def latest_checkpoint(self, tenant_id: str) -> StoredCheckpoint | None:
        row = self._read("SELECT tenant_id, tree_size, root, note, created_at FROM checkpoints WHERE tenant_id = ? "
                         "ORDER BY tree_size DESC, created_at DESC LIMIT 1", (tenant_id,)).fetchone()
        return StoredCheckpoint(row[0], row[1], bytes(row[2]), row[3], row[4]) if row else None

    # -- reads -----------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc

    def query(self, query: Query) -> Page:
        limit = check_limit(query.limit)
        prefix = resolvable(query.action)
        actions = None if prefix is None else stored_actions(query.action or "", self._actions(query.tenant_id, prefix))
        if actions is None:
            condition, params = where(query, _DIALECT)
            sql = (f"SELECT {_COLUMNS} FROM events WHERE {condition.replace('%s', '?')} "
                   f"ORDER BY occurred_at DESC, seq DESC LIMIT {limit + 1}")
            return page_of([_event(row) for row in self._read(sql, params)], limit)
        if not actions:
            return Page([], None)
        # One search per action on its index, newest first: keys only ((tenant_id, action,
        # occurred_at) + the key's seq cover them), merged; then the page's rows by key.
        parts, params = [], []
        for action in actions:
            condition, values = where(replace(query, action=action), _DIALECT, exact=True)
            parts.append(f"SELECT * FROM (SELECT occurred_at, seq FROM events WHERE {condition.replace('%s', '?')} "
                         f"ORDER BY occurred_at DESC, seq DESC LIMIT {limit + 1})")
            params += values
        sql = (f"WITH page(occurred_at, seq) AS ({' UNION ALL '.join(parts)} ORDER BY 1 DESC, 2 DESC "
               f"LIMIT {limit + 1}) SELECT {_E_COLUMNS} FROM page JOIN events e ON e.tenant_id = ? "
               "AND e.seq = page.seq ORDER BY page.occurred_at DESC, page.seq DESC")
        return page_of([_event(row) for row in self._read(sql, [*params, query.tenant_id])], limit)

    def _actions(self, tenant_id: str, prefix: str) -> Iterator[str]:
        """The tenant's distinct actions from ``prefix`` on, ascending: one seek each on the action index."""
        row = self._read(_NEXT_ACTION.format(">="), (tenant_id, prefix)).fetchone()
        while row is not None:
            yield str(row[0])
            row = self._read(_NEXT_ACTION.format(">"), (tenant_id, row[0])).fetchone()

    def get(self, tenant_id: str, event_id: str) -> Event | None:
        sql = f"SELECT {_COLUMNS} FROM events WHERE tenant_id = ? AND event_id = ?"
        row = self._read(sql, (tenant_id, event_id)).fetchone()
        return _event(row) if row else None

    def iter_events(self, tenant_id: str, after_seq: int = 0) -> Iterator[Event]:
        sql = f"SELECT {_COLUMNS} FROM events WHERE tenant_id = ? AND seq > ? ORDER BY seq"
        # A connection of its own: a caller may write while it reads a long export.
        conn = sqlite3.connect(self.path, check_same_thread=False)
        try:
            for row in conn.execute(sql, (tenant_id, after_seq)):
                yield _event(row)
        finally:
            conn.close()

    def heads(self) -> list[ChainHead]:
        rows = self._read("SELECT tenant_id, seq, hash FROM chain_heads ORDER BY tenant_id")
        return [ChainHead(*row) for row in rows]

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None, *,
               incremental: bool = False, sample: int = 0, jobs: int | None = 1) -> VerifyReport:
        """Each tenant's heads, rows and tree from one read transaction: a concurrent insert is never an alarm.

        Full by default; ``incremental`` checks only what is new since the remembered position and
        remembers the new one; ``sample`` re-hashes that many old events against the tree; ``jobs``
        verifies tenants in that many processes (None: one per core for a big store). See _verify.
        """
        from ._verify import SQLiteSource, run

        return run(SQLiteSource(str(self.path)), tenant_id, progress, incremental=incremental, sample=sample,
                   jobs=jobs)


def _tiles(conn: sqlite3.Connection, tenant_id: str) -> TiledHashes:
    """Subtree hashes of a tenant's tree from its stored rows and (for the last tile) its events."""
    def stored(level: int, start: int, end: int) -> list[bytes]:
        return contiguous(conn.execute("SELECT idx, hash FROM tree_nodes WHERE tenant_id = ? AND level = ? "
                                       "AND idx >= ? AND idx < ? ORDER BY idx", (tenant_id, level, start, end)), start)

    return TiledHashes(stored, lambda start, end: _leaves(conn, tenant_id, start, end))


def _leaves(conn: sqlite3.Connection, tenant_id: str, start: int, end: int) -> list[bytes]:
    """Leaf hashes of events [start, end) (seq start + 1 ..), up to the first missing seq."""
    kept = conn.execute(_PRUNED_SQL, (tenant_id, start, end)).fetchall()  # leaves of pruned events
    rows = conn.execute(_LEAF_SQL, (tenant_id, start, end))
    return contiguous(chain(((seq - 1, digest) for seq, digest in kept),
                            ((seq - 1, leaf_hash(canonical_row(rest))) for seq, *rest in rows)), start)


def _distinct(events: Sequence[Event], seen: set[tuple[str, str]] | None = None) -> list[Event]:
    seen = set() if seen is None else seen
    fresh = []
    for event in events:
        key = (event.tenant_id, event.event_id)
        if key not in seen:
            seen.add(key)
            fresh.append(event)
    return fresh


_JSON_INDEX: Final = {FIELDS.index(name) for name in JSON_FIELDS}


def _event(row: Sequence[Any]) -> Event:
    values = {
        name: (loads(value) if i in _JSON_INDEX else value)
        for i, (name, value) in enumerate(zip(FIELDS, row, strict=True))
    }
    return Event(**values)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; executescript would commit mid-transaction."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
