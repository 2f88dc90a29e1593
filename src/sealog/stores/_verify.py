"""Verification at scale: incremental, sampled, tenants in parallel processes, rows hashed in a tight loop.

Full (``store.verify()``, ``sealog verify --full``): every stored event of every tenant is re-hashed
and linked, from genesis or from the tenant's latest prune cut, as it always was.

Incremental (``sealog verify``, ``store.verify(incremental=True)``): the store keeps, append-only
(table ``verified``), per tenant the last position a verification found sound: (seq, hash), the
tree size and root there, the prune cut then, and, when a signing key is configured, all of it as a
signed note. The next run re-hashes only the events after seq, links the first of them to that
hash, checks that the event at seq still carries it, that the stored tree's first ``tree_size``
leaves still give the remembered root, that the new events' leaves extend it to the stored tree's
current root, and a consistency proof between the two roots. What it cannot see is a change to an
old event made together with its hash and every later one's and the tree rows: ``--full``, a
checkpoint kept elsewhere (``--checkpoint``) and ``--sample N`` (N random old events re-hashed
against their inclusion proofs in the verified tree) find it.

A remembered position is only trusted when its note verifies with the configured key; without a key,
unsigned positions are used (an attacker who can write them can as well rewrite the events).

Speed: SQLite builds each row's canonical JSON in SQL (``json_object`` escapes strings exactly as
RFC 8785 does; checked once per process against msgspec, else the Python path), so Python handles
six values a row instead of 26; PostgreSQL re-canonicalises its jsonb columns in Python. Tenants
are verified in worker processes (``jobs``), each in its own read snapshot.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import multiprocessing
import os
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import msgspec

from .. import _timefmt as timefmt
from .._canonical import SORTED_FIELDS, canonical_row, number
from .._chain import GENESIS, Problem, VerifyReport
from .._errors import SealogError, StoreUnavailable
from .._merkle import (
    TILE_HEIGHT,
    ProofError,
    RightEdge,
    TiledHashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from .._note import NoteError, Signer, Verifier, open_note, sign
from .._prune import _PRUNE_MARK, PRUNE_ACTION, Cut, _records

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("sealog")

Row = tuple[int, Any, Any, Any, Any, Any]
"""(seq, head, latency_ms, tail, prev_hash, hash): canonical = head + number(latency) + tail,
or ``head`` itself when ``tail`` is None (a store that assembled the bytes in Python)."""
AUTO_MIN_EVENTS: Final = 20_000
"""``jobs=None`` starts worker processes only for a store at least this big (a process costs ~50 ms)."""
_TICK: Final = 10_000
_RECORDS: Final = 20
"""How many of a tenant's newest remembered positions are looked at for one the key signed."""
_NOTE_HEADER: Final = "sealog verified position"
_JSON: Final = frozenset(("after", "before", "metadata", "proof"))


class Verified(NamedTuple):
    """A remembered verified position: the tenant's chain up to ``seq`` was found sound at ``verified_at``."""

    tenant_id: str
    seq: int
    hash: str
    tree_size: int
    root: bytes
    cut_seq: int
    verified_at: str
    note: str | None = None


def note_body(record: Verified) -> str:
    """What a signed position says; the first lines are compared with its row when it is read back."""
    root = base64.b64encode(record.root).decode("ascii")
    return (f"{_NOTE_HEADER}\ntenant {record.tenant_id}\nseq {record.seq} {record.hash}\n"
            f"tree {record.tree_size} {root}\ncut {record.cut_seq}\nat {record.verified_at}\n")


@dataclass(frozen=True)
class Options:
    incremental: bool = False
    sample: int = 0
    verifier: str | None = None
    """The verifier key's text: remembered positions count only with its signature."""
    remembered: bool = True
    """Whether the store has the ``verified`` table (an older schema has not: every run is full)."""


class Outcome(NamedTuple):
    report: VerifyReport
    record: Verified | None
    """The position to remember (None: the tenant had problems, or nothing is new)."""


# -- what a store gives verification ------------------------------------------------------------


