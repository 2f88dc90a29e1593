"""The narrow interface every store implements, and what stores share."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol, overload, runtime_checkable

from .. import _patterns as patterns
from .._chain import VerifyReport
from .._errors import InvalidQuery, StoreUnavailable
from .._event import Event

ProgressFn = Callable[[int], None]
API_KEYS_TABLE = ("CREATE TABLE IF NOT EXISTS sealog_api_keys (key_id TEXT PRIMARY KEY, "
                  "key_hash TEXT NOT NULL UNIQUE, tenant_id TEXT, name TEXT NOT NULL, "
                  "created_at TEXT NOT NULL, revoked_at TEXT)")
"""The service's API keys live beside the events; `init --create-roles` makes it for the writer."""
log = logging.getLogger("sealog")


@dataclass(frozen=True)
class Query:
    """A tenant-scoped search; ``action`` is a pattern, ``since``/``until`` stored timestamps."""

    tenant_id: str
    action: str | None = None
    actor_id: str | None = None
    target_id: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    limit: int = 100
    after: str | None = None


@dataclass(frozen=True)
class Page(Sequence[Event]):
    """One page of events, newest first: iterate it, ``len`` it, index it.

    ``next`` is the cursor for the following page (pass it as ``after``), None at the end.
    """

    events: list[Event]
    next: str | None

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self.events[index]


class ChainHead(NamedTuple):
    tenant_id: str
    seq: int
    hash: str


@runtime_checkable
class Store(Protocol):
    """Seal-and-insert plus reads. Implementations raise StoreUnavailable for outages."""

    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema; idempotent and safe from several processes."""

    def write(self, events: Sequence[Event]) -> int:
        """Seal and insert in one transaction, skipping known event_ids; returns rows added."""

    def query(self, query: Query) -> Page: ...

    def get(self, tenant_id: str, event_id: str) -> Event | None: ...

    def iter_events(self, tenant_id: str, after_seq: int = 0) -> Iterator[Event]:
        """A tenant's events in chain order, streamed."""

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None) -> VerifyReport: ...

    def heads(self) -> list[ChainHead]:
        """Every tenant's chain head; its seq is the tenant's event count."""

    def close(self) -> None: ...


class Dialect(NamedTuple):
    """What differs between the SQL stores' searches; the rest of a query is shared."""

    time: str
    """A timestamp parameter (``%s`` or ``%s::timestamptz``)."""
    pattern: Callable[[str], tuple[str, list[Any]]]
    """An action pattern as a condition and its parameters."""


_EQUALS: Final = ("actor_id", "target_id", "outcome", "request_id", "correlation_id")


def where(query: Query, dialect: Dialect) -> tuple[str, list[Any]]:
    """The WHERE clause of a search, with ``%s`` placeholders, and its parameters.

    Every piece is a fixed string: values only ever travel as parameters.
    """
    conditions: list[str] = ["tenant_id = %s"]
    params: list[Any] = [query.tenant_id]
    if query.action:
        prefix, wild = patterns.literal_prefix(query.action)
        if not wild:
            conditions.append("action = %s")
            params.append(prefix)
        else:
            if prefix:  # an indexable range before the pattern itself
                conditions.append("(action = %s OR (action > %s AND action < %s))")
                params += [prefix, prefix + ".", prefix + "/"]
            condition, values = dialect.pattern(query.action)
            conditions.append(condition)
            params += values
    for column in _EQUALS:
        value = getattr(query, column)
        if value is not None:
            conditions.append(f"{column} = %s")
            params.append(value)
    if query.since:
        conditions.append(f"occurred_at >= {dialect.time}")
        params.append(query.since)
    if query.until:
        conditions.append(f"occurred_at <= {dialect.time}")
        params.append(query.until)
    if query.after:
        occurred_at, seq = decode_cursor(query.after)
        conditions.append(f"(occurred_at, seq) < ({dialect.time}, %s)")
        params += [occurred_at, seq]
    return " AND ".join(conditions), params


def page_of(rows: list[Event], limit: int) -> Page:
    """A page from ``limit + 1`` rows read newest first: the extra row says there is more."""
    events = rows[:limit]
    last = events[-1] if len(rows) > limit else None
    return Page(events, encode_cursor(last.occurred_at, last.seq or 0) if last else None)


def encode_cursor(occurred_at: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at}|{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        occurred_at, seq = text.split("|")
        return occurred_at, int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery(f"cursor {cursor[:40]!r} is not one this store issued") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= 10_000:
        raise InvalidQuery(f"limit {limit} is outside 1..10000")
    return limit


def checked_head(tenant_id: str, head: tuple[int, str] | None, last: tuple[int, str] | None,
                 where: object) -> tuple[int, str] | None:
    """The head to extend, from the head row and the tenant's last stored event.

    A missing head row is rebuilt from the last event (never a second chain from seq 1).
    A head row that disagrees with the last event means events were removed or the row was
    edited: extending the chain would hide it, so the tenant's writes stop, loudly (an outage).
    """
    if head is None or last is None:
        if head is not None and head[0] != 0:
            raise StoreUnavailable(f"{where}: tenant {tenant_id!r}: the chain head says seq {head[0]} but no "
                                   "event is stored: refusing to extend a chain whose events were removed")
        if last is not None:
            log.warning("sealog: %s: tenant %r had no chain head; continuing from its last event, seq %d",
                        where, tenant_id, last[0])
        return tuple(last) if last is not None else None  # type: ignore[return-value]
    if tuple(head) != tuple(last):
        raise StoreUnavailable(f"{where}: tenant {tenant_id!r}: the chain head (seq {head[0]}) does not match "
                               f"the last stored event (seq {last[0]}): refusing to extend the chain; run "
                               "`sealog verify` and look at what changed")
    return tuple(head)  # type: ignore[return-value]
