"""Nothing emitted is lost: SIGKILL, restart, outage, several processes and threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from sealog import AuditLog

from .children import read_ids, start_emitter

pytestmark = pytest.mark.slow


def stored_ids(db: Path, tenant: str) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        return Counter(r[0] for r in conn.execute("SELECT event_id FROM events WHERE tenant_id = ?", (tenant,)))


def seqs(db: Path, tenant: str) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM events WHERE tenant_id = ? ORDER BY seq", (tenant,))]


def init_store(db: Path) -> None:
    AuditLog(f"sqlite:///{db}", spool_dir=db.parent / "init-spool").close()


def kill_and_drain(process: subprocess.Popen[str]) -> list[str]:
    process.send_signal(signal.SIGKILL)
    assert process.stdout is not None
    # Read through the same buffered file as read_ids: communicate() would bypass its buffer.
    rest = process.stdout.read()
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stdout.close()
    if process.stderr is not None:
        process.stderr.close()
    lines = rest.split("\n")
    lines.pop()  # unterminated: the kill may have cut the child's print of an id short
    return [line for line in lines if line]


def test_sigkill_mid_flight_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Every id emit returned before SIGKILL is stored exactly once after a restart."""
    db, spool = tmp_path / "audit.db", tmp_path / "spool"
    url = f"sqlite:///{db}"
    init_store(db)
    child = start_emitter(url, spool, "acme")
    returned = read_ids(child, 3000)
    returned += kill_and_drain(child)
    with AuditLog(url, spool_dir=spool) as log:
        assert log.flush(30)
        assert log.verify("acme").ok
    stored = stored_ids(db, "acme")
    assert returned
    assert all(stored[eid] == 1 for eid in returned)
    assert seqs(db, "acme") == list(range(1, len(stored) + 1))


def test_sigkill_while_store_locked_recovers_whole_spool(tmp_path: Path) -> None:
    """With the store locked by another process, everything sits in the spool; a restart delivers it."""
    db, spool = tmp_path / "audit.db", tmp_path / "spool"
    url = f"sqlite:///{db}"
    init_store(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # an outage the child cannot get past
    child = start_emitter(url, spool, "acme")
    returned = read_ids(child, 2000)
    returned += kill_and_drain(child)
    assert list(spool.glob("*.seg")), "the events must be waiting in the spool"
    blocker.execute("ROLLBACK")
    blocker.close()
    with AuditLog(url, spool_dir=spool) as log:
        assert log.flush(30)
        assert log.stats()["recovered_spools"] >= 1
    stored = stored_ids(db, "acme")
    assert len(returned) >= 2000
    assert all(stored[eid] == 1 for eid in returned)
    assert not list(spool.glob("*.seg")), "a delivered spool is removed"


def test_live_process_picks_up_a_dead_neighbours_spool(tmp_path: Path) -> None:
    """Processes sharing one spool directory: a live one delivers what a killed one left."""
    db, spool = tmp_path / "audit.db", tmp_path / "spool"
    url = f"sqlite:///{db}"
    init_store(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    survivor = AuditLog(url, spool_dir=spool)
    child = start_emitter(url, spool, "acme")
    returned = read_ids(child, 500)
    returned += kill_and_drain(child)
    blocker.execute("ROLLBACK")
    blocker.close()
    try:
        survivor._writer._last_scan = 0.0  # the next scan (every few seconds) is due now
        deadline = time.monotonic() + 30
        while sum(stored_ids(db, "acme").values()) < len(returned):
            assert time.monotonic() < deadline, "the dead spool was not picked up"
            survivor.flush(0.5)
    finally:
        survivor.close()
    stored = stored_ids(db, "acme")
    assert all(stored[eid] == 1 for eid in returned)


def test_processes_and_threads_extend_one_gap_free_chain(tmp_path: Path) -> None:
    """Four processes with three threads each, one tenant: exact count, seq 1..N, verify ok."""
    db, spool = tmp_path / "audit.db", tmp_path / "spool"
    url = f"sqlite:///{db}"
    init_store(db)
    children = [start_emitter(url, spool, "acme", count=300, threads=3) for _ in range(4)]
    returned: list[str] = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        returned += out.split()
    assert len(returned) == 4 * 3 * 300
    stored = stored_ids(db, "acme")
    assert set(stored) == set(returned)
    assert max(stored.values()) == 1
    assert seqs(db, "acme") == list(range(1, len(returned) + 1))
    with AuditLog(url, spool_dir=spool) as log:
        assert log.verify().ok


@pytest.mark.allow_sealog_errors
def test_store_outage_emit_keeps_going_and_nothing_is_lost(tmp_path: Path) -> None:
    """While another process holds the database lock, emits still return; all land after."""
    db = tmp_path / "audit.db"
    url = f"sqlite:///{db}"
    init_store(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    log = AuditLog(url, spool_dir=tmp_path / "spool")
    try:
        ids = [log.emit(tenant_id="acme", action="test.outage", metadata={"i": i}) for i in range(2000)]
        # Every emit returned while the store was still locked.
        assert blocker.in_transaction
        assert not log.flush(0.3)
        assert log.stats()["backlog"] == 2000
        blocker.execute("ROLLBACK")
        assert log.flush(30)
    finally:
        blocker.close()
        log.close()
    assert set(stored_ids(db, "acme")) == set(ids)


@pytest.mark.allow_sealog_errors
def test_unreachable_store_directory_then_recovery(tmp_path: Path) -> None:
    """A store path that cannot be opened is an outage: events wait, then land once it can."""
    missing = tmp_path / "later"
    url = f"sqlite:///{missing / 'audit.db'}"
    log = AuditLog(url, spool_dir=tmp_path / "spool")
    try:
        ids = [log.emit(tenant_id="acme", action="test.outage") for _ in range(50)]
        assert not log.flush(0.3)
        deadline = time.monotonic() + 15  # the writer process may still be starting
        while log.stats()["retries"] < 1 and time.monotonic() < deadline:
            log.flush(0.1)
        assert log.stats()["retries"] >= 1
        assert "does not exist" in log.stats()["last_error"]
        assert log.stats()["quarantined"] == 0
        missing.mkdir()
        assert log.flush(30)
    finally:
        log.close()
    assert set(stored_ids(missing / "audit.db", "acme")) == set(ids)


def test_forked_child_delivers_its_own_events(tmp_path: Path) -> None:
    """After os.fork the child gets its own writer and spool owner; both sides' events land."""
    db = tmp_path / "audit.db"
    url = f"sqlite:///{db}"
    with AuditLog(url, spool_dir=tmp_path / "spool") as log:
        log.emit(tenant_id="acme", action="test.before_fork")
        assert log.flush(10)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            try:
                eid = log.emit(tenant_id="acme", action="test.child")
                ok = log.flush(20)
                os.write(write_end, f"{eid} {ok}".encode())
            finally:
                os._exit(0)
        os.close(write_end)
        parent_id = log.emit(tenant_id="acme", action="test.parent")
        _, status = os.waitpid(pid, 0)
        child_id, ok = os.read(read_end, 200).decode().split()
        os.close(read_end)
        assert status == 0
        assert ok == "True"
        assert log.flush(10)
        assert log.get("acme", child_id) is not None
        assert log.get("acme", parent_id) is not None
        assert log.verify().ok