class Snapshot(Protocol):
    """One read transaction of a store."""

    def head(self, tenant_id: str) -> tuple[int, str] | None: ...

    def cut(self, tenant_id: str) -> Cut | None: ...

    def records(self, tenant_id: str) -> list[Verified]:
        """The tenant's newest remembered positions, newest first."""

    def rows(self, tenant_id: str, after_seq: int, *, fast: bool = True) -> Iterator[Row]: ...

    def rows_at(self, tenant_id: str, seqs: Sequence[int]) -> list[Row]: ...

    def tiles(self, tenant_id: str) -> TiledHashes: ...

    def outage(self, exc: Exception) -> SealogError | None:
        """The driver's error as StoreUnavailable (None: not the driver's)."""

    def close(self) -> None: ...


class Source(Protocol):
    """A picklable handle on a store: worker processes open their own snapshots from it."""

    def tenants(self, tenant_id: str | None) -> tuple[list[str], int, bool]:
        """(tenants to verify, events in the store, whether it has the ``verified`` table)."""

    def snapshot(self) -> Snapshot: ...

    def remember(self, records: list[Verified]) -> None: ...


class FastPathFailed(Exception):
    """The SQL-built canonical bytes could not be read (a value SQL JSON cannot hold): use the Python path."""


# -- one tenant --------------------------------------------------------------------------------


def verify_tenant(snap: Snapshot, tenant: str, opts: Options, tick: Callable[[int], None]) -> Outcome:
    try:
        try:
            return _verify_tenant(snap, tenant, opts, tick, fast=True)
        except FastPathFailed:
            return _verify_tenant(snap, tenant, opts, tick, fast=False)
    except Exception as exc:
        outage = snap.outage(exc)
        if outage is None:
            raise
        raise outage from exc


def _verify_tenant(snap: Snapshot, tenant: str, opts: Options, tick: Callable[[int], None],
                   *, fast: bool) -> Outcome:
    report = VerifyReport(tenants=1)
    head, cut = snap.head(tenant), snap.cut(tenant)
    cut_seq = cut.seq if cut else 0
    rec = _trusted(snap.records(tenant), opts.verifier, report, tenant) if opts.remembered else None
    edge: RightEdge | None = None
    attest = cut
    tree_rec = rec  # the remembered tree state the current tree must extend
    resume = opts.incremental and rec is not None and rec.seq > cut_seq
    if resume:
        assert rec is not None
        try:
            edge = RightEdge.rebuild(rec.tree_size, snap.tiles(tenant))
            if edge.root() != rec.root:  # an old event or the tree changed: re-check all to name what
                report.add(Problem(tenant, rec.tree_size, "tree", f"the stored Merkle tree of the first "
                                   f"{rec.tree_size} events no longer gives the root verified {rec.verified_at}"))
                edge, tree_rec, resume = None, None, False
        except (SealogError, LookupError) as exc:
            report.add(Problem(tenant, rec.tree_size, "tree", f"the stored Merkle tree is incomplete: {exc}"))
            edge, tree_rec, resume = None, None, False
    if resume:
        assert rec is not None
        anchor, first = (rec.seq, rec.hash), f"does not match the hash of seq {rec.seq} verified {rec.verified_at}"
        below = None
        if cut is not None and cut.seq == rec.cut_seq:
            attest = None  # that cut's prune event was verified with the events before
    elif opts.incremental and rec is not None and tree_rec is not None:  # pruned past the position: from the cut
        assert cut is not None
        anchor, first, below = (cut.seq, cut.hash), "does not match the prune cut's hash", None
    else:
        anchor = (cut.seq, cut.hash) if cut else (0, GENESIS)
        first = "does not match the prune cut's hash" if cut else "does not match the previous event's hash"
        below = cut
    report.earlier = anchor[0] - cut_seq if below is None else 0
    last_seq, last_hash, attested = _check(tenant, snap.rows(tenant, anchor[0] if below is None else 0, fast=fast),
                                           report, anchor, first, below, attest, edge, tick)
    chain_ok = report.ok
    if attest is not None and not attested:
        report.add(Problem(tenant, attest.seq, "prune", f"the prune cut at seq {attest.seq} is recorded by no "
                                                        f"{PRUNE_ACTION} event in the chain"))
    if head is not None and (last_seq, last_hash) != tuple(head):
        detail = (f"chain head says seq {head[0]}, last row is {last_seq}" if head[0] != last_seq
                  else f"the chain head's hash is not the one of event {last_seq}")
        report.add(Problem(tenant, head[0], "head", detail))
    if rec is not None and rec.seq > cut_seq:
        _check_position(snap, tenant, rec, report)
    root = _tree_checks(snap, tenant, tree_rec, last_seq, edge if chain_ok else None, report, chain_ok, opts.sample)
    if opts.sample and root is not None:
        high = rec.seq if resume and rec is not None else last_seq
        _sample(snap, tenant, opts.sample, cut_seq, min(high, last_seq), last_seq, root, report)
    record = None
    if report.ok and root is not None and last_seq > 0 and (
            rec is None or (rec.seq, rec.cut_seq) != (last_seq, cut_seq)):
        record = Verified(tenant, last_seq, last_hash, last_seq, root, cut_seq, timefmt.now())
    return Outcome(report, record)


