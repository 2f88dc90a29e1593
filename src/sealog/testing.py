"""For users' own tests: an in-memory store and an assertion that their code audited.

    log = AuditLog(store=MemoryStore(), spool_dir=tmp_path)
    ...
    log.flush()
    assert_audited(log, tenant_id="acme", action="auth.login", actor_id="u-1")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import msgspec

from . import _patterns as patterns
from . import _timefmt as timefmt
from ._chain import GENESIS, StoredRow, VerifyReport, seal
from ._event import JSON_FIELDS, Event
from ._log import AuditLog
from ._merkle import RightEdge, TiledHashes, leaf_hash
from ._prune import Cut, verify_pruned_chain
from .stores.base import (
    ChainHead,
    Edges,
    InclusionProof,
    NodeRow,
    Page,
    ProgressFn,
    Query,
    StoredCheckpoint,
    check_limit,
    check_tree_size,
    consistency,
    contiguous,
    decode_cursor,
    encode_cursor,
    event_canonical,
    grow,
    inclusion,
    sealed_leaf,
    sizes_before,
)


class MemoryStore:
    """A complete Store in a list: sealed, idempotent, queryable; gone with the process."""

    def __init__(self) -> None:
        self.url = "memory://"
        self.events: list[Event] = []
        self._ids: set[tuple[str, str]] = set()
        """The idempotency key, as in every store: (tenant_id, event_id)."""
        self._heads: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._nodes: dict[tuple[str, int], list[bytes]] = {}
        """The tree's stored subtrees, as the databases keep them: (tenant, level) -> hashes by index."""
        self._checkpoints: list[StoredCheckpoint] = []
        self._edges = Edges()
        self._cuts: dict[str, list[Cut]] = {}
        """Each tenant's prune cuts, oldest first (see _prune)."""
        self._pruned: dict[str, list[bytes]] = {}
        """The leaf hashes of each tenant's pruned events, by leaf index."""

    def migrate(self) -> None:
        return None

    def write(self, events: Sequence[Event], *, within: Callable[[MemoryStore], None] | None = None) -> int:
        with self._lock:
            if within is not None:  # a prune, atomic with the event that records it (see _prune)
                within(self)
            fresh = []
            for event in events:
                key = (event.tenant_id, event.event_id)
                if key not in self._ids:
                    self._ids.add(key)
                    fresh.append(event)
            recorded_at = timefmt.now()
            edges = {t: self._edges.begin(t, size, partial(self._rebuild, t, size))
                     for t, size in sizes_before(fresh, self._heads).items()}
            nodes: list[NodeRow] = []
            for item in seal(fresh, self._heads):
                self.events.append(msgspec.structs.replace(
                    item.event, seq=item.seq, prev_hash=item.prev_hash, hash=item.hash,
                    recorded_at=recorded_at,
                ))
                grow(item.event.tenant_id, edges[item.event.tenant_id], sealed_leaf(item), nodes)
            for tenant, level, index, digest in nodes:
                row = self._nodes.setdefault((tenant, level), [])
                assert len(row) == index, "the tree's rows are appended in order"
                row.append(digest)
            self._edges.commit(edges)
            return len(fresh)

    # -- the verifiable log ------------------------------------------------------------

    def _rebuild(self, tenant_id: str, size: int) -> RightEdge:
        return RightEdge.rebuild(size, self._tiles(tenant_id))

    def _tiles(self, tenant_id: str) -> TiledHashes:
        def leaves(start: int, end: int) -> list[bytes]:
            pruned = self._pruned.get(tenant_id, [])
            kept = [(i, pruned[i]) for i in range(start, min(end, len(pruned)))]
            chain = [e for e in self.events if e.tenant_id == tenant_id and start < (e.seq or 0) <= end]
            return contiguous(kept + [((e.seq or 0) - 1, leaf_hash(event_canonical(e))) for e in chain], start)

        return TiledHashes(lambda level, start, end: self._nodes.get((tenant_id, level), [])[start:end], leaves)

    def tree_size(self, tenant_id: str) -> int:
        with self._lock:
            return self._heads.get(tenant_id, (0, GENESIS))[0]

    def tree_root(self, tenant_id: str, size: int) -> bytes:
        check_tree_size(tenant_id, size, self.tree_size(tenant_id))
        return RightEdge.rebuild(size, self._tiles(tenant_id)).root()

    def inclusion_proof(self, tenant_id: str, event_id: str, tree_size: int) -> InclusionProof:
        event = self.get(tenant_id, event_id)
        return inclusion(tenant_id, event.seq if event else None, tree_size, self.tree_size(tenant_id),
                         self._tiles(tenant_id))

    def consistency_proof(self, tenant_id: str, first: int, second: int) -> list[bytes]:
        return consistency(tenant_id, first, second, self.tree_size(tenant_id), self._tiles(tenant_id))

    def leaves(self, tenant_id: str, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        with self._lock:
            pruned = list(self._pruned.get(tenant_id, []))
        for index, digest in enumerate(pruned[:end]):
            yield index + 1, digest
        for event in self._tenant(tenant_id):
            if end is not None and (event.seq or 0) > end:
                break
            yield event.seq or 0, leaf_hash(event_canonical(event))

    def add_checkpoint(self, tenant_id: str, tree_size: int, root: bytes, note: str) -> None:
        with self._lock:
            if not any((c.tenant_id, c.tree_size, c.note) == (tenant_id, tree_size, note) for c in self._checkpoints):
                self._checkpoints.append(StoredCheckpoint(tenant_id, tree_size, root, note, timefmt.now()))

    def latest_checkpoint(self, tenant_id: str) -> StoredCheckpoint | None:
        with self._lock:
            mine = [c for c in self._checkpoints if c.tenant_id == tenant_id]
        return max(mine, key=lambda c: (c.tree_size, c.created_at), default=None)

    def _tenant(self, tenant_id: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.tenant_id == tenant_id]

    def query(self, query: Query) -> Page:
        limit = check_limit(query.limit)
        after = decode_cursor(query.after) if query.after else None
        found = [e for e in self._tenant(query.tenant_id) if _matches(e, query)
                 and (after is None or (e.occurred_at, e.seq or 0) < after)]
        found.sort(key=lambda e: (e.occurred_at, e.seq or 0), reverse=True)
        page = found[:limit]
        more = len(found) > limit
        return Page(page, encode_cursor(page[-1].occurred_at, page[-1].seq or 0) if more else None)

    def get(self, tenant_id: str, event_id: str) -> Event | None:
        return next((e for e in self._tenant(tenant_id) if e.event_id == event_id), None)

    def iter_events(self, tenant_id: str, after_seq: int = 0) -> Iterator[Event]:
        return iter([e for e in self._tenant(tenant_id) if (e.seq or 0) > after_seq])

    def heads(self) -> list[ChainHead]:
        with self._lock:
            return [ChainHead(t, s, h) for t, (s, h) in sorted(self._heads.items())]

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None, *,
               incremental: bool = False, sample: int = 0, jobs: int | None = 1) -> VerifyReport:
        """Always the full check: memory holds no remembered position, and full covers the rest."""
        report = VerifyReport()
        tenants = [tenant_id] if tenant_id else sorted(self._heads)
        for tenant in tenants:
            rows = (_stored_row(e) for e in self._tenant(tenant))
            cuts = self._cuts.get(tenant)
            verify_pruned_chain(tenant, rows, self._heads.get(tenant, (0, GENESIS)), report, progress,
                                cuts[-1] if cuts else None)
        return report

    def close(self) -> None:
        return None


