"""Retention that keeps the proofs: ``sealog prune --tenant T --before WHEN`` and ``AuditLog.prune``.

A prune removes a *prefix* of a tenant's chain: the events from the previous cut (or seq 1) up to the
last one that, like every event before it, occurred before WHEN; never the chain's head. In ONE
transaction it

1. re-verifies the range (seq continuity, links, hashes) and keeps each removed event's RFC 6962 leaf
   hash in ``pruned_leaves`` (32 bytes a row): the tree of any size stays computable, so every old
   checkpoint's root, ``verify --checkpoint``, and inclusion and consistency proofs keep working
   (the tree's stored nodes and the checkpoints are never pruned);
2. records the cut in ``prune_cuts``: the last removed seq and its hash, the prev_hash of the first
   kept event, from which ``verify`` checks the chain;
3. removes the events with the append-only trigger out of the way: SQLite drops and re-creates the
   DELETE trigger (DDL is transactional), PostgreSQL disables and re-enables it (only the tables'
   owner may) and drops the monthly partitions the prune left empty;
4. appends a ``sealog.prune`` event (metadata ``before``, ``from_seq``, ``to_seq``, ``count``,
   ``cut_hash``) to the tenant's chain, sealed like any other event.

A crash at any point rolls all of it back: the events, the trigger and the tree are as before.

Signed checkpoints: every removed event must be covered by a signed checkpoint first. With a signing
key configured, prune signs one when the latest does not cover the range (and one after, covering the
prune event); without a key, a tenant whose latest checkpoint does not cover the range is refused
(a tenant with no checkpoint at all relies on its hash chain only and may be pruned).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from uuid_utils import uuid7

from . import _timefmt as timefmt
from ._chain import GENESIS, CanonicalRow, Problem, StoredRow, VerifyReport, link, verify_chain
from ._errors import InvalidEvent, InvalidQuery, SealogError, StoreUnavailable
from ._event import Event, check_tenant
from ._merkle import leaf_hash
from .stores.base import TreeStore

if TYPE_CHECKING:
    from ._checkpoints import Checkpoints
    from .testing import MemoryStore

PRUNE_ACTION: Final = "sealog.prune"
_CHUNK: Final = 2000
_PRUNE_MARK: Final = b'"action":"sealog.prune"'

on_step: Callable[[str], None] | None = None
"""Test-only: called inside the prune's transaction after ``"recorded"`` (cut and leaf hashes written)
and ``"deleted"`` (events gone, trigger not yet back), so a test can crash the prune right there."""


class PruneRefused(SealogError):
    """The prune would break a guarantee (no checkpoint covers the range, not the owner, a concurrent prune)."""


class PruneTampered(SealogError):
    """The events to prune do not verify: removing them would destroy the evidence; nothing was pruned."""


class Cut(NamedTuple):
    """Where a pruned chain starts: the last removed seq and its hash (the next event's prev_hash)."""

    seq: int
    hash: str


@dataclass(frozen=True)
class PruneResult:
    """What a prune did; ``count`` 0 means nothing was old enough (and no event was recorded)."""

    tenant_id: str
    before: str
    from_seq: int
    to_seq: int
    count: int
    event_id: str | None = None
    dropped_partitions: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.count:
            return f"tenant {self.tenant_id!r}: nothing to prune before {self.before}"
        dropped = f"; dropped empty partitions {', '.join(self.dropped_partitions)}" if self.dropped_partitions else ""
        return (f"tenant {self.tenant_id!r}: pruned {self.count} events (seq {self.from_seq}..{self.to_seq}) that "
                f"occurred before {self.before}; the chain continues at seq {self.to_seq + 1}; recorded as "
                f"{PRUNE_ACTION} event {self.event_id}{dropped}")


class _Plan(NamedTuple):
    tenant_id: str
    before: str
    previous: Cut | None
    to_seq: int
    cut_hash: str

    @property
    def from_seq(self) -> int:
        return (self.previous.seq if self.previous else 0) + 1


# -- the operation -----------------------------------------------------------------------


def prune(store: TreeStore, tenant_id: str, before: object, policy: Checkpoints | None = None) -> PruneResult:
    """Remove the tenant's events that occurred before ``before`` (a chain prefix, never the head)."""
    try:
        check_tenant(tenant_id, "tenant")
        when = timefmt.parse_when(before)
    except InvalidEvent as exc:
        raise InvalidQuery(str(exc)) from None
    except ValueError as exc:
        raise InvalidQuery(f"before: {exc}") from None
    backend = _backend(store)
    plan = backend.plan(tenant_id, when)
    if plan.to_seq < plan.from_seq:
        return PruneResult(tenant_id, when, plan.from_seq, plan.to_seq, 0)
    _check_covered(store, plan, policy)
    event = prune_event(plan)
    dropped = backend.run(plan, event)
    if policy is not None and policy.signer is not None:
        policy.sign(store, tenant_id)  # the prune event is covered too
    return PruneResult(tenant_id, when, plan.from_seq, plan.to_seq, plan.to_seq - plan.from_seq + 1,
                       event.event_id, tuple(dropped))


def _check_covered(store: TreeStore, plan: _Plan, policy: Checkpoints | None) -> None:
    """Every event to remove must be under a signed checkpoint first (see the module's docstring)."""
    latest = store.latest_checkpoint(plan.tenant_id)
    if latest is not None and latest.tree_size >= plan.to_seq:
        return
    if policy is not None and policy.signer is not None:
        policy.sign(store, plan.tenant_id)
    elif latest is not None:
        raise PruneRefused(f"tenant {plan.tenant_id!r}: its latest signed checkpoint covers {latest.tree_size} "
                           f"events, not the {plan.to_seq} to prune: sign one first (sealog checkpoint "
                           "--signing-key FILE, or give --signing-key here) or prune an earlier --before")


def prune_event(plan: _Plan) -> Event:
    """The ``sealog.prune`` event that records the prune in the tenant's own chain."""
    return Event(event_id=str(uuid7()), tenant_id=plan.tenant_id, action=PRUNE_ACTION,
                 occurred_at=timefmt.now(), actor_type="system", actor_id="sealog", target_type="tenant",
                 target_id=plan.tenant_id, source="sealog",
                 metadata={"before": plan.before, "from_seq": plan.from_seq, "to_seq": plan.to_seq,
                           "count": plan.to_seq - plan.from_seq + 1, "cut_hash": plan.cut_hash})


def _step(name: str) -> None:
    if on_step is not None:
        on_step(name)


def checked_leaves(tenant_id: str, rows: Iterable[tuple[int, bytes, str, str]], expected: Cut) -> Iterator[
        tuple[int, bytes]]:
    """(seq, leaf hash) of rows ``(seq, canonical, prev_hash, hash)`` that continue the chain after ``expected``.

    PruneTampered at the first break: a prune must not remove the evidence of a change.
    """
    seq, prev = expected
    for row_seq, canonical, prev_hash, digest in rows:
        problem = ("missing" if row_seq != seq + 1 else "its prev_hash does not link" if prev_hash != prev
                   else "its content does not match its hash" if link(prev_hash, canonical) != digest else None)
        if problem:
            raise PruneTampered(f"tenant {tenant_id!r}: event seq {seq + 1}: {problem}; nothing was pruned "
                                "(run `sealog verify`)")
        seq, prev = row_seq, digest
        yield row_seq, leaf_hash(canonical)


# -- verification from the cut -----------------------------------------------------------


def verify_pruned_chain(tenant_id: str, rows: Iterator[StoredRow] | Iterator[CanonicalRow],
                        head: tuple[int, str] | None, report: VerifyReport,
                        progress: Callable[[int], None] | None, cut: Cut | None) -> None:
    """``verify_chain`` anchored on the tenant's latest cut: the first kept event links to its hash.

    An event still stored at or below the cut is reported (a cut must not hide events), and so is a cut
    that no later ``sealog.prune`` event in the chain records.
    """
    if cut is None:
        verify_chain(tenant_id, rows, head, report, progress)
        return
    report.tenants += 1
    expected_seq, expected_prev, attested = cut.seq + 1, cut.hash, False
    for row in rows:
        report.checked += 1
        if row.seq <= cut.seq:
            report.add(Problem(tenant_id, row.seq, "prune", f"still stored below the prune cut at seq {cut.seq}"))
            continue
        if row.seq != expected_seq:
            what = "missing" if row.seq > expected_seq else "duplicate or out of order"
            report.add(Problem(tenant_id, row.seq, "seq", f"expected {expected_seq} ({what})"))
        if row.prev_hash != expected_prev:
            detail = ("does not match the prune cut's hash" if expected_seq == cut.seq + 1
                      else "does not match the previous event's hash")
            report.add(Problem(tenant_id, row.seq, "prev_hash", detail))
        canonical = row.canonical if isinstance(row, CanonicalRow) else _canonical_of(row)
        if link(row.prev_hash, canonical) != row.hash:
            report.add(Problem(tenant_id, row.seq, "hash", "content does not match its hash"))
        attested = attested or (_PRUNE_MARK in canonical and _records(canonical, cut))
        expected_seq, expected_prev = row.seq + 1, row.hash
        if progress is not None and report.checked % 10_000 == 0:
            progress(report.checked)
    if not attested:
        report.add(Problem(tenant_id, cut.seq, "prune", f"the prune cut at seq {cut.seq} is recorded by no "
                                                        f"{PRUNE_ACTION} event in the chain"))
    if head is not None and (expected_seq - 1, expected_prev) != tuple(head):
        report.add(Problem(tenant_id, head[0], "head",
                           f"chain head says seq {head[0]}, last row is {expected_seq - 1}"))


def _canonical_of(row: StoredRow) -> bytes:
    from ._canonical import canonical_event

    return canonical_event(row.scalars, row.json)


def _records(canonical: bytes, cut: Cut) -> bool:
    """Whether this event's canonical JSON is a prune event recording exactly ``cut``."""
    try:
        event = json.loads(canonical)
        meta = event.get("metadata") or {}
        return bool(event.get("action") == PRUNE_ACTION and meta.get("to_seq") == cut.seq
                    and meta.get("cut_hash") == cut.hash)
    except (ValueError, AttributeError):
        return False


# -- the stores --------------------------------------------------------------------------


def _backend(store: TreeStore) -> _Backend:
    from .stores.sqlite import SQLiteStore
    from .testing import MemoryStore

    if isinstance(store, SQLiteStore):
        return _SQLite(store)
    if isinstance(store, MemoryStore):
        return _Memory(store)
    if type(store).__module__ == "sealog.stores.postgres":
        return _Postgres(store)
    raise PruneRefused(f"the store {type(store).__name__} cannot prune")


class _Backend:
    def plan(self, tenant_id: str, before: str) -> _Plan:
        raise NotImplementedError

    def run(self, plan: _Plan, event: Event) -> list[str]:
        """Prune and append the prune event in one transaction; the partitions dropped."""
        raise NotImplementedError


def _make_plan(tenant_id: str, before: str, previous: Cut | None, head: int, first_new: int | None,
               hash_at: Callable[[int], str]) -> _Plan:
    last = min(head - 1, first_new - 1 if first_new is not None else head)
    floor = previous.seq if previous else 0
    return _Plan(tenant_id, before, previous, last, hash_at(last) if last > floor else "")


class _Sql(_Backend):
    """What SQLite and PostgreSQL share: the same statements, table prefix and placeholders aside."""

    prefix = ""
    time = "?"

    def q(self, text: str) -> str:
        return text.format(p=self.prefix, t=self.time)

    def plan_in(self, conn: Any, tenant_id: str, before: str) -> _Plan:
        head = conn.execute(self.q("SELECT seq FROM {p}chain_heads WHERE tenant_id = ?"), (tenant_id,)).fetchone()
        first_new = conn.execute(self.q("SELECT min(seq) FROM {p}events WHERE tenant_id = ? AND occurred_at >= {t}"),
                                 (tenant_id, before)).fetchone()[0]

        def hash_at(seq: int) -> str:
            row = conn.execute(self.q("SELECT hash FROM {p}events WHERE tenant_id = ? AND seq = ?"),
                               (tenant_id, seq)).fetchone()
            if row is None:
                raise PruneTampered(f"tenant {tenant_id!r}: event seq {seq} is missing; nothing was pruned "
                                    "(run `sealog verify`)")
            return str(row[0])

        return _make_plan(tenant_id, before, self.cut(conn, tenant_id), int(head[0]) if head else 0, first_new,
                          hash_at)

    def cut(self, conn: Any, tenant_id: str) -> Cut | None:
        row = conn.execute(self.q("SELECT seq, hash FROM {p}prune_cuts WHERE tenant_id = ? ORDER BY seq DESC "
                                  "LIMIT 1"), (tenant_id,)).fetchone()
        return Cut(int(row[0]), str(row[1])) if row else None

    def rows(self, conn: Any, tenant_id: str, low: int, high: int) -> list[tuple[int, bytes, str, str]]:
        raise NotImplementedError

    def insert_leaves(self, conn: Any, tenant_id: str, leaves: list[tuple[int, bytes]]) -> None:
        raise NotImplementedError

    def remove(self, conn: Any, plan: _Plan) -> list[str]:
        raise NotImplementedError

    def within(self, plan: _Plan) -> Callable[[Any], None]:
        """The prune's statements, run inside the transaction that appends the prune event."""
        def run(conn: Any) -> None:
            if self.cut(conn, plan.tenant_id) != plan.previous:
                raise PruneRefused(f"tenant {plan.tenant_id!r} was pruned by someone else meanwhile: run it again")
            expected = plan.previous or Cut(0, GENESIS)
            for low in range(plan.from_seq, plan.to_seq + 1, _CHUNK):
                high = min(plan.to_seq, low + _CHUNK - 1)
                rows = self.rows(conn, plan.tenant_id, low, high)
                leaves = list(checked_leaves(plan.tenant_id, rows, expected))
                if len(leaves) != high - low + 1:
                    raise PruneTampered(f"tenant {plan.tenant_id!r}: event seq {low + len(leaves)} is missing; "
                                        "nothing was pruned (run `sealog verify`)")
                expected = Cut(high, rows[-1][3])
                self.insert_leaves(conn, plan.tenant_id, leaves)
            after = self.rows(conn, plan.tenant_id, plan.to_seq + 1, plan.to_seq + 1)
            if not after or after[0][2] != plan.cut_hash or expected.hash != plan.cut_hash:
                raise PruneTampered(f"tenant {plan.tenant_id!r}: event seq {plan.to_seq + 1} does not link to seq "
                                    f"{plan.to_seq}; nothing was pruned (run `sealog verify`)")
            conn.execute(self.q("INSERT INTO {p}prune_cuts (tenant_id, seq, hash, first_seq, \"before\", pruned_at) "
                                "VALUES (?, ?, ?, ?, {t}, {t})"),
                         (plan.tenant_id, plan.to_seq, plan.cut_hash, plan.from_seq, plan.before, timefmt.now()))
            _step("recorded")
            self.dropped = self.remove(conn, plan)
        return run


class _SQLite(_Sql):
    def __init__(self, store: Any) -> None:
        self.store = store
        self.dropped: list[str] = []

    def plan(self, tenant_id: str, before: str) -> _Plan:
        try:
            return self.plan_in(self.store._conn(), tenant_id, before)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.store.path}: {exc}") from exc

    def run(self, plan: _Plan, event: Event) -> list[str]:
        from .stores.sqlite import translate

        try:
            self.store._write([event], dedupe=False, within=self.within(plan))
        except sqlite3.Error as exc:
            raise translate(exc, self.store.path) from exc
        return self.dropped

    def rows(self, conn: Any, tenant_id: str, low: int, high: int) -> list[tuple[int, bytes, str, str]]:
        from ._canonical import SORTED_FIELDS, canonical_row
        from .stores.sqlite import _VERIFY_COLUMNS

        n = len(SORTED_FIELDS)
        found = conn.execute(f"SELECT seq, {_VERIFY_COLUMNS}, prev_hash, hash FROM events WHERE tenant_id = ? "
                             "AND seq >= ? AND seq <= ? ORDER BY seq", (tenant_id, low, high))
        return [(row[0], canonical_row(row[1:n + 1]), row[n + 1], row[n + 2]) for row in found]

    def insert_leaves(self, conn: Any, tenant_id: str, leaves: list[tuple[int, bytes]]) -> None:
        conn.executemany("INSERT INTO pruned_leaves (tenant_id, seq, hash) VALUES (?, ?, ?)",
                         [(tenant_id, seq, digest) for seq, digest in leaves])

    def remove(self, conn: Any, plan: _Plan) -> list[str]:
        # The trigger is dropped and made again inside this transaction: a crash rolls both back.
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE tenant_id = ? AND seq >= ? AND seq <= ?",
                     (plan.tenant_id, plan.from_seq, plan.to_seq))
        _step("deleted")
        conn.execute("CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN "
                     "SELECT RAISE(ABORT, 'sealog: the events table is append-only'); END")
        return []