def _check(tenant: str, rows: Iterable[Row], report: VerifyReport, anchor: tuple[int, str], first: str,
           below: Cut | None, attest: Cut | None, edge: RightEdge | None,
           tick: Callable[[int], None]) -> tuple[int, str, bool]:
    """Link and re-hash the rows after ``anchor``; problems go to ``report``. Returns the last (seq, hash)."""
    state = _State(tenant, report, anchor, first, below, attest)
    if edge is None and attest is None:
        _plain(rows, state, tick)
    else:
        _extended(rows, state, tick, edge)
    report.checked += state.checked
    return state.last_seq, state.last_hash, state.attested


@dataclass
class _State:
    tenant: str
    report: VerifyReport
    anchor: tuple[int, str]
    first: str
    below: Cut | None
    attest: Cut | None
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    attested: bool = False

    def __post_init__(self) -> None:
        self.last_seq, self.last_hash = self.anchor
        self.attested = self.attest is None

    def bad(self, seq: int, prev_hash: Any, canonical: bytes | None, digest: Any, expected_seq: int,
            expected_prev: str) -> bool:
        """Report what is wrong with a row that failed the quick test; False: skip it (below the cut)."""
        tenant, add = self.tenant, self.report.add
        if self.below is not None and seq <= self.below.seq:
            add(Problem(tenant, seq, "prune", f"still stored below the prune cut at seq {self.below.seq}"))
            return False
        if seq != expected_seq:
            what = "missing" if seq > expected_seq else "duplicate or out of order"
            add(Problem(tenant, seq, "seq", f"expected {expected_seq} ({what})"))
        if prev_hash != expected_prev:
            detail = self.first if expected_seq == self.anchor[0] + 1 else "does not match the previous event's hash"
            add(Problem(tenant, seq, "prev_hash", detail))
        if not _links(prev_hash, canonical, digest):
            add(Problem(tenant, seq, "hash", "content does not match its hash"))
        return True


def _plain(rows: Iterable[Row], state: _State, tick: Callable[[int], None]) -> None:
    """The hot loop: per row two concatenations, one SHA-256 and three compares."""
    sha256, num = hashlib.sha256, number
    expected_seq, expected_prev = state.anchor[0] + 1, state.anchor[1]
    prev = _unhex(expected_prev)  # the previous hash as bytes: carried over, never parsed again
    countdown, ticks = _TICK, 0
    for seq, head, latency, tail, prev_hash, digest in rows:
        countdown -= 1
        if not countdown:
            tick(_TICK)
            countdown, ticks = _TICK, ticks + 1
        try:
            canonical = head if tail is None else head + (b"null" if latency is None else num(latency)) + tail
            raw = sha256(prev + canonical).digest()
            good = seq == expected_seq and prev_hash == expected_prev and raw.hex() == digest
        except (ValueError, TypeError, OverflowError):
            canonical, good = None, False
        if good:
            prev = raw
        elif state.bad(seq, prev_hash, canonical, digest, expected_seq, expected_prev):
            prev = _unhex(digest)
        else:
            continue
        expected_seq, expected_prev = seq + 1, digest
    tick(_TICK - countdown)
    state.checked = ticks * _TICK + _TICK - countdown
    state.last_seq, state.last_hash = expected_seq - 1, expected_prev


