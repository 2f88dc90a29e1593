"""The narrow interface every store implements, and what stores share."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol, overload, runtime_checkable

from msgspec.structs import astuple

from .. import _patterns as patterns
from .._canonical import SORTED_FIELDS, canonical_event, canonical_row, canonical_value
from .._chain import SCALAR_FIELDS, Sealed, VerifyReport
from .._errors import InvalidQuery, SealogError, StoreUnavailable
from .._event import FIELDS, JSON_FIELDS, Event
from .._merkle import (
    TILE_HEIGHT,
    MissingHashError,
    RightEdge,
    TiledHashes,
    consistency_proof,
    inclusion_proof,
    is_stored_level,
    leaf_hash,
)

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

    def verify(self, tenant_id: str | None = None, progress: ProgressFn | None = None, *,
               incremental: bool = False, sample: int = 0, jobs: int | None = 1) -> VerifyReport:
        """Full by default; ``incremental``: only what is new since the remembered position
        (a store that remembers nothing checks everything); ``sample``: that many old events
        re-hashed against the tree; ``jobs``: tenants verified in that many processes."""
        ...

    def heads(self) -> list[ChainHead]:
        """Every tenant's chain head; its seq is the tenant's event count."""

    def close(self) -> None: ...


class Dialect(NamedTuple):
    """What differs between the SQL stores' searches; the rest of a query is shared."""

    time: str
    """A timestamp parameter (``%s`` or ``%s::timestamptz``)."""
    pattern: Callable[[str], tuple[str, list[Any]]]
    """An action pattern as a condition and its parameters."""
    hint_outcome: bool = False
    """Write ``+outcome = %s`` beside a more selective filter (SQLite: it keeps no statistics)."""


_EQUALS: Final = ("actor_id", "target_id", "outcome", "request_id", "correlation_id")
_SELECTIVE: Final = ("actor_id", "target_id", "request_id", "correlation_id")
MAX_ACTIONS: Final = 50
"""A pattern matching more of a tenant's actions than this is searched as one range (the old plan)."""
MAX_SCANNED: Final = 1_000
"""Distinct actions read while resolving a pattern before giving up on resolving it."""


def resolvable(pattern: str | None) -> str | None:
    """The prefix whose stored actions a pattern is resolved against, None when it is not resolved.

    An exact action is indexed as it is; ``#`` matches every action. Any other pattern becomes the
    tenant's stored actions it matches (``stored_actions``), each then searched by the action index:
    a prefix range plus a matcher on every row (or no prefix at all, ``*.login``) reads most of the
    tenant when the matches are rare (figures in the 007 migrations).
    """
    if not pattern or pattern == "#":
        return None
    prefix, wild = patterns.literal_prefix(pattern)
    return prefix if wild else None


def in_prefix_range(prefix: str, action: str) -> bool:
    """Whether ``action`` sorts inside ``[prefix, prefix + '/')``: every action a pattern with it can match."""
    return not prefix or action < prefix + "/"


def stored_actions(pattern: str, scanned: Iterable[str]) -> list[str] | None:
    """The actions of ``scanned`` (distinct, ascending, from the prefix on) the pattern matches.

    None when resolving does not pay: more than MAX_ACTIONS match, or more than MAX_SCANNED are
    read; the query then keeps the single range search.
    """
    prefix = resolvable(pattern)
    assert prefix is not None
    found: list[str] = []
    for count, action in enumerate(scanned):
        if count >= MAX_SCANNED:
            return None
        if not in_prefix_range(prefix, action):
            break
        if patterns.matches(pattern, action):
            found.append(action)
            if len(found) > MAX_ACTIONS:
                return None
    return found


