"""An attacker with file access edits the SQLite file directly; verify() names the tenant and
seq of every change and leaves the untouched tenant clean."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from sealog import AuditLog
from sealog._chain import VerifyReport
from sealog._event import CONTENT_FIELDS, JSON_FIELDS

Tampered = tuple[AuditLog, sqlite3.Connection]


@pytest.fixture
def tampered(tmp_path: Path) -> Iterator[Tampered]:
    """20 events for acme and globex through AuditLog, then a raw connection with the triggers dropped."""
    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    for i in range(1, 11):
        for tenant in ("acme", "globex"):
            log.emit(tenant_id=tenant, action="test.tamper", actor=("user", f"u-{i}"), latency_ms=i + 0.5,
                     metadata={"i": i}, proof={"type": "hash", "hash": f"{i:064x}"}, before={"v": i - 1},
                     after={"v": i}, error_code=None if i % 2 else "E_EVEN")
    assert log.flush()
    assert log.verify().ok
    attacker = sqlite3.connect(db, isolation_level=None)
    attacker.execute("DROP TRIGGER events_no_update")
    attacker.execute("DROP TRIGGER events_no_delete")
    yield log, attacker
    attacker.close()
    log.close()


def problems(report: VerifyReport) -> set[tuple[str, int, str]]:
    assert report.problem_count == len(report.problems)
    return {(p.tenant_id, p.seq, p.kind) for p in report.problems}


def assert_reported(log: AuditLog, expected: set[tuple[str, int, str]]) -> None:
    """verify() fails with exactly these problems, and the other tenant verifies clean."""
    report = log.verify()
    assert not report.ok
    assert problems(report) == expected
    assert report.tenants == 2
    tampered_tenants = {tenant for tenant, _, _ in expected}
    (other,) = {"acme", "globex"} - tampered_tenants
    assert log.verify(other).ok


@pytest.mark.parametrize(("column", "value"), [
    ("metadata", '{"i":99}'),
    ("metadata", '{"i": 4}'),  # the same object, not in canonical form: stored text is what is hashed
    ("actor_id", "mallory"),
    ("occurred_at", "2020-01-01T00:00:00.000000Z"),
    ("outcome", "failure"),
    ("latency_ms", 0.5),
    ("error_code", "E_FORGED"),
    ("proof", '{"type":"none"}'),
    ("before", "null"),
    ("event_id", "01890a5d-ac96-774b-bcce-b302099a8057"),
    ("action", "test.innocent"),
])
def test_a_modified_row_is_reported_at_its_tenant_and_seq(tampered: Tampered, column: str, value: Any) -> None:
    """Changing any stored content column breaks that event's hash, and only that."""
    log, attacker = tampered
    attacker.execute(f'UPDATE events SET "{column}" = ? WHERE tenant_id = ? AND seq = 4', (value, "acme"))
    assert_reported(log, {("acme", 4, "hash")})


def test_a_deleted_middle_row_is_reported(tampered: Tampered) -> None:
    """A missing event leaves a seq gap and a broken prev_hash at the next one."""
    log, attacker = tampered
    attacker.execute("DELETE FROM events WHERE tenant_id = 'acme' AND seq = 5")
    assert_reported(log, {("acme", 6, "seq"), ("acme", 6, "prev_hash")})


def test_a_deleted_last_row_is_reported_against_the_head(tampered: Tampered) -> None:
    """Removing the newest event leaves the chain head pointing past the last row."""
    log, attacker = tampered
    attacker.execute("DELETE FROM events WHERE tenant_id = 'globex' AND seq = 10")
    assert_reported(log, {("globex", 10, "head")})


def test_a_tenant_emptied_of_events_is_reported(tampered: Tampered) -> None:
    """Deleting every event of a tenant still leaves its head to contradict the empty chain."""
    log, attacker = tampered
    attacker.execute("DELETE FROM events WHERE tenant_id = 'globex'")
    assert_reported(log, {("globex", 10, "head")})


def test_swapped_rows_are_reported(tampered: Tampered) -> None:
    """Reordering two events (exchanging their seq) breaks the links around both."""
    log, attacker = tampered
    attacker.execute("UPDATE events SET seq = -1 WHERE tenant_id = 'acme' AND seq = 3")
    attacker.execute("UPDATE events SET seq = 3 WHERE tenant_id = 'acme' AND seq = 7")
    attacker.execute("UPDATE events SET seq = 7 WHERE tenant_id = 'acme' AND seq = -1")
    assert_reported(log, {("acme", 3, "prev_hash"), ("acme", 4, "prev_hash"),
                          ("acme", 7, "prev_hash"), ("acme", 8, "prev_hash")})


def test_a_forged_row_inserted_in_the_middle_is_reported(tampered: Tampered) -> None:
    """A forgery hashed correctly by the public rule still breaks the next event's link and the head."""
    log, attacker = tampered
    prev = attacker.execute("SELECT hash FROM events WHERE tenant_id = 'acme' AND seq = 5").fetchone()[0]
    for seq in range(10, 5, -1):  # make room at seq 6; the later rows keep their hashes
        attacker.execute("UPDATE events SET seq = seq + 1 WHERE tenant_id = 'acme' AND seq = ?", (seq,))
    forged: dict[str, Any] = dict.fromkeys(CONTENT_FIELDS) | {
        "event_id": "forged-1", "tenant_id": "acme", "action": "auth.login", "outcome": "success",
        "occurred_at": "2026-01-01T00:00:00.000000Z", "actor_type": "user", "actor_id": "mallory", "metadata": {},
    }
    digest = hashlib.sha256(bytes.fromhex(prev) + rfc8785.dumps(forged)).hexdigest()
    row = {k: (rfc8785.dumps(v).decode() if k in JSON_FIELDS else v) for k, v in forged.items()}
    row |= {"seq": 6, "prev_hash": prev, "hash": digest, "recorded_at": "2026-01-01T00:00:00.000000Z"}
    columns = ", ".join(f'"{c}"' for c in row)
    attacker.execute(f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    # The forged row itself is self-consistent (no "hash" problem at 6): only the links give it away.
    assert_reported(log, {("acme", 7, "prev_hash"), ("acme", 10, "head")})


def test_verify_of_one_tenant_reports_only_that_tenant(tampered: Tampered) -> None:
    """verify(tenant) checks one chain: the tampered one fails, the other passes."""
    log, attacker = tampered
    attacker.execute("UPDATE events SET actor_id = 'x' WHERE tenant_id = 'acme' AND seq = 2")
    assert problems(log.verify("acme")) == {("acme", 2, "hash")}
    clean = log.verify("globex")
    assert clean.ok
    assert clean.checked == 10


def test_triggers_reject_update_and_delete(tmp_path: Path) -> None:
    """While the triggers stand, UPDATE and DELETE fail in the database itself and change nothing."""
    db = tmp_path / "audit.db"
    with AuditLog(f"sqlite:///{db}", spool_dir=tmp_path / "spool") as log:
        log.emit(tenant_id="acme", action="test.append_only", actor=("user", "u-1"))
        assert log.flush()
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute("UPDATE events SET actor_id = 'x'")
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute("DELETE FROM events")
            assert conn.execute("SELECT count(*), max(actor_id) FROM events").fetchone() == (1, "u-1")
        finally:
            conn.close()
        assert log.verify().ok