def _extended(rows: Iterable[Row], state: _State, tick: Callable[[int], None], edge: RightEdge | None) -> None:
    """The loop that also grows the tree's edge and looks for the prune event that records the cut."""
    expected_seq, expected_prev = state.anchor[0] + 1, state.anchor[1]
    attest = state.attest
    for row in rows:
        state.checked += 1
        if not state.checked % _TICK:
            tick(_TICK)
        seq, _, _, _, prev_hash, digest = row
        canonical = _canonical_of(row)
        good = seq == expected_seq and prev_hash == expected_prev and _links(prev_hash, canonical, digest)
        if not good and not state.bad(seq, prev_hash, canonical, digest, expected_seq, expected_prev):
            continue
        if edge is not None and canonical is not None:
            edge.append(leaf_hash(canonical))
        if attest is not None and canonical is not None and _PRUNE_MARK in canonical and _records(canonical, attest):
            state.attested, attest = True, None
        expected_seq, expected_prev = seq + 1, digest
    tick(state.checked % _TICK)
    state.last_seq, state.last_hash = expected_seq - 1, expected_prev


def _unhex(digest: Any) -> bytes:
    try:
        return bytes.fromhex(digest)
    except (ValueError, TypeError):
        return b""  # not a hash: the next row cannot link to it, and is reported


def _links(prev_hash: Any, canonical: bytes | None, digest: Any) -> bool:
    try:
        return canonical is not None and hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest() == digest
    except (ValueError, TypeError):
        return False


def _trusted(records: list[Verified], verifier: str | None, report: VerifyReport, tenant: str) -> Verified | None:
    """The newest remembered position to build on: with a key, the newest one it signed."""
    if verifier is None:
        return records[0] if records else None
    key = Verifier.from_text(verifier)
    for rec in records:
        if rec.note is None:
            continue  # remembered without a key: not evidence
        try:
            body = open_note(rec.note, [key])
        except NoteError as exc:
            report.add(Problem(tenant, rec.seq, "verified", f"the position remembered {rec.verified_at} carries "
                                                            f"no valid signature of the configured key: {exc}"))
            continue
        if body.split("\n")[:5] != note_body(rec).split("\n")[:5]:
            report.add(Problem(tenant, rec.seq, "verified", f"the position remembered {rec.verified_at} differs "
                                                            "from what its signed note says"))
            continue
        return rec
    return None


def _check_position(snap: Snapshot, tenant: str, rec: Verified, report: VerifyReport) -> None:
    """The event at the remembered position must still be there with the hash verified then."""
    found = snap.rows_at(tenant, [rec.seq])
    if not found:
        report.add(Problem(tenant, rec.seq, "verified", f"the event verified {rec.verified_at} is gone: "
                                                        "events were cut off"))
    elif found[0][5] != rec.hash:
        report.add(Problem(tenant, rec.seq, "verified", f"its hash is not the one verified {rec.verified_at}: "
                                                        "the chain was re-hashed"))


def _tree_checks(snap: Snapshot, tenant: str, rec: Verified | None, size: int, edge: RightEdge | None,
                 report: VerifyReport, chain_ok: bool, sample: int) -> bytes | None:
    """The stored tree's root at ``size``, checked against the new events' leaves and the remembered root."""
    try:
        tiles = snap.tiles(tenant)
        root = RightEdge.rebuild(size, tiles).root()
    except (SealogError, LookupError) as exc:
        if chain_ok and (rec is not None or sample):  # a bare full verify checks the chains only, as it did
            report.add(Problem(tenant, size, "tree", f"the stored Merkle tree cannot give the root of {size} "
                                                     f"events: {exc}"))
        return None
    if not chain_ok:
        return root
    if edge is not None and rec is not None and edge.root() != root:
        report.add(Problem(tenant, size, "tree", f"events {rec.seq + 1}..{size} do not give the stored Merkle "
                                                 "tree's root: the tree rows or the events were changed"))
    if rec is not None and rec.tree_size <= size:
        try:
            proof = consistency_proof(rec.tree_size, size, tiles)
            verify_consistency(rec.tree_size, size, proof, rec.root, root)
        except (SealogError, LookupError, ValueError) as exc:
            report.add(Problem(tenant, size, "consistency", f"the tree of {size} events is not an extension of "
                                                            f"the one of {rec.tree_size} verified {rec.verified_at}: "
                                                            f"{exc}"))
    return root


