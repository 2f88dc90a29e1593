"""`sealog serve --workers N`: several processes on one socket and one spool directory, run as users run it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sealog._note import Verifier, generate_key, open_checkpoint
from sealog.server.auth import _CACHE_SECONDS
from sealog.server.keys import KeyStore
from sealog.stores import open_store
from sealog.stores.base import TreeStore

pytestmark = pytest.mark.slow  # each test starts a supervisor and its worker processes


@dataclass
class Served:
    """A running `sealog serve --workers N`: its supervisor process, port and stderr."""

    process: subprocess.Popen[str]
    port: int
    errors: Path
    spool: Path
    lines: list[str] = field(default_factory=list)

    def workers(self) -> list[int]:
        """The supervisor's worker processes (not their writer processes), from /proc."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in children if b"sealog.server.workers" in _cmdline(int(c))]

    def stderr(self) -> str:
        return self.errors.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


@contextmanager
def served(tmp_path: Path, url: str, workers: int, *extra: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    spool = tmp_path / "spool"
    errors = tmp_path / f"serve-{uuid.uuid4().hex[:6]}.err"
    with errors.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "sealog", "serve", "--url", url, "--port", "0", "--workers", str(workers), *extra],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "SEALOG_SPOOL_DIR": str(spool), **(env or {})})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the supervisor prints it once every worker serves
        assert "workers serving on http://127.0.0.1:" in line, errors.read_text()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        yield Served(process, port, errors, spool)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def post(port: int, key: str, events: list[dict[str, Any]], retry_key: str | None = None) -> tuple[int, Any]:
    """(status, decoded body) of one POST /v1/events on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    if retry_key:
        headers["idempotency-key"] = retry_key
    try:
        conn.request("POST", "/v1/events", body=json.dumps(events), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def events(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"action": "auth.login", "actor_type": "user", "actor_id": f"u-{i}", "target_type": "session",
             "target_id": f"{tag}-{i}", "metadata": {"n": i}} for i in range(n)]


def stored_ids(url: str, tenant: str) -> list[str]:
    """Every stored event id of the tenant's chain, in chain order (a duplicate would appear twice)."""
    store = open_store(url)
    try:
        return [e.event_id for e in store.iter_events(tenant)]
    finally:
        store.close()


def wait_stored(url: str, tenant: str, wanted: set[str], seconds: float = 90) -> list[str]:
    """The stored ids once ``wanted`` are all among them; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        ids = stored_ids(url, tenant)
        if wanted <= set(ids) or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)


def migrate(url: str) -> None:
    store = open_store(url)
    try:
        store.migrate()
    finally:
        store.close()


def segments(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.seg"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@dataclass
class Load:
    """Clients that POST 10-event batches, each retried with its Idempotency-Key until answered 202."""

    port: int
    key: str
    acked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, number: int, requests: int) -> None:
        for request in range(requests):
            body, retry_key = events(10, f"c{number}-r{request}"), f"c{number}-r{request}"
            for _ in range(100):  # the same body and key until answered, as a careful client does
                try:
                    status, answer = post(self.port, self.key, body, retry_key)
                except (OSError, http.client.HTTPException):  # died with its worker: unknown, so retry
                    continue
                if status == 202:
                    with self.lock:
                        self.acked.extend(answer["event_ids"])
                    break
                if status != 503:
                    self.failures.append(f"{status}: {answer}")
                    return
            else:
                self.failures.append(f"client {number}: request {request} never answered 202")
                return


def test_worker_killed_mid_load_loses_and_duplicates_nothing(tmp_path: Path, store_url: str) -> None:
    """SIGKILL one of two workers under load: every acknowledged id is stored exactly once, chain intact."""
    migrate(store_url)
    key = KeyStore(store_url).create("acme")[1]
    with served(tmp_path, store_url, 2) as service:
        first = service.workers()
        assert len(first) == 2
        load = Load(service.port, key)
        acked = load.acked
        threads = [threading.Thread(target=load.client, args=(n, 40)) for n in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(first[0], signal.SIGKILL)  # mid-load: the clients go on
        for thread in threads:
            thread.join(300)
        assert not load.failures, load.failures
        assert len(acked) == 4 * 40 * 10
        # While the service runs, a live worker (or the dead one's replacement) delivers the dead worker's spool.
        ids = wait_stored(store_url, "acme", set(acked))
        assert set(acked) <= set(ids)
        dead = f"{first[0]}-"  # the killed worker's spool owner: claimed, delivered and removed by a live one
        deadline = time.monotonic() + 60
        while any(p.name.startswith(dead) for p in service.spool.iterdir()):
            assert time.monotonic() < deadline, "nobody claimed the killed worker's spool"
            time.sleep(0.2)
        replaced = service.workers()
        assert len(replaced) == 2
        assert first[0] not in replaced
        assert f"worker {first[0]} ended (signal 9)" in service.stderr()
        assert service.stop() == 0
    ids = stored_ids(store_url, "acme")
    assert len(ids) == len(set(ids)) == len(set(acked))  # retries of a request that died with its worker included
    assert set(ids) == set(acked)
    store = open_store(store_url)
    try:
        assert store.verify("acme").ok
    finally:
        store.close()
    assert segments(service.spool) == []


def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    """SIGTERM to the supervisor: each worker answers what it has, drains its spool and exits; exit 0."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    migrate(url)
    key = KeyStore(url).create("acme")[1]
    with served(tmp_path, url, 3) as service:
        for n in range(30):  # a new connection each time, so the requests spread over the workers
            assert post(service.port, key, events(5, f"r{n}"))[0] == 202
        code = service.stop()
        assert code == 0, service.stderr()
    # Nothing runs now: what is stored was stored by the workers before they exited.
    store = open_store(url)
    try:
        assert sum(h.seq for h in store.heads()) == 150
    finally:
        store.close()
    assert segments(service.spool) == []  # every worker closed its AuditLog: nothing left for a next start
    assert list(service.spool.glob("*.lock")) == []


