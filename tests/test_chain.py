"""chain.py: per-tenant sealing, and verification that names each break by tenant and seq."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from sealog import AuditLog, Problem
from sealog._canonical import SORTED_FIELDS, canonical_row, canonical_value
from sealog._chain import (
    GENESIS,
    MAX_PROBLEMS,
    SCALAR_FIELDS,
    CanonicalRow,
    Sealed,
    StoredRow,
    VerifyReport,
    link,
    seal,
    verify_chain,
)
from sealog._event import JSON_FIELDS, Event
from sealog.testing import MemoryStore


def make_events(tenant: str, count: int, start: int = 1) -> list[Event]:
    return [Event(event_id=f"{tenant}-{i}", tenant_id=tenant, action="test.chain",
                  occurred_at=f"2026-01-02T03:04:05.{i:06d}Z", actor_id=f"u-{i}", latency_ms=i / 4,
                  metadata={"i": i}, before={"v": i - 1}, after={"v": i})
            for i in range(start, start + count)]


def stored_rows(sealed: list[Sealed]) -> list[StoredRow]:
    """What a store hands verification: scalars, canonical JSON columns and the seal fields."""
    return [StoredRow({n: getattr(s.event, n) for n in SCALAR_FIELDS}, dict(s.json), s.seq, s.prev_hash, s.hash)
            for s in sealed]


def verify_rows(rows: list[StoredRow] | list[CanonicalRow], head: tuple[int, str] | None,
                tenant: str = "acme") -> VerifyReport:
    report = VerifyReport()
    verify_chain(tenant, iter(rows), head, report)  # type: ignore[arg-type]
    return report


def found(report: VerifyReport) -> set[tuple[str, int, str]]:
    return {(p.tenant_id, p.seq, p.kind) for p in report.problems}


def test_seal_numbers_each_tenant_from_one_and_links_each_event_to_the_previous() -> None:
    """Interleaved tenants get separate, gap-free chains that start at the 32-zero-byte genesis."""
    acme, globex = make_events("acme", 4), make_events("globex", 3)
    mixed = [acme[0], globex[0], acme[1], acme[2], globex[1], globex[2], acme[3]]
    heads: dict[str, tuple[int, str]] = {}
    sealed = seal(mixed, heads)
    for tenant, count in (("acme", 4), ("globex", 3)):
        chain = [s for s in sealed if s.event.tenant_id == tenant]
        assert [s.seq for s in chain] == list(range(1, count + 1))
        assert [s.prev_hash for s in chain] == [GENESIS, *(s.hash for s in chain[:-1])]
        assert heads[tenant] == (count, chain[-1].hash)
    assert GENESIS == "00" * 32
    assert len({s.hash for s in sealed}) == len(sealed)


def test_seal_continues_from_the_heads_it_is_given() -> None:
    """Sealing in two batches with the returned heads equals sealing everything at once."""
    events = make_events("acme", 6)
    whole = seal(events, {})
    heads: dict[str, tuple[int, str]] = {}
    split = seal(events[:2], heads) + seal(events[2:], heads)
    assert [(s.seq, s.prev_hash, s.hash) for s in split] == [(s.seq, s.prev_hash, s.hash) for s in whole]


def test_link_hashes_the_previous_hash_as_raw_bytes() -> None:
    """hash = SHA-256(prev_hash as 32 raw bytes || canonical), not over the hex text."""
    prev = hashlib.sha256(b"x").hexdigest()
    assert link(prev, b"{}") == hashlib.sha256(bytes.fromhex(prev) + b"{}").hexdigest()
    assert link(prev, b"{}") != hashlib.sha256(prev.encode() + b"{}").hexdigest()
    (first,) = seal(make_events("acme", 1), {})
    content = canonical_row([first.json[n] if n in first.json else getattr(first.event, n) for n in SORTED_FIELDS])
    assert first.hash == hashlib.sha256(bytes(32) + content).hexdigest()


def test_sealed_json_columns_are_canonical() -> None:
    """The JSON columns a store keeps are the RFC 8785 bytes that were hashed."""
    (sealed,) = seal(make_events("acme", 1), {})
    assert list(sealed.json) == list(JSON_FIELDS)
    for name in JSON_FIELDS:
        assert sealed.json[name] == canonical_value(getattr(sealed.event, name))


def test_an_intact_chain_verifies_in_both_row_forms() -> None:
    """Stored rows and pre-assembled canonical rows both verify clean, and are counted."""
    sealed = seal(make_events("acme", 5), {})
    head = (5, sealed[-1].hash)
    report = verify_rows(stored_rows(sealed), head)
    assert report.ok
    assert (report.checked, report.tenants, report.problems) == (5, 1, [])
    canonical = [CanonicalRow(canonical_row([s.json[n] if n in s.json else getattr(s.event, n) for n in SORTED_FIELDS]),
                              s.seq, s.prev_hash, s.hash) for s in sealed]
    assert verify_rows(canonical, head).ok


def test_changed_scalar_content_is_reported_at_its_seq() -> None:
    """Editing one field of one event breaks exactly that event's hash."""
    sealed = seal(make_events("acme", 5), {})
    rows = stored_rows(sealed)
    rows[2].scalars["actor_id"] = "mallory"
    report = verify_rows(rows, (5, sealed[-1].hash))
    assert not report.ok
    assert found(report) == {("acme", 3, "hash")}