def _sample(snap: Snapshot, tenant: str, count: int, low: int, high: int, size: int, root: bytes,
            report: VerifyReport) -> None:
    """Re-hash ``count`` random events of seq (low, high] from their columns; prove each in the tree.

    Inside a 256-event tile the proof's sibling hashes are re-hashed from the tile's other events, so
    one changed event fails its neighbours' proofs too: a failed proof re-checks its whole tile, and
    names the events whose content no longer matches their hash, or else the tile (an event in it was
    changed and the chain re-hashed after it: only the tree still holds the original).
    """
    if high <= low:
        return
    seqs = sorted(random.SystemRandom().sample(range(low + 1, high + 1), min(count, high - low)))
    found = {row[0]: row for row in snap.rows_at(tenant, seqs)}
    tiles = snap.tiles(tenant)
    reported = {p.seq for p in report.problems if p.kind == "hash" and p.tenant_id == tenant}
    examined: set[int] = set()
    for seq in seqs:
        report.sampled += 1
        row = found.get(seq)
        if row is None:
            report.add(Problem(tenant, seq, "sample", "the event is missing"))
            continue
        canonical = _canonical_of(row)
        if not _links(row[4], canonical, row[5]):
            if seq not in reported:
                reported.add(seq)
                report.add(Problem(tenant, seq, "hash", "content does not match its hash"))
            continue
        assert canonical is not None
        try:
            verify_inclusion(leaf_hash(canonical), seq - 1, size, inclusion_proof(seq - 1, size, tiles), root)
            continue
        except (ProofError, LookupError, SealogError):
            pass
        tile = (seq - 1) >> TILE_HEIGHT
        if tile in examined:
            continue
        examined.add(tile)
        first, last = (tile << TILE_HEIGHT) + 1, min(size, (tile + 1) << TILE_HEIGHT)
        rows = snap.rows_at(tenant, range(first, last + 1))
        broken = [r[0] for r in rows if not _links(r[4], _canonical_of(r), r[5])]
        for bad in broken:
            if bad not in reported:
                reported.add(bad)
                report.add(Problem(tenant, bad, "hash", "content does not match its hash"))
        if not broken:
            report.add(Problem(tenant, first, "sample", f"events {first}..{last} no longer give the Merkle tree of "
                                                        f"{size} events: one was changed and the chain re-hashed"))


def _canonical_of(row: Row) -> bytes | None:
    _, head, latency, tail, _, _ = row
    try:
        return head if tail is None else head + (b"null" if latency is None else number(latency)) + tail  # type: ignore[no-any-return]
    except (ValueError, TypeError, OverflowError):
        return None


# -- a whole store ---------------------------------------------------------------------------------


def source_of(store: object) -> Source | None:
    """The verification source of one of sealog's SQL stores (None: another kind of store)."""
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteSource(str(store.path))
    if isinstance(store, PostgresStore):
        return PostgresSource(store.url, store._timeout)
    return None


def run(source: Source, tenant_id: str | None = None, progress: Callable[[int], None] | None = None, *,
        incremental: bool = False, sample: int = 0, jobs: int | None = 1, signer: Signer | None = None,
        remember: bool | None = None) -> VerifyReport:
    """Verify the store's tenants (all, or one); remember the sound positions (default: when incremental)."""
    if sample < 0:
        raise ValueError(f"sample must be >= 0, not {sample}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, not {jobs}")
    tenants, events, has_table = source.tenants(tenant_id)
    opts = Options(incremental, sample, signer.verifier().to_text() if signer else None, has_table)
    workers = _workers(jobs, len(tenants), events)
    outcomes = (_parallel(source, tenants, opts, workers, progress) if workers > 1
                else _serial(source, tenants, opts, progress))
    report = VerifyReport()
    records = []
    for outcome in outcomes:
        report.merge(outcome.report)
        if outcome.record is not None:
            records.append(outcome.record)
    if (incremental if remember is None else remember) and records:
        if not has_table:
            log.warning("sealog: this store's schema predates incremental verification: run `sealog init` to "
                        "upgrade it; every verify is a full one until then")
        else:
            if signer is not None:
                records = [r._replace(note=sign(note_body(r), signer)) for r in records]
            try:
                source.remember(records)
            except SealogError as exc:
                log.warning("sealog: verify could not remember the verified positions (the next run re-checks "
                            "them): %s", exc)
    return report