def _stored_row(event: Event) -> StoredRow:
    from ._canonical import canonical_value
    from ._chain import SCALAR_FIELDS

    return StoredRow(
        {name: getattr(event, name) for name in SCALAR_FIELDS},
        {name: canonical_value(getattr(event, name)) for name in JSON_FIELDS},
        event.seq or 0, event.prev_hash or GENESIS, event.hash or "",
    )


def _matches(event: Event, query: Query) -> bool:
    if query.action and not patterns.matches(query.action, event.action):
        return False
    for name in ("actor_id", "target_id", "outcome", "request_id", "correlation_id"):
        wanted = getattr(query, name)
        if wanted is not None and getattr(event, name) != wanted:
            return False
    if query.since and event.occurred_at < query.since:
        return False
    return not (query.until and event.occurred_at > query.until)


def assert_audited(log: AuditLog, *, tenant_id: str, action: str, timeout: float = 5.0,
                   **expected: Any) -> Event:
    """Flush, then return the newest stored event matching; fail with what was found instead."""
    if not log.flush(timeout):
        raise AssertionError(f"sealog could not store the events within {timeout}s: {log.stats()}")
    page = log.query(tenant_id, action=action, limit=1000)
    for event in page.events:
        if all(getattr(event, key) == value for key, value in expected.items()):
            return event
    seen = [(e.action, {k: getattr(e, k) for k in expected}) for e in page.events[:10]]
    raise AssertionError(f"no {action!r} event for {tenant_id!r} with {expected}; found {seen}")