def test_changed_json_content_is_reported_at_its_seq() -> None:
    """Editing a JSON column (metadata) is caught just the same."""
    sealed = seal(make_events("acme", 5), {})
    rows = stored_rows(sealed)
    rows[1].json["metadata"] = b'{"i":99}'
    assert found(verify_rows(rows, (5, sealed[-1].hash))) == {("acme", 2, "hash")}


def test_a_missing_event_is_a_seq_gap_and_a_broken_link() -> None:
    """Dropping an event from the middle is reported at the next seq, twice over."""
    sealed = seal(make_events("acme", 5), {})
    rows = stored_rows(sealed)
    del rows[2]
    assert found(verify_rows(rows, (5, sealed[-1].hash))) == {("acme", 4, "seq"), ("acme", 4, "prev_hash")}


def test_a_truncated_chain_disagrees_with_its_head() -> None:
    """Dropping the newest events leaves a clean-looking chain that the head contradicts."""
    sealed = seal(make_events("acme", 5), {})
    report = verify_rows(stored_rows(sealed)[:3], (5, sealed[-1].hash))
    assert found(report) == {("acme", 5, "head")}
    empty = verify_rows([], (5, sealed[-1].hash))
    assert found(empty) == {("acme", 5, "head")}


def test_reordered_events_break_the_links() -> None:
    """Exchanging the seq of two events breaks the links around both."""
    sealed = seal(make_events("acme", 6), {})
    rows = stored_rows(sealed)
    rows[1], rows[4] = rows[4]._replace(seq=2), rows[1]._replace(seq=5)
    assert found(verify_rows(rows, (6, sealed[-1].hash))) == {
        ("acme", 2, "prev_hash"), ("acme", 3, "prev_hash"), ("acme", 5, "prev_hash"), ("acme", 6, "prev_hash")}


def test_a_replaced_event_with_a_valid_hash_of_its_own_breaks_the_next_link() -> None:
    """A forger who re-hashes the event he changed is caught by the following event's prev_hash."""
    sealed = seal(make_events("acme", 5), {})
    forged_event = msgspec.structs.replace(sealed[2].event, actor_id="mallory")
    (forged,) = seal([forged_event], {"acme": (2, sealed[1].hash)})
    rows = stored_rows(sealed)
    rows[2] = stored_rows([forged])[0]
    assert found(verify_rows(rows, (5, sealed[-1].hash))) == {("acme", 4, "prev_hash")}


def test_problems_are_kept_up_to_a_cap_but_all_counted() -> None:
    """A wholly corrupt chain cannot exhaust memory: MAX_PROBLEMS kept, every problem counted."""
    rows = [CanonicalRow(b"{}", seq, GENESIS, "f" * 64) for seq in range(1, MAX_PROBLEMS + 11)]
    report = verify_rows(rows, None)
    assert not report.ok
    assert len(report.problems) == MAX_PROBLEMS
    assert report.problem_count > MAX_PROBLEMS
    assert report.checked == MAX_PROBLEMS + 10


def test_a_problem_reads_as_tenant_seq_and_kind() -> None:
    """The text a person sees names the tenant and the seq."""
    assert str(Problem("acme", 7, "hash", "content does not match its hash")) == (
        "tenant 'acme' seq 7: hash: content does not match its hash")


def test_memory_store_verification_catches_an_edited_event(tmp_path: Path) -> None:
    """sealog.testing's store re-hashes its events too: an edit is named by tenant and seq."""
    store = MemoryStore()
    with AuditLog(store=store, spool_dir=tmp_path / "spool") as log:
        for i in range(4):
            log.emit(tenant_id="acme", action="test.chain", metadata={"i": i})
            log.emit(tenant_id="globex", action="test.chain", metadata={"i": i})
        assert log.flush()
        assert log.verify().ok
        index = next(i for i, e in enumerate(store.events) if e.tenant_id == "acme" and e.seq == 2)
        store.events[index] = msgspec.structs.replace(store.events[index], metadata={"i": 99})
        report = log.verify()
    assert found(report) == {("acme", 2, "hash")}
    assert report.checked == 8