def _workers(jobs: int | None, tenants: int, events: int) -> int:
    if jobs is None:
        return min(os.cpu_count() or 1, tenants) if tenants > 1 and events >= AUTO_MIN_EVENTS else 1
    return max(1, min(jobs, tenants))


def _serial(source: Source, tenants: list[str], opts: Options,
            progress: Callable[[int], None] | None) -> Iterator[Outcome]:
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done)

    for tenant in tenants:
        snap = source.snapshot()
        try:
            yield verify_tenant(snap, tenant, opts, tick)
        finally:
            snap.close()


_counter: Any = None


def _init_worker(counter: Any) -> None:
    global _counter
    _counter = counter


def _tick(n: int) -> None:
    with _counter.get_lock():
        _counter.value += n


def _work(task: tuple[Source, str, Options]) -> Outcome:
    source, tenant, opts = task
    snap = source.snapshot()
    try:
        return verify_tenant(snap, tenant, opts, _tick)
    finally:
        snap.close()


def _parallel(source: Source, tenants: list[str], opts: Options, jobs: int,
              progress: Callable[[int], None] | None) -> list[Outcome]:
    """One task per tenant over ``jobs`` processes (forked where the platform can); results in tenant order."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    counter = ctx.Value("q", 0)
    outcomes: list[Outcome] = []
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(counter,)) as pool:
        results = pool.imap(_work, [(source, t, opts) for t in tenants])
        while len(outcomes) < len(tenants):
            with contextlib.suppress(multiprocessing.TimeoutError):
                outcomes.append(results.next(timeout=0.2))
            if progress is not None:
                progress(counter.value)
    return outcomes


# -- SQLite ------------------------------------------------------------------------------------------


def _sqlite_fast_sql() -> str:
    """The canonical JSON built in SQL: ``head`` up to ``"latency_ms":``, the latency, then ``tail``.

    Runs of scalar columns go through one ``json_object`` each (its string escaping is RFC 8785's;
    a BLOB planted in a text column makes it fail: FastPathFailed, and the Python path reports the
    row); the canonical JSON columns are spliced in as stored, as the Python path does. A dummy last
    member, trimmed off with its value, leaves ``"<next JSON column>":`` at the end of each run.
    """
    head: list[str] = []
    tail: list[str] = []
    target, run_names, opened = head, list[str](), False
    for name in SORTED_FIELDS:
        if name not in _JSON and name != "latency_ms":
            run_names.append(name)
            continue
        members = "".join(f"'{n}', \"{n}\", " for n in run_names)
        piece = f"rtrim(json_object({members}'{name}', 0), '0}}')"
        target.append(piece if not opened else f"',' || substr({piece}, 2)")
        opened, run_names = True, []
        if name == "latency_ms":
            target = tail
        else:
            target.append(f"coalesce(\"{name}\", '')")
    members = ", ".join(f"'{n}', \"{n}\"" for n in run_names)
    tail.append(f"',' || substr(json_object({members}), 2)")
    # tail starts right after the latency value: its first run began with the dummy's comma trimmed
    return (f"SELECT seq, CAST({' || '.join(head)} AS BLOB), latency_ms, CAST({' || '.join(tail)} AS BLOB), "
            "prev_hash, hash FROM events WHERE tenant_id = ? AND seq > ? ORDER BY seq")


_SQLITE_COLUMNS: Final = ", ".join(f'"{n}"' for n in SORTED_FIELDS)
_SQLITE_SLOW: Final = f"SELECT seq, {_SQLITE_COLUMNS}, prev_hash, hash FROM events WHERE tenant_id = ? "
_PROBE: Final = "".join(map(chr, range(128))) + "é€\u2028\u2029\ud7ff\ue000\uffff\U0001f600\U0010ffff"
_sqlite_fast_ok: bool | None = None


def _sqlite_fast(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite's ``json_object`` escapes strings byte for byte as RFC 8785 (msgspec) does."""
    global _sqlite_fast_ok
    if _sqlite_fast_ok is None:
        try:
            got = conn.execute("SELECT CAST(json_object('k', ?) AS BLOB)", (_PROBE,)).fetchone()[0]
            _sqlite_fast_ok = got == b'{"k":' + msgspec.json.encode(_PROBE) + b"}"
        except sqlite3.Error:
            _sqlite_fast_ok = False
    return _sqlite_fast_ok