class _Postgres(_Sql):
    prefix = "sealog_"
    time = "%s::timestamptz"

    def __init__(self, store: Any) -> None:
        self.store = store
        self.dropped: list[str] = []

    def q(self, text: str) -> str:
        return super().q(text.replace("?", "%s"))

    def plan(self, tenant_id: str, before: str) -> _Plan:
        with self.store._connection() as conn:
            owner = conn.execute("SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class "
                                 "WHERE oid = 'sealog_events'::regclass").fetchone()
            if not owner or not owner[0]:
                raise PruneRefused("sealog prune on PostgreSQL must run as the owner of sealog_events (the role "
                                   "that ran `sealog init`): give that role's URL with --url")
            return self.plan_in(conn, tenant_id, before)

    def run(self, plan: _Plan, event: Event) -> list[str]:
        self.store.write([event], within=self.within(plan))
        return self.dropped

    def rows(self, conn: Any, tenant_id: str, low: int, high: int) -> list[tuple[int, bytes, str, str]]:
        from psycopg import sql

        from ._canonical import SORTED_FIELDS
        from .stores.postgres import _canonical, _select_list

        n = len(SORTED_FIELDS)
        statement = sql.SQL("SELECT seq, {}, prev_hash, hash FROM sealog_events WHERE tenant_id = %s AND seq >= %s "
                            "AND seq <= %s ORDER BY seq").format(_select_list(SORTED_FIELDS, json_as_text=True))
        return [(row[0], _canonical(list(row[1:n + 1])), row[n + 1], row[n + 2])
                for row in conn.execute(statement, (tenant_id, low, high))]

    def insert_leaves(self, conn: Any, tenant_id: str, leaves: list[tuple[int, bytes]]) -> None:
        with conn.cursor() as cur, cur.copy("COPY sealog_pruned_leaves (tenant_id, seq, hash) FROM STDIN") as copy:
            for seq, digest in leaves:
                copy.write_row((tenant_id, seq, digest))

    def remove(self, conn: Any, plan: _Plan) -> list[str]:
        # Only the owner may disable a trigger; the DDL is transactional, so a crash leaves it enabled.
        conn.execute("ALTER TABLE sealog_events DISABLE TRIGGER sealog_events_append_only")
        conn.execute("DELETE FROM sealog_events WHERE tenant_id = %s AND seq >= %s AND seq <= %s",
                     (plan.tenant_id, plan.from_seq, plan.to_seq))
        _step("deleted")
        conn.execute("ALTER TABLE sealog_events ENABLE TRIGGER sealog_events_append_only")
        return self._drop_empty_months(conn, plan.before)

    @staticmethod
    def _drop_empty_months(conn: Any, before: str) -> list[str]:
        """Drop the monthly partitions wholly before ``before`` that hold no event of any tenant any more.

        DROP fires no trigger and removes nothing here: the space comes back at once, with no VACUUM.
        """
        from psycopg import sql

        cutoff = datetime.fromisoformat(before.replace("Z", "+00:00"))
        names = [row[0] for row in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'sealog_events'::regclass AND c.relname ~ '^sealog_events_[0-9]{4}_[0-9]{2}$' "
            "ORDER BY c.relname")]
        dropped = []
        for name in names:
            year, month = int(name[-7:-3]), int(name[-2:])
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            if end > cutoff:
                continue
            table = sql.Identifier(name)
            if conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(table)).fetchone()[0]:
                conn.execute(sql.SQL("DROP TABLE {}").format(table))
                dropped.append(name)
        return dropped


