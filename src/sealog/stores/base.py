"""The narrow interface every store implements, and what stores share."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from .._chain import VerifyReport
from .._errors import InvalidQuery
from .._event import Event

ProgressFn = Callable[[int], None]


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


class Page(NamedTuple):
    """Newest first; ``next`` is the cursor for the following page, or None at the end."""

    events: list[Event]
    next: str | None


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
