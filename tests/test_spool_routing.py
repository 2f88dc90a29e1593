"""Spool routing and orphan recovery: each target gets only its own orphans; bad ones are reported.

Several applications may share one spool directory (``SEALOG_SPOOL_DIR``). Each segment
names its target, and a dead process's events go only to the store they were meant for.
An orphan that cannot be read is reported (``Spool.orphan_problems``, one warning) and
never stops the delivery of the others.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealog import AuditLog
from sealog._event import Event, encode
from sealog._spool import Spool, spool_target

from .children import read_ids, start_emitter


def stored_ids(db: Path) -> Counter[str]:
    if not db.exists():
        return Counter()
    with sqlite3.connect(db) as conn:
        return Counter(r[0] for r in conn.execute("SELECT event_id FROM events"))


def kill(process: subprocess.Popen[str]) -> list[str]:
    """SIGKILL the emitter; the ids it printed in full before dying."""
    process.send_signal(signal.SIGKILL)
    assert process.stdout is not None
    assert process.stderr is not None
    rest = process.stdout.read()  # the file read_ids read from: its buffer holds ids too
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()
    return [line for line in rest.split("\n")[:-1] if line]  # the last one may be cut short


def event_lines(prefix: int, count: int) -> list[bytes]:
    return [encode(Event(event_id=f"00000000-0000-7000-{prefix:04d}-{i:012d}", tenant_id="acme",
                         action="test.orphan", occurred_at="2026-01-01T00:00:00.000000Z"))
            for i in range(count)]


def ids_of(lines: list[bytes]) -> set[str]:
    return {json.loads(line)["event_id"] for line in lines}


def leave_orphan(directory: Path, owner: str, target: str, lines: list[bytes]) -> list[Path]:
    """The files of a process that died with ``lines`` undelivered, renamed to ``owner`` (scan order)."""
    dead = Spool(directory, target=target)
    for line in lines:
        dead.append(line)
    dead.close()
    (directory / f"{dead.owner}.lock").rename(directory / f"{owner}.lock")
    segments = []
    for path in sorted(directory.glob(f"{dead.owner}.*.seg")):
        segments.append(path.rename(directory / path.name.replace(dead.owner, owner)))
    return segments


@pytest.mark.allow_sealog_errors  # the child logs its outage; store A is away while it runs
def test_two_stores_sharing_a_spool_directory_each_get_only_their_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed process's events for store A never reach B's store; A later gets each once."""
    spool = tmp_path / "shared-spool"
    monkeypatch.setenv("SEALOG_SPOOL_DIR", str(spool))
    a_db, b_db = tmp_path / "a-later" / "audit.db", tmp_path / "b.db"
    child = start_emitter(f"sqlite:///{a_db}", spool, "acme")  # A's directory is missing: an outage
    returned = read_ids(child, 200)
    returned += kill(child)
    assert list(spool.glob("*.seg")), "A's events must be waiting in the shared spool"
    with AuditLog(f"sqlite:///{b_db}") as b:
        own = [b.emit(tenant_id="beta", action="test.own") for _ in range(5)]
        assert b.flush(30)
        assert set(stored_ids(b_db)) == set(own)
        (tmp_path / "a-later").mkdir()  # store A comes back, while B is still running
        with AuditLog(f"sqlite:///{a_db}") as a:
            assert a.flush(30)
            assert a.stats()["recovered_spools"] >= 1
    stored = stored_ids(a_db)
    assert len(returned) >= 200
    assert all(stored[eid] == 1 for eid in returned)
    assert set(stored_ids(b_db)) == set(own)
    assert not list(spool.glob("*.seg"))


