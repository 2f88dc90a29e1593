"""The spool: size cap policies, torn lines, quarantine of rows the store rejects."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sealog import AuditLog, SpoolFull
from sealog._spool import QUARANTINE, Spool


def fill(log: AuditLog, limit: int = 1000) -> int:
    """Emit until the spool refuses; returns how many were accepted."""
    for _ in range(limit):
        log.emit(tenant_id="acme", action="test.fill", metadata={"pad": "x" * 100})
    return limit


def unreachable(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'missing-dir' / 'audit.db'}"


@pytest.mark.allow_sealog_errors
def test_raise_policy_refuses_past_the_cap(tmp_path: Path) -> None:
    """With policy 'raise', an emit that would pass the cap raises SpoolFull at once."""
    log = AuditLog(unreachable(tmp_path), spool_dir=tmp_path / "spool", max_spool_bytes=20_000,
                   spool_full="raise")
    try:
        with pytest.raises(SpoolFull, match="cap"):
            fill(log)
        assert 0 < log.stats()["emitted"] < 1000
        assert log.stats()["spool_bytes"] <= 20_000
    finally:
        log.close(timeout=0.2)


@pytest.mark.allow_sealog_errors
def test_block_policy_waits_for_room_then_continues(tmp_path: Path) -> None:
    """With 'block', a full spool waits for the store; once it is back, emits go through."""
    target = tmp_path / "later"
    log = AuditLog(f"sqlite:///{target / 'audit.db'}", spool_dir=tmp_path / "spool",
                   max_spool_bytes=20_000, spool_full="block", spool_timeout=0.2)
    try:
        with pytest.raises(SpoolFull):
            fill(log)
        target.mkdir()  # the store comes back: the backlog drains and frees the cap
        assert log.flush(30)
        for _ in range(300):
            log.emit(tenant_id="acme", action="test.after", metadata={"pad": "x" * 100})
        assert log.flush(30)
        assert len(list(log.iter_events("acme"))) > 300
    finally:
        log.close()


def test_policy_name_is_checked(tmp_path: Path) -> None:
    """A misspelt policy is a caller mistake, reported at construction."""
    with pytest.raises(ValueError, match="block"):
        Spool(tmp_path, full_policy="drop")  # type: ignore[arg-type]


@pytest.mark.allow_sealog_errors
def test_torn_last_line_is_skipped_and_the_rest_delivered(tmp_path: Path, db_url: str) -> None:
    """A write cut by a kill leaves a partial line: recovery skips it, keeps every whole one."""
    spool_dir = tmp_path / "spool"
    with AuditLog(db_url, spool_dir=tmp_path / "other") as log:
        log.flush()
    dead = Spool(spool_dir)
    lines = []
    from sealog._event import Event, encode

    for i in range(5):
        line = encode(Event(event_id=f"00000000-0000-7000-8000-00000000000{i}", tenant_id="acme",
                            action="test.torn", occurred_at="2026-01-01T00:00:00.000000Z"))
        dead.append(line)
        lines.append(line)
    segment = next(spool_dir.glob("*.seg"))
    with segment.open("ab") as handle:
        handle.write(lines[0][:30])  # torn: no newline
    # Simulate the death: drop the lock without cleaning up.
    import os

    os.close(dead._lock_fd)
    with AuditLog(db_url, spool_dir=spool_dir) as log:
        assert log.flush(10)
        stored = [e.event_id for e in log.iter_events("acme")]
    assert sorted(stored) == sorted(f"00000000-0000-7000-8000-00000000000{i}" for i in range(5))


@pytest.mark.allow_sealog_errors
def test_writer_isolates_a_bad_row_and_keeps_the_rest(tmp_path: Path, db_url: str) -> None:
    """A row the store rejects for good goes to quarantine; the batch around it is stored."""
    db = Path(db_url.removeprefix("sqlite:///"))
    with AuditLog(db_url, spool_dir=tmp_path / "s0") as log:
        log.flush()
    # The one failure we cannot cause through the API: a store that rejects one action.
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TRIGGER reject_poison BEFORE INSERT ON events WHEN NEW.action = 'test.poison' "
                     "BEGIN SELECT RAISE(ABORT, 'poison rejected'); END")
    spool_dir = tmp_path / "spool"
    log = AuditLog(db_url, spool_dir=spool_dir)
    try:
        good = [log.emit(tenant_id="acme", action="test.good", metadata={"i": i}) for i in range(100)]
        bad = log.emit(tenant_id="acme", action="test.poison")
        good += [log.emit(tenant_id="acme", action="test.good") for _ in range(100)]
        assert log.flush(20)
        assert log.stats()["quarantined"] == 1
        stored = {e.event_id for e in log.iter_events("acme")}
        assert stored == set(good)
        assert log.verify().ok
        assert bad in (spool_dir / QUARANTINE).read_text()
        # ...and the writer is still alive.
        later = log.emit(tenant_id="acme", action="test.good")
        assert log.flush(10)
        assert log.get("acme", later) is not None
    finally:
        log.close()


FULL_DISK_CHILD = """
import resource, signal, sys
from sealog import AuditLog, SpoolFull
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
log = AuditLog(sys.argv[1], spool_dir=sys.argv[2])
accepted = 0
try:
    for i in range(10_000):
        log.emit(tenant_id="acme", action="test.disk", metadata={"pad": "x" * 200})
        accepted += 1
except SpoolFull as exc:
    print("SpoolFull", accepted, exc)
log.close(timeout=0.2)
"""


def test_a_full_disk_is_reported_as_spool_full(tmp_path: Path) -> None:
    """When the spool file cannot grow (a real EFBIG via RLIMIT_FSIZE), emit raises SpoolFull."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, f"sqlite:///{tmp_path / 'a.db'}",
                           str(tmp_path / "spool")], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    verdict, accepted, *_ = done.stdout.split()
    assert verdict == "SpoolFull"
    assert 0 < int(accepted) < 10_000


@pytest.mark.allow_sealog_errors
def test_spool_is_fsynced_during_an_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the store is down the writer keeps fsyncing the spool (the power-cut bound)."""
    import os
    import time

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    log = AuditLog(unreachable(tmp_path), spool_dir=tmp_path / "spool", writer="thread")
    try:
        log.emit(tenant_id="acme", action="test.fsync")
        deadline = time.monotonic() + 10
        while not synced:
            assert time.monotonic() < deadline, "no fsync while the store was down"
            log.flush(0.1)
        assert log.stats()["stored"] == 0
    finally:
        log.close(timeout=0.2)
