"""An attacker with file access edits the SQLite file directly; verify names what changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealog import AuditLog
from sealog.chain import VerifyReport


@pytest.fixture
def sealed_db(tmp_path: Path) -> Iterator[tuple[AuditLog, sqlite3.Connection]]:
    """20 events for acme and globex, then a raw connection with the triggers dropped."""
    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    for i in range(10):
        for tenant in ("acme", "globex"):
            log.emit(tenant_id=tenant, action="test.tamper", actor=("user", f"u-{i}"), metadata={"i": i})
    assert log.flush()
    assert log.verify().ok
    attacker = sqlite3.connect(db, isolation_level=None)
    attacker.execute("DROP TRIGGER events_no_update")
    attacker.execute("DROP TRIGGER events_no_delete")
    yield log, attacker
    attacker.close()
    log.close()


def problems(report: VerifyReport) -> set[tuple[str, int, str]]:
    return {(p.tenant_id, p.seq, p.kind) for p in report.problems}


def test_modified_row_is_reported_by_tenant_and_seq(sealed_db: tuple[AuditLog, sqlite3.Connection]) -> None:
    """Changing a stored field breaks that event's hash."""
    log, attacker = sealed_db
    attacker.execute("UPDATE events SET metadata = '{\"i\":99}' WHERE tenant_id = 'acme' AND seq = 4")
    report = log.verify()
    assert not report.ok
    assert problems(report) == {("acme", 4, "hash")}


def test_deleted_middle_row_is_reported(sealed_db: tuple[AuditLog, sqlite3.Connection]) -> None:
    """A missing event leaves a seq gap and a broken prev_hash at the next one."""
    log, attacker = sealed_db
    attacker.execute("DELETE FROM events WHERE tenant_id = 'acme' AND seq = 5")
    found = problems(log.verify())
    assert ("acme", 6, "seq") in found
    assert ("acme", 6, "prev_hash") in found
    assert all(tenant == "acme" for tenant, _, _ in found)


def test_deleted_last_row_is_reported_against_the_head(sealed_db: tuple[AuditLog, sqlite3.Connection]) -> None:
    """Removing the newest event leaves the chain head pointing past the last row."""
    log, attacker = sealed_db
    attacker.execute("DELETE FROM events WHERE tenant_id = 'globex' AND seq = 10")
    assert problems(log.verify()) == {("globex", 10, "head")}


def test_swapped_rows_are_reported(sealed_db: tuple[AuditLog, sqlite3.Connection]) -> None:
    """Reordering two events (exchanging their seq) breaks the prev_hash links."""
    log, attacker = sealed_db
    attacker.execute("UPDATE events SET seq = -1 WHERE tenant_id = 'acme' AND seq = 3")
    attacker.execute("UPDATE events SET seq = 3 WHERE tenant_id = 'acme' AND seq = 7")
    attacker.execute("UPDATE events SET seq = 7 WHERE tenant_id = 'acme' AND seq = -1")
    found = problems(log.verify("acme"))
    assert {("acme", 3, "prev_hash"), ("acme", 7, "prev_hash")} <= found


def test_inserted_forged_row_is_reported(sealed_db: tuple[AuditLog, sqlite3.Connection]) -> None:
    """A forged event with a correct hash of its own still breaks the next event's link."""
    from sealog.canonical import canonical_event, canonical_value
    from sealog.chain import SCALAR_FIELDS, link
    from sealog.event import JSON_FIELDS

    log, attacker = sealed_db
    prev = attacker.execute("SELECT hash FROM events WHERE tenant_id='acme' AND seq=5").fetchone()[0]
    # Make room: shift seq 6..10 up by one, then insert the forgery as seq 6.
    for seq in range(10, 5, -1):
        attacker.execute("UPDATE events SET seq = seq + 1 WHERE tenant_id = 'acme' AND seq = ?", (seq,))
    forged = dict.fromkeys(SCALAR_FIELDS) | {
        "event_id": "forged-1", "tenant_id": "acme", "action": "auth.login", "outcome": "success",
        "occurred_at": "2026-01-01T00:00:00.000000Z", "actor_id": "mallory",
    }
    raw = {name: canonical_value({} if name == "metadata" else None) for name in JSON_FIELDS}
    digest = link(prev, canonical_event(dict(forged), raw))
    columns = [*forged, *raw, "seq", "prev_hash", "hash", "recorded_at"]
    values = [*forged.values(), *(r.decode() for r in raw.values()), 6, prev, digest, "2026-01-01T00:00:00Z"]
    attacker.execute(f"INSERT INTO events ({', '.join(repr(c) for c in columns)}) "
                     f"VALUES ({', '.join('?' * len(values))})", values)
    found = problems(log.verify("acme"))
    assert ("acme", 7, "prev_hash") in found
    assert ("acme", 10, "head") in found  # the head still says 10 events


def test_untouched_tenant_stays_ok(sealed_db: tuple[AuditLog, sqlite3.Connection]) -> None:
    """Tampering with one tenant's chain reports nothing against another's."""
    log, attacker = sealed_db
    attacker.execute("UPDATE events SET actor_id = 'x' WHERE tenant_id = 'acme' AND seq = 2")
    assert log.verify("globex").ok
    assert not log.verify("acme").ok


def test_triggers_reject_update_and_delete(tmp_path: Path) -> None:
    """While the triggers stand, UPDATE and DELETE fail in the database itself."""
    db = tmp_path / "audit.db"
    with AuditLog(f"sqlite:///{db}", spool_dir=tmp_path / "spool") as log:
        log.emit(tenant_id="acme", action="test.x")
        assert log.flush()
    conn = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET actor_id = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
    finally:
        conn.close()