def where(query: Query, dialect: Dialect, *, exact: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause of a search, with ``%s`` placeholders, and its parameters.

    ``exact``: ``query.action`` is a stored action (a resolved pattern), not a pattern.
    Every piece is a fixed string: values only ever travel as parameters.
    """
    conditions: list[str] = ["tenant_id = %s"]
    params: list[Any] = [query.tenant_id]
    wild = False
    if query.action:
        prefix, wild = (query.action, False) if exact else patterns.literal_prefix(query.action)
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
    selective = (bool(query.action) and not wild) or any(getattr(query, column) is not None for column in _SELECTIVE)
    for column in _EQUALS:
        value = getattr(query, column)
        if value is not None:
            # '+outcome' keeps the outcome index (4 values) from taking over from a selective one.
            hint = "+" if column == "outcome" and dialect.hint_outcome and selective else ""
            conditions.append(f"{hint}{column} = %s")
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


# -- the verifiable log: each tenant's RFC 6962 tree -----------------------------------------
#
# Leaf i is the event with seq i + 1; leaf hash = SHA-256(0x00 || canonical(event)), the bytes the
# chain hashes. Stores keep, append-only and written in the events' transaction, one row per
# completed perfect subtree at the levels 8, 16, 24, ... (see ``_merkle``); leaf hashes are
# re-hashed from the events. A store object caches each tenant's right edge for its writes and
# rebuilds it from those rows (a few range reads) whenever the tenant's head moved elsewhere.

NodeRow = tuple[str, int, int, bytes]
"""(tenant_id, level, index, hash) of a stored subtree."""


class NotInLog(SealogError, LookupError):
    """The event (or tree size) asked for is not in the tenant's log."""


class StoredCheckpoint(NamedTuple):
    """A signed checkpoint as the store keeps it; ``note`` is the C2SP signed note, verbatim."""

    tenant_id: str
    tree_size: int
    root: bytes
    note: str
    created_at: str


class InclusionProof(NamedTuple):
    leaf_index: int
    tree_size: int
    hashes: list[bytes]


def event_canonical(event: Event) -> bytes:
    """The canonical bytes of a stored event: what its chain link and its leaf hash cover."""
    return canonical_event({name: getattr(event, name) for name in SCALAR_FIELDS},
                           {name: canonical_value(getattr(event, name)) for name in JSON_FIELDS})


def sealed_leaf(sealed: Sealed) -> bytes:
    """The leaf hash of an event being sealed, from the same bytes ``sealing`` hashed."""
    if sealed.canonical:
        return leaf_hash(sealed.canonical)
    values = astuple(sealed.event)
    ordered = [values[i] for i in _SORTED_AT]
    json = sealed.json
    for i, name in _SORTED_JSON:
        ordered[i] = json[name]
    return leaf_hash(canonical_row(ordered))


_SORTED_AT: Final = tuple(FIELDS.index(name) for name in SORTED_FIELDS)
_SORTED_JSON: Final = tuple((SORTED_FIELDS.index(name), name) for name in JSON_FIELDS)


def contiguous(rows: Iterable[tuple[int, bytes]], start: int) -> list[bytes]:
    """The values of ``(position, value)`` rows from ``start`` on, up to the first gap."""
    found: list[bytes] = []
    for position, value in rows:
        if position != start + len(found):
            break
        found.append(bytes(value))
    return found


def covered_by_nodes(max_level8_index: int | None) -> int:
    """How many leaves the stored level-8 rows cover (0 when there is none)."""
    return 0 if max_level8_index is None else (max_level8_index + 1) << TILE_HEIGHT


class Edges:
    """Each tenant's right edge as this store object last wrote it (a cache: rows are the truth)."""

    def __init__(self) -> None:
        self._edges: dict[str, RightEdge] = {}
        self._lock = threading.Lock()

    def begin(self, tenant_id: str, size: int, rebuild: Callable[[], RightEdge]) -> RightEdge:
        """A private copy of the tenant's edge at ``size`` leaves, rebuilt when the cache is stale."""
        with self._lock:
            cached = self._edges.get(tenant_id)
        if cached is None or cached.size != size:
            cached = rebuild()
            if cached.size != size:
                raise StoreUnavailable(f"tenant {tenant_id!r}: the tree has {cached.size} leaves, the chain {size}")
        return RightEdge.from_bytes(cached.to_bytes())

    def commit(self, edges: dict[str, RightEdge]) -> None:
        """Keep the edges of a committed transaction."""
        with self._lock:
            self._edges.update(edges)


def grow(tenant_id: str, edge: RightEdge, leaf: bytes, rows: list[NodeRow]) -> None:
    """Append a leaf; add the stored-level subtrees it completed to ``rows``."""
    for level, index, digest in edge.append(leaf):
        if is_stored_level(level):
            rows.append((tenant_id, level, index, digest))


def rebuild_edge(tenant_id: str, size: int, covered: int, tiles: TiledHashes,
                 leaves: Callable[[int, int], Sequence[bytes]], where: object) -> tuple[RightEdge, list[NodeRow]]:
    """The edge of a tenant's tree at ``size`` leaves from its stored rows, and any rows to add.

    Rows covering more leaves than the chain holds mean events were cut off (and the head row
    fixed to match): extending the tree would hide it, so the tenant's writes stop (an outage).
    A chain written before the tree existed (an upgraded store) gets its rows once, here.
    """
    if covered > size:
        raise StoreUnavailable(f"{where}: tenant {tenant_id!r}: the stored tree covers {covered} events but the "
                               f"chain has {size}: events were removed; refusing to extend the chain")
    try:
        return RightEdge.rebuild(size, tiles), []
    except MissingHashError:
        pass
    log.warning("sealog: %s: tenant %r: building the Merkle tree of its %d existing events", where, tenant_id, size)
    edge, rows = RightEdge(), list[NodeRow]()
    chunk = 1 << TILE_HEIGHT << 4
    for start in range(0, size, chunk):
        found = leaves(start, min(size, start + chunk))
        if len(found) < min(size, start + chunk) - start:
            raise StoreUnavailable(f"{where}: tenant {tenant_id!r}: event seq {start + len(found) + 1} is missing")
        for leaf in found:
            grow(tenant_id, edge, leaf, rows)
    return edge, rows


def check_tree_size(tenant_id: str, size: int, head: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidQuery(f"tree size {size!r} is not a whole number >= 0")
    if size > head:
        raise InvalidQuery(f"tenant {tenant_id!r} has {head} events, not {size}")
    return size


def inclusion(tenant_id: str, seq: int | None, tree_size: int, head: int, tiles: TiledHashes) -> InclusionProof:
    """The inclusion proof of the event with ``seq`` (None: unknown) in the tree of ``tree_size`` leaves."""
    check_tree_size(tenant_id, tree_size, head)
    if seq is None:
        raise NotInLog(f"tenant {tenant_id!r} has no such event")
    if seq > tree_size:
        raise NotInLog(f"tenant {tenant_id!r}: event seq {seq} is not in the tree of size {tree_size}")
    return InclusionProof(seq - 1, tree_size, inclusion_proof(seq - 1, tree_size, tiles))


def consistency(tenant_id: str, first: int, second: int, head: int, tiles: TiledHashes) -> list[bytes]:
    check_tree_size(tenant_id, second, head)
    check_tree_size(tenant_id, first, second)
    return consistency_proof(first, second, tiles)


@runtime_checkable
class TreeStore(Store, Protocol):
    """A Store that also keeps each tenant's Merkle tree and signed checkpoints (all of sealog's do)."""

    def tree_size(self, tenant_id: str) -> int:
        """The tenant's event count: the size of its tree now."""

    def tree_root(self, tenant_id: str, size: int) -> bytes:
        """The root of the tree of the tenant's first ``size`` events, from the stored rows."""

    def inclusion_proof(self, tenant_id: str, event_id: str, tree_size: int) -> InclusionProof:
        """RFC 9162 inclusion proof of an event; NotInLog when the event is not in that tree."""

    def consistency_proof(self, tenant_id: str, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``first`` events to the tree of ``second``."""

    def leaves(self, tenant_id: str, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(seq, leaf hash) re-hashed from the events themselves, in seq order, streamed: what audits trust."""

    def add_checkpoint(self, tenant_id: str, tree_size: int, root: bytes, note: str) -> None:
        """Keep a signed checkpoint (append-only; the same note twice is kept once)."""

    def latest_checkpoint(self, tenant_id: str) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree signed so far (the newest of that size)."""


def sizes_before(events: Iterable[Event], heads: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Each written tenant's tree size before the batch (its head's seq, 0 for a new chain)."""
    return {e.tenant_id: heads[e.tenant_id][0] if e.tenant_id in heads else 0 for e in events}
