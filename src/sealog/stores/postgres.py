"""The production store: PostgreSQL through psycopg 3, a connection pool and COPY.

Tables are prefixed ``sealog_`` because they live beside the application's own. A batch
is sealed in one transaction: the tenants' chain heads are locked ``FOR UPDATE`` in a
fixed order (so writers on many hosts extend one chain and never deadlock), the events
are sealed as COPY streams them, and a replay (known event_ids) is redone without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from itertools import chain
from typing import Any, Final, TypeVar

import psycopg
from msgspec.structs import astuple
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import _patterns as patterns
from .. import _timefmt as timefmt
from .._canonical import SORTED_FIELDS, canonical_row, canonical_value, loads
from .._chain import SCALAR_FIELDS, Sealed, VerifyReport, sealing
from .._errors import EventRejected, SealogError, StoreUnavailable
from .._event import FIELDS, JSON_FIELDS, Event
from .._merkle import TILE_HEIGHT, RightEdge, TiledHashes, leaf_hash
from . import migrations
from .base import (
    API_KEYS_TABLE,
    MAX_SCANNED,
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

T = TypeVar("T")
_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
_TIME_FIELDS: Final = ("occurred_at", "recorded_at")
_N_CONTENT: Final = len(SCALAR_FIELDS)
_COPY_EVENTS: Final = sql.SQL("COPY sealog_events ({}) FROM STDIN").format(
    sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS))
_INSERT_NODE: Final = "INSERT INTO sealog_tree_nodes (tenant_id, level, idx, hash) VALUES (%s, %s, %s, %s)"
_MIGRATION_LOCK: Final = 0x5EA1_0600  # any constant: pg_advisory_xact_lock serialises `init`s


def _select_list(fields: Sequence[str], *, json_as_text: bool = False) -> sql.Composable:
    """Columns as the Event wants them: timestamps as RFC 3339 text, JSON optionally as text."""
    parts: list[sql.Composable] = []
    for name in fields:
        column = sql.Identifier(name)
        if name in _TIME_FIELDS:
            parts.append(sql.SQL(_TIME).format(column))
        elif json_as_text and name in JSON_FIELDS:
            parts.append(sql.SQL("{}::text").format(column))
        else:
            parts.append(column)
    return sql.SQL(", ").join(parts)


_DIALECT: Final = Dialect(time="%s::timestamptz",
                          pattern=lambda p: ("('.' || action) ~ %s", [patterns.to_posix_regex(p)]))
_RAW_COLUMNS: Final = sql.SQL(", ").join(sql.Identifier(name) for name in FIELDS)
_ACTIONS: Final = sql.SQL(
    # The tenant's distinct actions from the prefix on, ascending, in one statement: a loose index
    # scan (one seek on the action index per action; a round trip each would be planned over every
    # partition), stopped past the prefix's range or after %(n)s actions.
    "WITH RECURSIVE a(action) AS ((SELECT action FROM sealog_events WHERE tenant_id = %(t)s AND action >= %(p)s "
    "ORDER BY action LIMIT 1) UNION ALL SELECT (SELECT e.action FROM sealog_events e WHERE e.tenant_id = %(t)s "
    "AND e.action > a.action ORDER BY e.action LIMIT 1) FROM a WHERE a.action IS NOT NULL AND "
    "(%(p)s = '' OR a.action < %(p)s || '/')) SELECT action FROM a WHERE action IS NOT NULL LIMIT %(n)s")


def translate(exc: psycopg.Error) -> SealogError:
    """The one place where PostgreSQL errors are classified, by SQLSTATE class.

    A data exception (22) or an integrity constraint (23) is about a row; everything else is
    an outage: connection (08), a read-only standby (25006), a missing table (42P01), no
    privilege (42501), a wrong password (28), and anything we cannot tell apart.
    """
    state = getattr(exc, "sqlstate", None) or ""
    if state[:2] in ("22", "23"):
        return EventRejected(f"PostgreSQL: {_first_line(exc)}")
    return StoreUnavailable(f"PostgreSQL: {_first_line(exc)}")


class PostgresStore:
    """A Store over PostgreSQL; connections come from a small pool opened on first use."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 10.0) -> None:
        self.url = url
        self._timeout = timeout
        self._pool = ConnectionPool(url, min_size=0, max_size=pool_size, open=False, timeout=timeout,
                                    configure=self._configure, check=ConnectionPool.check_connection,
                                    kwargs={"connect_timeout": max(1, int(timeout))})
        self._opened = False
        self._edges = Edges()

    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        set_json_loads(loads, conn)
        # PostgreSQL compiles (JIT) any plan costed over jit_above_cost. An export of a 250,000-event
        # tenant is such a plan: its first page took ~45 ms of compiling for ~4 ms of index scan
        # (bench_queries.py). Every statement of this pool is index-driven, so compiling never pays.
        conn.execute("SET jit = off")
        conn.commit()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The one place where driver errors become StoreUnavailable (an outage: retried)."""
        try:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._why_no_connection(exc) from exc
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def _why_no_connection(self, timeout: PoolTimeout) -> StoreUnavailable:
        """The pool says only that it timed out; one direct attempt names the cause
        (a wrong password, a database that does not exist, a server that is down)."""
        try:
            psycopg.connect(self.url, connect_timeout=max(1, int(self._timeout))).close()
        except psycopg.Error as exc:
            return StoreUnavailable(f"PostgreSQL: {_first_line(exc)}")
        return StoreUnavailable(f"PostgreSQL: {_first_line(timeout)}")

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False

    # -- schema ----------------------------------------------------------------------

    def migrate(self) -> None:
        wanted = {step.version for step in migrations.load("postgres")}
        with self._connection() as conn:
            # Up to date: nothing to create, so the writer role (no DDL rights) passes here.
            if conn.execute("SELECT to_regclass('sealog_migrations')").fetchone() != (None,):
                done = {row[0] for row in conn.execute("SELECT version FROM sealog_migrations")}
                if wanted <= done:
                    conn.execute("SELECT sealog_ensure_partitions(3)")
                    conn.commit()
                    return
            conn.rollback()
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS sealog_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM sealog_migrations")}
            for step in migrations.load("postgres"):
                if step.version not in done:
                    conn.execute(step.sql.encode())
                    conn.execute("INSERT INTO sealog_migrations (version, name) VALUES (%s, %s)",
                                 (step.version, step.name))
            conn.execute("SELECT sealog_ensure_partitions(3)")

    def create_roles(self, writer: str, writer_password: str | None,
                     reader: str, reader_password: str | None) -> None:
        """The writer may INSERT and SELECT events (and move chain heads); the reader SELECT only."""
        tables = ["sealog_events", "sealog_chain_heads", "sealog_event_ids", "sealog_migrations", "sealog_tree_nodes",
                  "sealog_checkpoints", "sealog_prune_cuts", "sealog_pruned_leaves", "sealog_verified"]
        with self._connection() as conn, conn.transaction():
            for role, password in ((writer, writer_password), (reader, reader_password)):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
                conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    verb, sql.Identifier(role), sql.Literal(password)))
            names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}, {}").format(
                names, sql.Identifier(writer), sql.Identifier(reader)))
            conn.execute(sql.SQL("GRANT INSERT ON sealog_events, sealog_chain_heads, sealog_event_ids, "
                                 "sealog_tree_nodes, sealog_checkpoints, sealog_verified TO {}")
                         .format(sql.Identifier(writer)))
            # Moving a chain head is an UPDATE; the events themselves never are.
            conn.execute(sql.SQL("GRANT UPDATE ON sealog_chain_heads TO {}").format(sql.Identifier(writer)))
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION sealog_ensure_partitions(integer) TO {}")
                         .format(sql.Identifier(writer)))
            # `sealog serve` checks API keys as the writer; keys are managed with the owner's URL.
            conn.execute(API_KEYS_TABLE)
            conn.execute(sql.SQL("GRANT SELECT ON sealog_api_keys TO {}").format(sql.Identifier(writer)))

    # -- writes ----------------------------------------------------------------------

    def write(self, events: Sequence[Event], *,
              within: Callable[[psycopg.Connection[Any]], None] | None = None) -> int:
        """``within`` (a prune, see _prune) runs in the transaction once the tenants' heads are locked."""
        if not events:
            return 0
        tenants = sorted({e.tenant_id for e in events})
        unique = list({(e.tenant_id, e.event_id): e for e in reversed(events)}.values())[::-1]  # first wins
        with self._connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO sealog_chain_heads (tenant_id, seq, hash) SELECT t, 0, repeat('0', 64) "
                "FROM unnest(%s::text[]) AS t ON CONFLICT (tenant_id) DO NOTHING", (tenants,))
            locked = {t: (s, h) for t, s, h in conn.execute(
                "SELECT tenant_id, seq, hash FROM sealog_chain_heads WHERE tenant_id = ANY(%s) "
                "ORDER BY tenant_id FOR UPDATE", (tenants,))}
            last = {t: (s, h) for t, s, h in conn.execute(
                "SELECT t, e.seq, e.hash FROM unnest(%s::text[]) AS t CROSS JOIN LATERAL "
                "(SELECT seq, hash FROM sealog_events WHERE tenant_id = t ORDER BY seq DESC LIMIT 1) AS e",
                (tenants,))}
            heads: dict[str, tuple[int, str]] = {}
            for tenant in tenants:
                row = locked.get(tenant)
                head = checked_head(tenant, None if row is None or row[0] == 0 else row, last.get(tenant),
                                    "PostgreSQL")
                if head is not None:
                    heads[tenant] = head
            if within is not None:
                within(conn)
            # Replays are rare (after a crash): claim the batch's keys as all new; only when the
            # key table reports a known one, look the known ones up and seal the rest. The
            # tenant locks make a concurrent replay of the same keys wait for us.
            try:
                with conn.transaction():
                    self._copy_keys(conn, unique)
                fresh = unique
            except psycopg.errors.UniqueViolation:
                known = set(conn.execute(
                    "SELECT tenant_id, event_id FROM sealog_event_ids k JOIN unnest(%s::text[], %s::text[]) "
                    "AS b(t, e) ON k.tenant_id = b.t AND k.event_id = b.e",
                    ([e.tenant_id for e in unique], [e.event_id for e in unique])).fetchall())
                fresh = [e for e in unique if (e.tenant_id, e.event_id) not in known]
                self._copy_keys(conn, fresh)
            edges = {t: self._edges.begin(t, size, partial(self._rebuild, conn, t, size))
                     for t, size in sizes_before(fresh, heads).items()}
            nodes: list[NodeRow] = []
            self._copy(conn, fresh, heads, lambda s: grow(s.event.tenant_id, edges[s.event.tenant_id],
                                                          sealed_leaf(s), nodes))
            with conn.cursor() as cur:
                cur.executemany("UPDATE sealog_chain_heads SET seq = %s, hash = %s WHERE tenant_id = %s",
                                [(seq, digest, tenant) for tenant, (seq, digest) in heads.items()])
                cur.executemany(_INSERT_NODE, nodes)
        self._edges.commit(edges)
        return len(fresh)

    def _rebuild(self, conn: psycopg.Connection[Any], tenant_id: str, size: int) -> RightEdge:
        """The tenant's edge from its stored rows (another process wrote since, or a restart)."""
        top = conn.execute("SELECT max(idx) FROM sealog_tree_nodes WHERE tenant_id = %s AND level = %s",
                           (tenant_id, TILE_HEIGHT)).fetchone()
        edge, missing = rebuild_edge(tenant_id, size, covered_by_nodes(top[0] if top else None),
                                     _tiles(conn, tenant_id), partial(_leaves, conn, tenant_id), "PostgreSQL")
        with conn.cursor() as cur:
            cur.executemany(_INSERT_NODE + " ON CONFLICT DO NOTHING", missing)
        return edge

    @staticmethod
    def _copy_keys(conn: psycopg.Connection[Any], events: list[Event]) -> None:
        with conn.cursor() as cur, cur.copy("COPY sealog_event_ids (tenant_id, event_id) FROM STDIN") as copy:
            for event in events:
                copy.write_row((event.tenant_id, event.event_id))

    @staticmethod
    def _copy(conn: psycopg.Connection[Any], events: list[Event], heads: dict[str, tuple[int, str]],
              sealed: Callable[[Sealed], None]) -> None:
        """Seal, extending ``heads``, while COPY streams the rows.

        A writer thread sends the rows, so the server inserts and indexes while Python
        hashes the next ones.
        """
        recorded_at = timefmt.now()
        with conn.cursor() as cur, cur.copy(_COPY_EVENTS, writer=QueuedLibpqWriter(cur)) as copy:
            for s in sealing(events, heads):
                copy.write_row((*astuple(s.event)[:_N_CONTENT], *map(bytes.decode, s.json.values()),
                                s.seq, s.prev_hash, s.hash, recorded_at))
                sealed(s)

    # -- the verifiable log ------------------------------------------------------------

    def tree_size(self, tenant_id: str) -> int:
        found = self._fetch(sql.SQL("SELECT seq FROM sealog_chain_heads WHERE tenant_id = %s"), (tenant_id,),
                            lambda r: int(r[0]))
        return found[0] if found else 0

    def tree_root(self, tenant_id: str, size: int) -> bytes:
        with self._connection() as conn:
            check_tree_size(tenant_id, size, _head(conn, tenant_id))
            return RightEdge.rebuild(size, _tiles(conn, tenant_id)).root()

    def inclusion_proof(self, tenant_id: str, event_id: str, tree_size: int) -> InclusionProof:
        with self._connection() as conn:
            row = conn.execute("SELECT seq FROM sealog_events WHERE tenant_id = %s AND event_id = %s",
                               (tenant_id, event_id)).fetchone()
            return inclusion(tenant_id, row[0] if row else None, tree_size, _head(conn, tenant_id),
                             _tiles(conn, tenant_id))

    def consistency_proof(self, tenant_id: str, first: int, second: int) -> list[bytes]:
        with self._connection() as conn:
            return consistency(tenant_id, first, second, _head(conn, tenant_id), _tiles(conn, tenant_id))

    def leaves(self, tenant_id: str, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        statement = sql.SQL("SELECT seq, {} FROM sealog_events WHERE tenant_id = %s AND seq <= %s "
                            "ORDER BY seq").format(_select_list(SORTED_FIELDS, json_as_text=True))
        last = end if end is not None else 2**63 - 1
        # One snapshot: the leaf hashes a prune kept, then the events after its cut.
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with conn.cursor(name="sealog_pruned") as cursor:
                cursor.itersize = 2000
                cursor.execute(_PRUNED_SQL, (tenant_id, 0, last))
                for seq, digest in cursor:
                    yield seq, bytes(digest)
            with conn.cursor(name="sealog_leaves") as cursor:
                cursor.itersize = 2000
                cursor.execute(statement, (tenant_id, last))
                for seq, *values in cursor:
                    yield seq, leaf_hash(_canonical(values))

    def add_checkpoint(self, tenant_id: str, tree_size: int, root: bytes, note: str) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("INSERT INTO sealog_checkpoints (tenant_id, tree_size, root, note) VALUES (%s, %s, %s, %s) "
                         "ON CONFLICT DO NOTHING", (tenant_id, tree_size, root, note))

    def latest_checkpoint(self, tenant_id: str) -> StoredCheckpoint | None:
        statement = sql.SQL("SELECT tenant_id, tree_size, root, note, {} FROM sealog_checkpoints WHERE tenant_id = %s "
                            "ORDER BY tree_size DESC, created_at DESC LIMIT 1").format(
                                sql.SQL(_TIME).format(sql.Identifier("created_at")))
        found = self._fetch(statement, (tenant_id,), lambda r: StoredCheckpoint(r[0], r[1], bytes(r[2]), r[3], r[4]))
        return found[0] if found else None

    # -- reads -----------------------------------------------------------------------

    def _fetch(self, query: sql.Composed | sql.SQL, params: Sequence[Any],
               row: Callable[[Any], T]) -> list[T]:
        with self._connection() as conn:
            return [row(r) for r in conn.execute(query, params)]

    def query(self, query: Query) -> Page:
        limit = check_limit(query.limit)
        prefix = resolvable(query.action)
        actions = None
        if prefix is not None:
            with self._connection() as conn:
                found = conn.execute(_ACTIONS, {"t": query.tenant_id, "p": prefix, "n": MAX_SCANNED + 1})
                actions = stored_actions(query.action or "", [str(row[0]) for row in found])
        if actions is None:
            condition, params = where(query, _DIALECT)
            statement = sql.SQL("SELECT {} FROM sealog_events WHERE {} ORDER BY occurred_at DESC, seq DESC "
                                "LIMIT {}").format(_select_list(FIELDS), sql.SQL(condition),  # where(): fixed strings
                                                   sql.Literal(limit + 1))
            return page_of(self._fetch(statement, params, _event), limit)
        if not actions:
            return Page([], None)
        # One search per action on its index, newest first, merged: never the whole tenant.
        parts, params = [], []
        for action in actions:
            condition, values = where(replace(query, action=action), _DIALECT, exact=True)
            parts.append(sql.SQL("(SELECT {} FROM sealog_events WHERE {} ORDER BY occurred_at DESC, seq DESC "
                                 "LIMIT {})").format(_RAW_COLUMNS, sql.SQL(condition), sql.Literal(limit + 1)))
            params += values
        statement = sql.SQL("SELECT {} FROM ({}) AS page ORDER BY occurred_at DESC, seq DESC LIMIT {}").format(
            _select_list(FIELDS), sql.SQL(" UNION ALL ").join(parts), sql.Literal(limit + 1))
        return page_of(self._fetch(statement, params, _event), limit)

    def get(self, tenant_id: str, event_id: str) -> Event | None:
        statement = sql.SQL("SELECT {} FROM sealog_events WHERE tenant_id = %s AND event_id = %s").format(
            _select_list(FIELDS))
        found = self._fetch(statement, (tenant_id, event_id), _event)
        return found[0] if found else None

    def _stream(self, statement: sql.Composed, params: Sequence[Any]) -> Iterator[Any]:
        """A server-side cursor: a tenant of any size in constant memory.

        The first fetch is small, so an export's first lines come as fast as a page of a search;
        later fetches grow to 2,000 rows, where a round trip costs nothing next to the rows.
        """
        with self._connection() as conn, conn.transaction(), \
                conn.cursor(name="sealog_stream") as cursor:
            cursor.execute(statement, params)
            size = 100
            while rows := cursor.fetchmany(size):
                yield from rows
                size = min(size * 4, 2000)

    def iter_events(self, tenant_id: str, after_seq: int = 0) -> Iterator[Event]:
        statement = sql.SQL("SELECT {} FROM sealog_events WHERE tenant_id = %s AND seq > %s "
                            "ORDER BY seq").format(_select_list(FIELDS))
        for row in self._stream(statement, (tenant_id, after_seq)):
            yield _event(row)

    def heads(self) -> list[ChainHead]:
        return self._fetch(sql.SQL("SELECT tenant_id, seq, hash FROM sealog_chain_heads WHERE seq > 0 "
                                   "ORDER BY tenant_id"), (), lambda r: ChainHead(*r))

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None, *,
               incremental: bool = False, sample: int = 0, jobs: int | None = 1) -> VerifyReport:
        """Each tenant's heads, rows and tree in one REPEATABLE READ snapshot: a concurrent insert is never an alarm.

        Full by default; ``incremental``, ``sample`` and ``jobs`` as for SQLiteStore.verify (see _verify).
        """
        from ._verify import PostgresSource, run

        return run(PostgresSource(self.url, self._timeout), tenant_id, progress, incremental=incremental,
                   sample=sample, jobs=jobs)