@pytest.mark.allow_sealog_errors
def test_a_corrupt_orphan_is_reported_and_the_next_one_still_delivered(
        tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """An orphan sorted first whose header is unreadable: reported, logged, kept; the next is stored."""
    spool = tmp_path / "spool"
    target = spool_target(db_url)
    bad = leave_orphan(spool, "1-corrupt", target, event_lines(1, 5))[0]
    bad.write_bytes(b'{"sealog_spool":1,"tar\x00\n' + bad.read_bytes().partition(b"\n")[2])
    good = event_lines(2, 3)
    leave_orphan(spool, "2-readable", target, good)
    with caplog.at_level("WARNING", logger="sealog"), AuditLog(db_url, spool_dir=spool, writer="thread") as log:
        log.flush(30)
        assert log.spool.orphan_problems == {str(bad): "its spool header is corrupt"}
    assert set(stored_ids(Path(db_url.removeprefix("sqlite:///")))) == ids_of(good)
    assert [r.levelname for r in caplog.records if str(bad) in r.getMessage()] == ["WARNING"]
    assert bad.exists()


@pytest.mark.allow_sealog_errors
def test_a_read_error_mid_orphan_is_reported_and_retried_by_a_later_scan(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO half-way through one orphan: the next orphan is delivered, the lock let go, a rescan finishes it.

    An I/O error cannot be caused on demand, so ``Spool.read`` raises it after two lines.
    """
    spool = tmp_path / "spool"
    target = spool_target(db_url)
    failing, good = event_lines(1, 5), event_lines(2, 3)
    bad = leave_orphan(spool, "1-failing-disk", target, failing)[0]
    leave_orphan(spool, "2-readable", target, good)
    real_read = Spool.read

    def failing_read(path: Path) -> Iterator[bytes]:
        for number, line in enumerate(real_read(path)):
            if path == bad and number == 2:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            yield line

    monkeypatch.setattr(Spool, "read", staticmethod(failing_read))
    db = Path(db_url.removeprefix("sqlite:///"))
    with AuditLog(db_url, spool_dir=spool, writer="thread") as log:
        log.flush(30)
        assert log.spool.orphan_problems == {str(bad): "reading it failed: Input/output error"}
        assert set(stored_ids(db)) == ids_of(good)
        with (spool / "1-failing-disk.lock").open("rb") as lock:  # not held: any scan may retry it
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
        monkeypatch.undo()  # the disk recovers
        log._writer._last_scan = 0.0  # the next scan (every few seconds) is due now
        while log.spool.orphan_problems or bad.exists():
            log.flush(0.2)
    stored = stored_ids(db)
    assert set(stored) == ids_of(good) | ids_of(failing)
    assert max(stored.values()) == 1


CLAIMER = """
import json, sys
from sealog import AuditLog
with AuditLog(sys.argv[1], spool_dir=sys.argv[2], writer="thread") as log:
    log.flush(30)
    print(json.dumps(log.spool.orphan_problems))
"""


@pytest.mark.allow_sealog_errors
def test_another_users_orphan_is_reported_and_the_next_one_still_delivered() -> None:
    """A shared spool holding a dead root job's 0600 files: reported once, and the next orphan stored.

    Root ignores file modes, so as root the claiming application runs as ``nobody``, as it
    would in production; otherwise the orphan's files are made unreadable with chmod.
    """
    shared = Path(tempfile.mkdtemp(prefix="sealog-shared-"))
    try:
        shared.chmod(0o777)
        spool, db = shared / "spool", shared / "audit.db"
        url = f"sqlite:///{db}"
        target = spool_target(url)
        spool.mkdir()
        spool.chmod(0o777)
        unreadable = [*leave_orphan(spool, "1-root-job", target, event_lines(1, 4)), spool / "1-root-job.lock"]
        good = event_lines(2, 3)
        readable = [*leave_orphan(spool, "2-app", target, good), spool / "2-app.lock"]
        command = [sys.executable, "-c", CLAIMER, url, str(spool)]
        if os.geteuid() == 0:
            for path in readable:
                os.chown(path, 65534, 65534)
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        else:
            for path in unreadable:
                path.chmod(0)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")})
        assert done.returncode == 0, done.stderr
        problems = json.loads(done.stdout)
        assert problems == {str(spool / "1-root-job.lock"): "cannot open its lock file: Permission denied"}
        assert done.stderr.count("cannot recover the orphaned spool file") == 1
        assert set(stored_ids(db)) == ids_of(good)
        assert all(path.exists() for path in unreadable)
    finally:
        shutil.rmtree(shared)
