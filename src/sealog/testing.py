"""For users' own tests: an in-memory store and an assertion that their code audited.

    log = AuditLog(store=MemoryStore(), spool_dir=tmp_path)
    ...
    log.flush()
    assert_audited(log, tenant_id="acme", action="auth.login", actor_id="u-1")
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from . import _patterns as patterns
from . import _timefmt as timefmt
from ._chain import GENESIS, StoredRow, VerifyReport, seal, verify_chain
from ._event import JSON_FIELDS, Event
from ._log import AuditLog
from .stores.base import (
    ChainHead,
    Page,
    ProgressFn,
    Query,
    check_limit,
    decode_cursor,
    encode_cursor,
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

    def migrate(self) -> None:
        return None

    def write(self, events: Sequence[Event]) -> int:
        with self._lock:
            fresh = []
            for event in events:
                key = (event.tenant_id, event.event_id)
                if key not in self._ids:
                    self._ids.add(key)
                    fresh.append(event)
            recorded_at = timefmt.now()
            for item in seal(fresh, self._heads):
                self.events.append(msgspec.structs.replace(
                    item.event, seq=item.seq, prev_hash=item.prev_hash, hash=item.hash,
                    recorded_at=recorded_at,
                ))
            return len(fresh)

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

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None) -> VerifyReport:
        report = VerifyReport()
        tenants = [tenant_id] if tenant_id else sorted(self._heads)
        for tenant in tenants:
            rows = (_stored_row(e) for e in self._tenant(tenant))
            verify_chain(tenant, rows, self._heads.get(tenant, (0, GENESIS)), report, progress)
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