_LEAF_SQL: Final = sql.SQL("SELECT seq, {} FROM sealog_events WHERE tenant_id = %s AND seq > %s AND seq <= %s "
                           "ORDER BY seq").format(_select_list(SORTED_FIELDS, json_as_text=True))
_PRUNED_SQL: Final = ("SELECT seq, hash FROM sealog_pruned_leaves WHERE tenant_id = %s AND seq > %s AND seq <= %s "
                      "ORDER BY seq")
_JSON_AT: Final = tuple(SORTED_FIELDS.index(name) for name in JSON_FIELDS)


def _canonical(values: list[Any]) -> bytes:
    """Canonical bytes from a row in SORTED_FIELDS order, JSON columns as text (jsonb: re-canonicalised)."""
    for i in _JSON_AT:
        values[i] = canonical_value(None if values[i] is None else loads(values[i]))
    return canonical_row(values)


def _head(conn: psycopg.Connection[Any], tenant_id: str) -> int:
    row = conn.execute("SELECT seq FROM sealog_chain_heads WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return int(row[0]) if row else 0


def _leaves(conn: psycopg.Connection[Any], tenant_id: str, start: int, end: int) -> list[bytes]:
    """Leaf hashes of events [start, end) (seq start + 1 ..), up to the first missing seq."""
    kept = conn.execute(_PRUNED_SQL, (tenant_id, start, end)).fetchall()  # leaves of pruned events
    rows = conn.execute(_LEAF_SQL, (tenant_id, start, end)).fetchall()
    return contiguous(chain(((seq - 1, bytes(digest)) for seq, digest in kept),
                            ((seq - 1, leaf_hash(_canonical(values))) for seq, *values in rows)), start)


def _tiles(conn: psycopg.Connection[Any], tenant_id: str) -> TiledHashes:
    """Subtree hashes of a tenant's tree from its stored rows and (for the last tile) its events."""
    def stored(level: int, start: int, end: int) -> list[bytes]:
        rows = conn.execute("SELECT idx, hash FROM sealog_tree_nodes WHERE tenant_id = %s AND level = %s "
                            "AND idx >= %s AND idx < %s ORDER BY idx", (tenant_id, level, start, end))
        return contiguous(rows, start)

    return TiledHashes(stored, partial(_leaves, conn, tenant_id))


def _event(row: Sequence[Any]) -> Event:
    return Event(**dict(zip(FIELDS, row, strict=True)))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
