"""Sealing and verification of per-tenant hash chains.

``hash = SHA-256(prev_hash || canonical(event))`` over raw bytes, ``prev_hash`` of a
tenant's first event is 32 zero bytes, and ``canonical`` is the RFC 8785 JSON of
every content field (all fields but seq, prev_hash, hash and recorded_at; nulls
included). Stores keep the JSON columns in canonical form, so verification
re-hashes stored text without re-encoding it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from msgspec.structs import astuple

from ._canonical import SORTED_FIELDS, canonical_event, canonical_row, canonical_value
from ._event import CONTENT_FIELDS, FIELDS, JSON_FIELDS, Event

GENESIS: Final = "0" * 64
SCALAR_FIELDS: Final = tuple(f for f in CONTENT_FIELDS if f not in JSON_FIELDS)
assert FIELDS[: len(SCALAR_FIELDS) + len(JSON_FIELDS)] == (*SCALAR_FIELDS, *JSON_FIELDS)
MAX_PROBLEMS: Final = 1000
"""Verification keeps this many problems in memory; it still counts the rest."""


def link(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


class Sealed(NamedTuple):
    """An event ready to insert: canonical JSON columns and its place in the chain."""

    event: Event
    json: dict[str, bytes]
    seq: int
    prev_hash: str
    hash: str
    canonical: bytes = b""
    """The RFC 8785 bytes the link hashed: the Merkle leaf covers the same bytes."""


def seal(events: Iterable[Event], heads: dict[str, tuple[int, str]]) -> list[Sealed]:
    """Extend each tenant's chain; ``heads`` maps tenant to (seq, hash) and is updated."""
    return list(sealing(events, heads))


def sealing(events: Iterable[Event], heads: dict[str, tuple[int, str]]) -> Iterator[Sealed]:
    """``seal`` one event at a time, for stores that stream rows while the next are hashed."""
    n_scalar = len(SCALAR_FIELDS)
    for event in events:
        values = astuple(event)  # scalars, then the JSON fields (asserted above)
        raw = {name: canonical_value(values[n_scalar + i]) for i, name in enumerate(JSON_FIELDS)}
        ordered = [values[i] for i in _SORTED_AT]
        for i, name in _SORTED_JSON:
            ordered[i] = raw[name]
        seq, prev = heads.get(event.tenant_id, (0, GENESIS))
        canonical = canonical_row(ordered)
        digest = link(prev, canonical)
        heads[event.tenant_id] = (seq + 1, digest)
        yield Sealed(event, raw, seq + 1, prev, digest, canonical)


_SORTED_AT: Final = tuple(FIELDS.index(name) for name in SORTED_FIELDS)
_SORTED_JSON: Final = tuple((SORTED_FIELDS.index(name), name) for name in JSON_FIELDS)


@dataclass(frozen=True)
class Problem:
    tenant_id: str
    seq: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"tenant {self.tenant_id!r} seq {self.seq}: {self.kind}: {self.detail}"


@dataclass
class VerifyReport:
    """The outcome of re-hashing chains: ``ok`` is False as soon as anything is wrong."""

    checked: int = 0
    tenants: int = 0
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    earlier: int = 0
    """Events an earlier verification covered and this incremental one did not re-read."""
    sampled: int = 0
    """Old events re-hashed against their inclusion proofs (``sample``)."""

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def merge(self, other: VerifyReport) -> None:
        """Add another report (one tenant's, from a worker process) to this one."""
        self.checked += other.checked
        self.tenants += other.tenants
        self.earlier += other.earlier
        self.sampled += other.sampled
        self.problem_count += other.problem_count
        self.problems.extend(other.problems[: max(0, MAX_PROBLEMS - len(self.problems))])


class StoredRow(NamedTuple):
    """What verification reads of one stored event, in seq order."""

    scalars: dict[str, Any]
    json: dict[str, bytes]
    seq: int
    prev_hash: str
    hash: str


class CanonicalRow(NamedTuple):
    """The faster form: the store already assembled the canonical bytes (canonical_row)."""

    canonical: bytes
    seq: int
    prev_hash: str
    hash: str


def verify_chain(
    tenant_id: str,
    rows: Iterator[StoredRow] | Iterator[CanonicalRow],
    head: tuple[int, str] | None,
    report: VerifyReport,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream one tenant's rows; report each break by seq. Constant memory."""
    report.tenants += 1
    expected_seq, expected_prev = 1, GENESIS
    last_seq, last_hash = 0, GENESIS
    for row in rows:
        report.checked += 1
        if row.seq != expected_seq:
            what = "missing" if row.seq > expected_seq else "duplicate or out of order"
            report.add(Problem(tenant_id, row.seq, "seq", f"expected {expected_seq} ({what})"))
        if row.prev_hash != expected_prev:
            report.add(
                Problem(tenant_id, row.seq, "prev_hash", "does not match the previous event's hash")
            )
        canonical = row.canonical if isinstance(row, CanonicalRow) else canonical_event(row.scalars, row.json)
        actual = link(row.prev_hash, canonical)
        if actual != row.hash:
            report.add(Problem(tenant_id, row.seq, "hash", "content does not match its hash"))
        expected_seq, expected_prev = row.seq + 1, row.hash
        last_seq, last_hash = row.seq, row.hash
        if progress is not None and report.checked % 10_000 == 0:
            progress(report.checked)
    if head is not None and (last_seq, last_hash) != head:
        report.add(
            Problem(tenant_id, head[0], "head", f"chain head says seq {head[0]}, last row is {last_seq}")
        )