class _Memory(_Backend):
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def plan(self, tenant_id: str, before: str) -> _Plan:
        chain = [e for e in self.store.events if e.tenant_id == tenant_id]
        by_seq = {e.seq: e for e in chain}
        first_new = min((e.seq or 0 for e in chain if e.occurred_at >= before), default=None)
        cuts = self.store._cuts.get(tenant_id)
        return _make_plan(tenant_id, before, cuts[-1] if cuts else None, self.store.tree_size(tenant_id), first_new,
                          lambda seq: by_seq[seq].hash or "")

    def run(self, plan: _Plan, event: Event) -> list[str]:
        from .stores.base import event_canonical

        def within(store: MemoryStore) -> None:
            cuts = store._cuts.setdefault(plan.tenant_id, [])
            if (cuts[-1] if cuts else None) != plan.previous:
                raise PruneRefused(f"tenant {plan.tenant_id!r} was pruned by someone else meanwhile: run it again")
            chain = [e for e in store.events if e.tenant_id == plan.tenant_id
                     and plan.from_seq <= (e.seq or 0) <= plan.to_seq]
            rows = [(e.seq or 0, event_canonical(e), e.prev_hash or "", e.hash or "") for e in chain]
            leaves = list(checked_leaves(plan.tenant_id, rows, plan.previous or Cut(0, GENESIS)))
            if len(leaves) != plan.to_seq - plan.from_seq + 1:
                raise PruneTampered(f"tenant {plan.tenant_id!r}: events are missing; nothing was pruned")
            _step("recorded")
            kept = [e for e in store.events if e.tenant_id != plan.tenant_id
                    or not plan.from_seq <= (e.seq or 0) <= plan.to_seq]
            _step("deleted")
            # Nothing changed until here, so an exception above leaves the store as it was.
            store._pruned.setdefault(plan.tenant_id, []).extend(digest for _, digest in leaves)
            cuts.append(Cut(plan.to_seq, plan.cut_hash))
            store.events[:] = kept

        self.store.write([event], within=within)
        return []
