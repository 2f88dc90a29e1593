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

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
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


# -- segment headers, targets and orphan problems --------------------------------------

def event_line(i: int, action: str = "test.spool") -> bytes:
    from sealog._event import Event, encode

    return encode(Event(event_id=f"00000000-0000-7000-8000-{i:012d}", tenant_id="acme", action=action,
                        occurred_at="2026-01-01T00:00:00.000000Z"))


def leave_orphan(directory: Path, target: str | None, lines: list[bytes]) -> list[Path]:
    """A spool that closed with undelivered events (as at a shutdown timeout): its segments stay."""
    dead = Spool(directory, target=target)
    for line in lines:
        dead.append(line)
    dead.close()
    return sorted(directory.glob(f"{dead.owner}.*.seg"))


@pytest.mark.parametrize(("url", "exchange", "expected"), [
    ("postgresql://u:pw@h/db", None, "postgresql://u@h/db"),
    ("postgresql://u:s3cr%40t@db.example:5433/audit?sslmode=require&password=x", None,
     "postgresql://u@db.example:5433/audit?sslmode=require"),
    ("postgresql:///audit?host=/run/postgresql&PassWord=x", None, "postgresql:///audit?host=/run/postgresql"),
    ("amqp://u:pw@h/vh", "sealog.events", "amqp://u@h/vh#sealog.events"),
    ("amqp://guest:guest@localhost:5672/%2F", "audit", "amqp://guest@localhost:5672/%2F#audit"),
    ("sqlite:////var/lib/audit.db", None, "sqlite:////var/lib/audit.db"),
])
def test_spool_target_names_the_destination_without_its_password(url: str, exchange: str | None,
                                                                 expected: str) -> None:
    """The recorded target keeps user, host, port, path, options and exchange; never a password."""
    from sealog._spool import spool_target

    assert spool_target(url, exchange) == expected


def test_spool_target_of_a_relative_sqlite_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same relative sqlite URL in two working directories is two databases, so two targets."""
    from sealog._spool import spool_target

    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    in_a = spool_target("sqlite:///audit.db")
    monkeypatch.chdir(tmp_path)
    assert in_a == f"sqlite:///{tmp_path.resolve() / 'a' / 'audit.db'}"
    assert spool_target("sqlite:///audit.db") != in_a


def test_segment_starts_with_its_target_and_the_header_is_never_an_event(tmp_path: Path) -> None:
    """The header line names the target; read_batch hands out only events; bytes count only events."""
    import json

    spool = Spool(tmp_path, target="sqlite:////srv/a.db")
    try:
        lines = [event_line(i) for i in range(3)]
        for line in lines:
            spool.append(line)
        segment = next(tmp_path.glob("*.seg"))
        header = segment.read_bytes().split(b"\n")[0]
        assert json.loads(header) == {"sealog_spool": 1, "target": "sqlite:////srv/a.db"}
        batch = spool.read_batch(100)
        assert [line for _, got in batch for line in got] == lines
        assert spool.bytes == sum(len(line) + 1 for line in lines)
        assert list(Spool.read(segment)) == lines
        assert spool.read_batch(100) == []
    finally:
        spool.close()


def test_orphans_are_claimed_only_by_their_own_target(tmp_path: Path) -> None:
    """A's orphan is invisible to B, and the other way round; each claims its own whole."""
    a_segments = leave_orphan(tmp_path, "sqlite:////a.db", [event_line(1), event_line(2)])
    b_segments = leave_orphan(tmp_path, "sqlite:////b.db", [event_line(3)])
    for mine, target in ((a_segments, "sqlite:////a.db"), (b_segments, "sqlite:////b.db")):
        live = Spool(tmp_path, target=target)
        try:
            claimed = list(live.claim_orphans())
            assert [orphan.segments for orphan in claimed] == [mine]
            assert [line for path in mine for line in Spool.read(path)]
            for orphan in claimed:
                live.release(orphan)
            assert live.orphan_problems == {}
        finally:
            live.close()
    assert not list(tmp_path.glob("*.seg"))


def test_a_segment_without_header_from_an_older_version_is_claimed(tmp_path: Path) -> None:
    """Spools written before targets existed carry no header: they are delivered, not stranded."""
    legacy = leave_orphan(tmp_path, None, [event_line(1)])
    assert list(Spool.read(legacy[0])) == [event_line(1)]
    live = Spool(tmp_path, target="sqlite:////a.db")
    try:
        assert [orphan.segments for orphan in live.claim_orphans()] == [legacy]
    finally:
        live.close()


def test_a_corrupt_header_is_reported_once_never_claimed_and_cleared_when_gone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An orphan whose target cannot be read is not guessed at: reported and logged once per problem."""
    import logging

    bad = leave_orphan(tmp_path, "sqlite:////a.db", [event_line(1)])[0]
    bad.write_bytes(b'{"sealog_spool":1,"target":\n' + event_line(1) + b"\n")  # torn JSON header
    live = Spool(tmp_path, target="sqlite:////a.db")
    try:
        with caplog.at_level(logging.WARNING, logger="sealog"):
            for _ in range(3):
                assert list(live.claim_orphans()) == []
        warnings = [r for r in caplog.records if r.name == "sealog" and str(bad) in r.getMessage()]
        assert len(warnings) == 1
        assert live.orphan_problems == {str(bad): "its spool header is corrupt"}
        assert bad.exists()
        bad.unlink()  # an operator dealt with it
        assert list(live.claim_orphans()) == []
        assert live.orphan_problems == {}
    finally:
        live.close()


def test_a_header_from_a_future_format_is_not_claimed(tmp_path: Path) -> None:
    """A newer sealog's spool format is not ours to interpret: reported, left in place."""
    bad = leave_orphan(tmp_path, "sqlite:////a.db", [event_line(1)])[0]
    bad.write_bytes(b'{"sealog_spool":2,"targets":["x"]}\n' + event_line(1) + b"\n")
    live = Spool(tmp_path, target="sqlite:////a.db")
    try:
        assert list(live.claim_orphans()) == []
        assert "not format 1" in live.orphan_problems[str(bad)]
    finally:
        live.close()


def test_spool_problems_lists_unreadable_files_without_touching_the_directory(tmp_path: Path) -> None:
    """What ``sealog stats`` shows: the corrupt segment is named, and no owner files are created."""
    from sealog._spool import spool_problems

    good = leave_orphan(tmp_path, "sqlite:////a.db", [event_line(1)])
    bad = leave_orphan(tmp_path, "sqlite:////b.db", [event_line(2)])[0]
    bad.write_bytes(b'{"sealog_spool":1,"target":\n')
    before = sorted(tmp_path.iterdir())
    assert spool_problems(tmp_path) == {str(bad): "its spool header is corrupt"}
    assert sorted(tmp_path.iterdir()) == before
    assert good[0].exists()
    assert spool_problems(tmp_path / "missing") == {}
