"""The embedded store: one SQLite file in WAL mode.

SQLite has a single writer, so ``BEGIN IMMEDIATE`` is the per-tenant lock: a batch is
deduplicated, sealed and inserted while no other thread or process can extend a chain.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
from msgspec.structs import astuple

from .. import _patterns as patterns
from .. import _timefmt as timefmt
from .._canonical import SORTED_FIELDS, canonical_row
from .._chain import SCALAR_FIELDS, CanonicalRow, VerifyReport, seal, verify_chain
from .._errors import StoreUnavailable
from .._event import FIELDS, JSON_FIELDS, Event
from . import migrations
from .base import ChainHead, Page, ProgressFn, Query, check_limit, decode_cursor, encode_cursor

_COLUMNS: Final = ", ".join(f'"{name}"' for name in FIELDS)
_INSERT: Final = f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"
_VERIFY_COLUMNS: Final = ", ".join(f'"{n}"' for n in SORTED_FIELDS)
_CHUNK: Final = 500
_N_CONTENT: Final = len(SCALAR_FIELDS)
assert FIELDS[_N_CONTENT : _N_CONTENT + len(JSON_FIELDS)] == JSON_FIELDS  # the row layout below
_TRANSIENT_WORDS: Final = ("locked", "busy", "unable to open", "readonly", "disk", "i/o", "full")
_decode_json = msgspec.json.decode


def _is_transient(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(w in text for w in _TRANSIENT_WORDS)


def path_from_url(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url!r} (use sqlite:///relative.db or sqlite:////abs.db)")
    return Path(url.removeprefix("sqlite:///"))


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

    # -- connections -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's connections are not ours to use
            self._local, self._all, self._pid = threading.local(), [], os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA journal_mode = WAL")
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
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
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
            conn.execute("ROLLBACK")
            if _is_transient(exc):
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            raise

    # -- writes ----------------------------------------------------------------------

    def write(self, events: Sequence[Event]) -> int:
        # Replays are rare (only after a crash), so first try the batch as all new and
        # look for known event_ids only when the unique index says there are some.
        try:
            return self._write(events, dedupe=False)
        except sqlite3.IntegrityError as exc:
            if "event_id" not in str(exc):
                raise
        return self._write(events, dedupe=True)

    def _write(self, events: Sequence[Event], *, dedupe: bool) -> int:
        conn = self._transaction()
        try:
            fresh = self._unseen(conn, events) if dedupe else _distinct(events)
            heads = self._heads_of(conn, {e.tenant_id for e in fresh})
            recorded_at = timefmt.now()
            rows = [(*astuple(s.event)[:_N_CONTENT], *(j.decode() for j in s.json.values()),
                     s.seq, s.prev_hash, s.hash, recorded_at) for s in seal(fresh, heads)]
            conn.executemany(_INSERT, rows)
            conn.executemany(
                "INSERT INTO chain_heads VALUES (?, ?, ?) ON CONFLICT (tenant_id) "
                "DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                [(tenant, seq, digest) for tenant, (seq, digest) in heads.items()],
            )
            conn.execute("COMMIT")
            return len(fresh)
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _is_transient(exc):
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            raise

    @staticmethod
    def _unseen(conn: sqlite3.Connection, events: Sequence[Event]) -> list[Event]:
        """The events whose ids the store does not hold yet (and each id once)."""
        ids = [e.event_id for e in events]
        seen: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            sql = f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})"
            seen.update(row[0] for row in conn.execute(sql, chunk))
        return _distinct(events, seen)

    @staticmethod
    def _heads_of(conn: sqlite3.Connection, tenants: set[str]) -> dict[str, tuple[int, str]]:
        heads: dict[str, tuple[int, str]] = {}
        names = list(tenants)
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT tenant_id, seq, hash FROM chain_heads WHERE tenant_id IN ({marks})"
            heads.update((t, (s, h)) for t, s, h in conn.execute(sql, chunk))
        return heads

    # -- reads -----------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            if _is_transient(exc) or "no such table" in str(exc):
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            raise

    def query(self, query: Query) -> Page:
        limit = check_limit(query.limit)
        where: list[str] = ["tenant_id = ?"]
        params: list[Any] = [query.tenant_id]
        if query.action:
            prefix, wild = patterns.literal_prefix(query.action)
            if not wild:
                where.append("action = ?")
                params.append(prefix)
            else:
                if prefix:
                    where.append("(action = ? OR (action > ? AND action < ?))")
                    params += [prefix, prefix + ".", prefix + "/"]
                where.append("sealog_match(?, action)")
                params.append(query.action)
        for column in ("actor_id", "target_id", "outcome", "request_id", "correlation_id"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since:
            where.append("occurred_at >= ?")
            params.append(query.since)
        if query.until:
            where.append("occurred_at <= ?")
            params.append(query.until)
        if query.after:
            occurred_at, seq = decode_cursor(query.after)
            where.append("(occurred_at, seq) < (?, ?)")
            params += [occurred_at, seq]
        sql = (f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} "
               f"ORDER BY occurred_at DESC, seq DESC LIMIT {limit + 1}")
        events = [_event(row) for row in self._read(sql, params)]
        more = len(events) > limit
        events = events[:limit]
        last = events[-1] if more else None
        cursor = encode_cursor(last.occurred_at, last.seq or 0) if last else None
        return Page(events, cursor)

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

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None) -> VerifyReport:
        report = VerifyReport()
        heads = {h.tenant_id: (h.seq, h.hash) for h in self.heads()}
        tenants = [tenant_id] if tenant_id is not None else self._tenants_in_events(heads)
        for tenant in tenants:
            verify_chain(tenant, self._stored_rows(tenant), heads.get(tenant), report, progress)
        return report

    def _tenants_in_events(self, heads: dict[str, tuple[int, str]]) -> list[str]:
        # Tenants are read from the events themselves too, so deleting a head hides nothing.
        found = {row[0] for row in self._read("SELECT DISTINCT tenant_id FROM events")}
        return sorted(found | heads.keys())

    def _stored_rows(self, tenant_id: str) -> Iterator[CanonicalRow]:
        sql = (f"SELECT {_VERIFY_COLUMNS}, seq, prev_hash, hash FROM events "
               "WHERE tenant_id = ? ORDER BY seq")
        n = len(SORTED_FIELDS)
        conn = sqlite3.connect(self.path, check_same_thread=False)
        try:
            for row in conn.execute(sql, (tenant_id,)):
                yield CanonicalRow(canonical_row(row[:n]), row[n], row[n + 1], row[n + 2])
        finally:
            conn.close()


def _distinct(events: Sequence[Event], seen: set[str] | None = None) -> list[Event]:
    seen = set() if seen is None else seen
    fresh = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            fresh.append(event)
    return fresh


_JSON_INDEX: Final = {FIELDS.index(name) for name in JSON_FIELDS}


def _event(row: Sequence[Any]) -> Event:
    values = {
        name: (_decode_json(value) if i in _JSON_INDEX else value)
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
