"""The writer process: killed, it is restarted and nothing is lost; it never outlives the app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sealog import AuditLog
from sealog._sinks import ProcessSink


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


@pytest.mark.allow_sealog_errors
def test_killed_writer_process_is_replaced_and_nothing_is_lost(tmp_path: Path, db_url: str) -> None:
    """SIGKILL the child that seals and inserts: the next batch starts a new one; all events land."""
    log = AuditLog(db_url, spool_dir=tmp_path / "spool")
    try:
        first = [log.emit(tenant_id="acme", action="test.worker") for _ in range(100)]
        assert log.flush()
        sink = log._sink
        assert isinstance(sink, ProcessSink)
        assert sink._proc is not None
        old_pid = sink._proc.pid
        os.kill(old_pid, signal.SIGKILL)
        second = [log.emit(tenant_id="acme", action="test.worker") for _ in range(100)]
        assert log.flush(20)
        assert sink._proc is not None
        assert sink._proc.pid != old_pid
        stored = {e.event_id for e in log.iter_events("acme")}
        assert stored == set(first + second)
        assert log.verify().ok
    finally:
        log.close()


def test_thread_writer_is_the_same_pipeline_in_process(tmp_path: Path, db_url: str) -> None:
    """writer='thread' stores the same way, with no child process."""
    log = AuditLog(db_url, spool_dir=tmp_path / "spool", writer="thread")
    try:
        ids = [log.emit(tenant_id="acme", action="test.thread") for _ in range(50)]
        assert log.flush()
        assert not isinstance(log._sink, ProcessSink)
        assert {e.event_id for e in log.iter_events("acme")} == set(ids)
    finally:
        log.close()


APP = """
import sys
from sealog import AuditLog
log = AuditLog(sys.argv[1], spool_dir=sys.argv[2])
log.emit(tenant_id="acme", action="test.app")
assert log.flush(20)
print(log._sink._proc.pid, flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_writer_process_exits_with_the_application(tmp_path: Path, db_url: str) -> None:
    """When the application dies (SIGKILL), its writer process sees EOF and exits too."""
    app = subprocess.Popen([sys.executable, "-c", APP, db_url, str(tmp_path / "spool")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert app.stdout is not None
    worker = int(app.stdout.readline())
    assert alive(worker)
    app.kill()
    app.wait()
    deadline = time.monotonic() + 10
    while alive(worker):
        assert time.monotonic() < deadline, "the writer process outlived its application"
        time.sleep(0.05)
    app.stdout.close()
    if app.stdin is not None:
        app.stdin.close()