def _server_pid_of(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """Which worker holds the accepted end of the connection from ``client_port`` (via /proc/net/tcp)."""
    wanted = f":{server_port:04X}", f":{client_port:04X}"
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[1].endswith(wanted[0]) and cols[2].endswith(wanted[1]):
                inode = cols[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def test_revoked_key_is_refused_by_every_worker(tmp_path: Path) -> None:
    """A key revoked while two workers have it cached stops working in both within the cache time."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    migrate(url)
    keys = KeyStore(url)
    made, secret = keys.create("acme")
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    # Idle connections stay open past the cache time, so each worker is asked on a connection it accepted.
    with served(tmp_path, url, 2, "--keep-alive-timeout", "60") as service:
        workers = service.workers()
        held: dict[int, http.client.HTTPConnection] = {}  # one keep-alive connection in each worker
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
            conn.request("POST", "/v1/events", body=json.dumps(events(1, "warm")), headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 202
            owner = _server_pid_of(conn.sock.getsockname()[1], service.port, workers)
            if owner is not None and owner not in held:
                held[owner] = conn
            else:
                conn.close()
            if len(held) == len(workers):
                break
        assert sorted(held) == sorted(workers), "could not reach both workers"
        assert keys.revoke(made.key_id)
        revoked = time.monotonic()
        while time.monotonic() < revoked + _CACHE_SECONDS + 0.5:  # the documented bound, not a timing assert
            time.sleep(0.1)
        for conn in held.values():  # each worker, on the connection it accepted
            conn.request("POST", "/v1/events", body=json.dumps(events(1, "late")), headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 401
            conn.close()
        assert service.stop() == 0


def test_checkpoints_signed_by_several_workers_stay_consistent(tmp_path: Path) -> None:
    """Three workers signing every 0.3 s: each checkpoint verifies and is a prefix of the one tree."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    migrate(url)
    key = KeyStore(url).create("acme")[1]
    signer, verifier_text = generate_key("test.example")
    key_file = tmp_path / "signer.key"
    key_file.write_text(signer + "\n")
    verifier = Verifier.from_text(verifier_text)
    with served(tmp_path, url, 3, "--checkpoint-every", "0.3", env={"SEALOG_SIGNING_KEY": str(key_file)}) as service:
        for n in range(120):
            assert post(service.port, key, events(5, f"r{n}"))[0] == 202
        store = open_store(url)
        assert isinstance(store, TreeStore)
        try:
            deadline = time.monotonic() + 60
            while (latest := store.latest_checkpoint("acme")) is None or latest.tree_size < 600:
                assert time.monotonic() < deadline, "no checkpoint covers every event"
                time.sleep(0.1)
            with sqlite3.connect(tmp_path / "audit.db") as db:
                rows = db.execute("SELECT tree_size, root, note FROM checkpoints WHERE tenant_id = 'acme' "
                                  "ORDER BY tree_size").fetchall()
            assert len(rows) >= 2
            for size, root, note in rows:
                checkpoint = open_checkpoint(note, [verifier])
                assert (checkpoint.size, checkpoint.root) == (size, bytes(root))
                assert store.tree_root("acme", size) == bytes(root)  # a prefix of the same tree: consistent
            assert len({size for size, _, _ in rows}) == len(rows)  # one root per size
        finally:
            store.close()
        assert service.stop() == 0
    assert "not signing" not in service.stderr()  # no worker took another's checkpoint for a rewrite
    assert "Traceback" not in service.stderr()


def test_workers_stop_when_the_supervisor_dies(tmp_path: Path) -> None:
    """SIGKILL the supervisor: its workers notice, stop serving and drain their spools."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    migrate(url)
    key = KeyStore(url).create("acme")[1]
    with served(tmp_path, url, 2) as service:
        workers = service.workers()
        for n in range(10):
            assert post(service.port, key, events(3, f"r{n}"))[0] == 202
        service.process.kill()
        service.process.wait(30)
        deadline = time.monotonic() + 60
        while any(_cmdline(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers outlived their supervisor"
            time.sleep(0.1)
    assert len(stored_ids(url, "acme")) == 30
    assert segments(service.spool) == []


def test_bad_worker_counts_and_busy_ports_exit_2(tmp_path: Path) -> None:
    """--workers 0 and a port already taken are usage errors, named on stderr."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    zero = subprocess.run([sys.executable, "-m", "sealog", "serve", "--url", url, "--workers", "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert zero.returncode == 2
    assert "--workers" in zero.stderr
    with served(tmp_path, url, 2) as service:
        busy = subprocess.run([sys.executable, "-m", "sealog", "serve", "--url", url, "--workers", "2",
                               "--port", str(service.port)], capture_output=True, text=True, timeout=60,
                              check=False, env={**os.environ, "SEALOG_SPOOL_DIR": str(tmp_path / "other")})
        assert busy.returncode == 2
        assert f"cannot listen on 127.0.0.1:{service.port}" in busy.stderr
        assert service.stop() == 0