def _slow_rows(cursor: Iterable[Sequence[Any]]) -> Iterator[Row]:
    n = len(SORTED_FIELDS)
    for row in cursor:
        try:
            canonical: bytes | None = canonical_row(row[1:n + 1])
        except (ValueError, TypeError, OverflowError, msgspec.EncodeError):
            canonical = None
        yield row[0], canonical, None, None, row[n + 1], row[n + 2]


@dataclass
class SQLiteSnapshot:
    conn: sqlite3.Connection
    where: str
    _fast_sql: str = field(default_factory=_sqlite_fast_sql)

    def _q(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.where}: {exc}") from exc

    def head(self, tenant_id: str) -> tuple[int, str] | None:
        row = self._q("SELECT seq, hash FROM chain_heads WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def cut(self, tenant_id: str) -> Cut | None:
        row = self._q("SELECT seq, hash FROM prune_cuts WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
                      (tenant_id,)).fetchone()
        return Cut(*row) if row else None

    def records(self, tenant_id: str) -> list[Verified]:
        rows = self._q("SELECT tenant_id, seq, hash, tree_size, root, cut_seq, verified_at, note FROM verified "
                       f"WHERE tenant_id = ? ORDER BY seq DESC, verified_at DESC LIMIT {_RECORDS}", (tenant_id,))
        return [Verified(t, s, h, z, bytes(r), c, a, n) for t, s, h, z, r, c, a, n in rows]

    def rows(self, tenant_id: str, after_seq: int, *, fast: bool = True) -> Iterator[Row]:
        if not (fast and _sqlite_fast(self.conn)):
            yield from _slow_rows(self._q(_SQLITE_SLOW + "AND seq > ? ORDER BY seq", (tenant_id, after_seq)))
            return
        cursor = self._q(self._fast_sql, (tenant_id, after_seq))
        try:
            yield from cursor
        except sqlite3.Error as exc:  # e.g. a BLOB planted in a text column: json_object refuses it
            raise FastPathFailed(str(exc)) from exc

    def rows_at(self, tenant_id: str, seqs: Sequence[int]) -> list[Row]:
        found: list[Row] = []
        for start in range(0, len(seqs), 500):
            chunk = list(seqs[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            found += _slow_rows(self._q(_SQLITE_SLOW + f"AND seq IN ({marks}) ORDER BY seq", (tenant_id, *chunk)))
        return found

    def tiles(self, tenant_id: str) -> TiledHashes:
        from .sqlite import _tiles

        return _tiles(self.conn, tenant_id)

    def outage(self, exc: Exception) -> SealogError | None:
        return StoreUnavailable(f"{self.where}: {exc}") if isinstance(exc, sqlite3.Error) else None

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class SQLiteSource:
    path: str

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        return conn

    def tenants(self, tenant_id: str | None) -> tuple[list[str], int, bool]:
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            heads = dict(conn.execute("SELECT tenant_id, seq FROM chain_heads").fetchall())
            if tenant_id is not None:
                tenants = [tenant_id]
            else:  # from the events too, so deleting a head hides nothing
                tenants = sorted({r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM events")} | heads.keys())
            table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'verified'").fetchone()
            return tenants, sum(heads.values()), table is not None
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        finally:
            conn.close()

    def snapshot(self) -> SQLiteSnapshot:
        conn = self._connect()
        conn.execute("BEGIN")  # WAL: one read snapshot for the tenant's heads, rows and tree
        return SQLiteSnapshot(conn, self.path)

    def remember(self, records: list[Verified]) -> None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO verified VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", records)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        finally:
            conn.close()


# -- PostgreSQL ----------------------------------------------------------------------------------------


@dataclass
class PostgresSnapshot:
    conn: psycopg.Connection[Any]
    number: int = 0

    def head(self, tenant_id: str) -> tuple[int, str] | None:
        row = self.conn.execute("SELECT seq, hash FROM sealog_chain_heads WHERE tenant_id = %s AND seq > 0",
                                (tenant_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def cut(self, tenant_id: str) -> Cut | None:
        row = self.conn.execute("SELECT seq, hash FROM sealog_prune_cuts WHERE tenant_id = %s ORDER BY seq DESC "
                                "LIMIT 1", (tenant_id,)).fetchone()
        return Cut(*row) if row else None

    def records(self, tenant_id: str) -> list[Verified]:
        rows = self.conn.execute(
            "SELECT tenant_id, seq, hash, tree_size, root, cut_seq, "
            "to_char(verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), note "
            f"FROM sealog_verified WHERE tenant_id = %s ORDER BY seq DESC, verified_at DESC LIMIT {_RECORDS}",
            (tenant_id,))
        return [Verified(t, s, h, z, bytes(r), c, a, n) for t, s, h, z, r, c, a, n in rows]

    def _select(self, condition: str) -> Any:
        from psycopg import sql

        from .postgres import _select_list

        return sql.SQL("SELECT seq, {}, prev_hash, hash FROM sealog_events WHERE tenant_id = %s AND {} "
                       "ORDER BY seq").format(_select_list(SORTED_FIELDS, json_as_text=True), sql.SQL(condition))

    def rows(self, tenant_id: str, after_seq: int, *, fast: bool = True) -> Iterator[Row]:
        from .postgres import _canonical

        self.number += 1
        n = len(SORTED_FIELDS)
        with self.conn.cursor(name=f"sealog_verify_{self.number}") as cursor:
            cursor.itersize = 5000
            cursor.execute(self._select("seq > %s"), (tenant_id, after_seq))
            for row in cursor:
                yield row[0], _canonical(list(row[1:n + 1])), None, None, row[n + 1], row[n + 2]

    def rows_at(self, tenant_id: str, seqs: Sequence[int]) -> list[Row]:
        from .postgres import _canonical

        n = len(SORTED_FIELDS)
        rows = self.conn.execute(self._select("seq = ANY(%s)"), (tenant_id, list(seqs))).fetchall()
        return [(r[0], _canonical(list(r[1:n + 1])), None, None, r[n + 1], r[n + 2]) for r in rows]

    def tiles(self, tenant_id: str) -> TiledHashes:
        from .postgres import _tiles

        return _tiles(self.conn, tenant_id)

    def outage(self, exc: Exception) -> SealogError | None:
        import psycopg

        from .postgres import _first_line

        return StoreUnavailable(f"PostgreSQL: {_first_line(exc)}") if isinstance(exc, psycopg.Error) else None

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


@dataclass(frozen=True)
class PostgresSource:
    url: str
    timeout: float = 10.0

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=max(1, int(self.timeout)))
        except psycopg.Error as exc:
            from .postgres import translate

            raise translate(exc) from exc

    def tenants(self, tenant_id: str | None) -> tuple[list[str], int, bool]:
        import psycopg

        conn = self._connect()
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            heads = dict(conn.execute("SELECT tenant_id, seq FROM sealog_chain_heads WHERE seq > 0").fetchall())
            if tenant_id is not None:
                tenants = [tenant_id]
            else:
                stored = {r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM sealog_events")}
                tenants = sorted(stored | heads.keys())
            table = conn.execute("SELECT to_regclass('sealog_verified')").fetchone()
            return tenants, sum(heads.values()), table is not None and table[0] is not None
        except psycopg.Error as exc:
            from .postgres import translate

            raise translate(exc) from exc
        finally:
            conn.close()

    def snapshot(self) -> PostgresSnapshot:
        conn = self._connect()
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return PostgresSnapshot(conn)

    def remember(self, records: list[Verified]) -> None:
        import psycopg

        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany("INSERT INTO sealog_verified (tenant_id, seq, hash, tree_size, root, cut_seq, "
                                "verified_at, note) VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz, %s) "
                                "ON CONFLICT DO NOTHING", records)
        except psycopg.Error as exc:
            from .postgres import translate

            raise translate(exc) from exc
        finally:
            conn.close()
