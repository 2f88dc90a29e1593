"""Issue 9, real uvicorn on loopback: slow clients are cut off, and no call blocks the event loop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sealog import AuditLog
from sealog.server.app import create_app
from sealog.server.guard import Limits, server_config
from sealog.server.keys import KeyStore
from tests.fixtures.liveserver import serving as live


@contextmanager
def serving(log: AuditLog, keys: KeyStore, limits: Limits) -> Iterator[str]:
    """The service as `sealog serve` runs it (same uvicorn config), in a thread."""
    with live(create_app(log, keys, limits=limits),
              lambda app, port: server_config(app, "127.0.0.1", port, limits, log_level="warning")) as url:
        yield url


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread")
    assert audit.flush(30)
    yield audit
    audit.close()


def test_half_open_connections_are_closed_and_do_not_hold_the_server(log: AuditLog) -> None:
    """200 clients send half a request line: /healthz still answers, and each is closed within the header timeout."""
    limits = Limits(header_timeout=1.0)
    with serving(log, KeyStore(log.url), limits) as url:
        host, port = url.removeprefix("http://").split(":")
        sockets = []
        for _ in range(200):
            conn = socket.create_connection((host, int(port)))
            conn.sendall(b"GET /healthz HT")
            sockets.append(conn)
        opened = time.monotonic()
        started = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
        assert time.monotonic() - started < 1.0
        for conn in sockets:
            conn.settimeout(max(0.1, opened + limits.header_timeout + 2.0 - time.monotonic()))
            assert conn.recv(100) == b""  # closed by the server, not by our timeout (which would raise)
            conn.close()
        assert time.monotonic() - opened < limits.header_timeout + 2.0


def test_a_body_that_stops_arriving_gets_408(log: AuditLog) -> None:
    """Headers promise 100 bytes, 10 arrive: 408 once the body timeout passes, and the connection closes."""
    keys = KeyStore(log.url)
    secret = keys.create("acme")[1]
    with serving(log, keys, Limits(body_timeout=0.5)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\"".encode())
            started = time.monotonic()
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"did not arrive within 0.5 s" in answer
        assert 0.4 < time.monotonic() - started < 3


@pytest.mark.slow
def test_healthz_stays_fast_while_the_viewer_verifies_100k_events(log: AuditLog) -> None:
    """A 10**5-event verify from the viewer runs in its own pool: /healthz, polled every 50 ms, never takes 1 s."""
    for start in range(0, 100_000, 5_000):
        for i in range(start, start + 5_000):
            log.emit(tenant_id="acme", action="load.test", actor=("user", f"u-{i % 50}"), metadata={"i": i})
        assert log.flush(120)
    keys = KeyStore(log.url)
    secret = keys.create("acme")[1]
    with serving(log, keys, Limits()) as url, httpx.Client(base_url=url, timeout=120) as viewer:
        assert viewer.post("/signin", data={"api_key": secret}).status_code == 303
        result: dict[str, object] = {}

        def verify() -> None:
            started = time.monotonic()
            result["page"] = viewer.post("/verify").text
            result["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=verify)
        thread.start()
        timings = []
        with httpx.Client(base_url=url, timeout=10) as poller:
            while thread.is_alive():
                started = time.monotonic()
                assert poller.get("/healthz").status_code == 200
                timings.append(time.monotonic() - started)
                time.sleep(0.05)
        thread.join()
    assert "100000 events checked: intact" in str(result["page"])
    assert len(timings) >= 5, f"the verify took only {result['seconds']:.2f} s: too short to tell"
    assert max(timings) < 1.0, f"slowest /healthz {max(timings):.3f} s"
    print(f"verify {result['seconds']:.2f} s; /healthz max {max(timings) * 1000:.1f} ms, "
          f"median {sorted(timings)[len(timings) // 2] * 1000:.1f} ms over {len(timings)} polls")


def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(log: AuditLog, capfd: pytest.CaptureFixture[str]) -> None:
    """Headers promise 100 bytes, 10 arrive, then the client closes: the service logs no 'Exception in ASGI
    application' (a hang-up is not a server error) and keeps serving."""
    keys = KeyStore(log.url)
    secret = keys.create("acme")[1]
    with serving(log, keys, Limits(body_timeout=5.0)) as url:
        host, port = url.removeprefix("http://").split(":")
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                             "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\"".encode())
                time.sleep(0.2)  # the server is inside the body loop now
        time.sleep(0.5)
        assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
    errors = capfd.readouterr().err
    assert "ClientDisconnect" not in errors, errors[-2000:]
    assert "Exception in ASGI application" not in errors, errors[-2000:]
