"""`sealog keys` and `sealog serve --demo`, run as a user runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def sealog(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealog", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    """create prints the key once; list never shows it; revoke marks it; mistakes exit 2."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    made = sealog("keys", "create", "--tenant", "acme", "--name", "billing", "--url", url, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("slk_")
    listed = sealog("keys", "list", "--url", url, cwd=tmp_path).stdout
    assert "tenant acme" in listed
    assert "billing" in listed
    assert secret not in listed
    key_id = listed.split()[0]
    assert sealog("keys", "revoke", key_id, "--url", url, cwd=tmp_path).returncode == 0
    assert "revoked" in sealog("keys", "list", "--url", url, cwd=tmp_path).stdout
    assert sealog("keys", "revoke", key_id, "--url", url, cwd=tmp_path).returncode == 2
    assert sealog("keys", "create", "--url", url, cwd=tmp_path).returncode == 2  # neither --tenant nor --admin
    assert secret.encode() not in (tmp_path / "audit.db").read_bytes()  # only the hash is stored


def test_serve_demo_is_the_main_job(tmp_path: Path) -> None:
    """`sealog serve --demo` (what scripts/run.sh runs): a populated tenant and a working key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SEALOG_URL": ""}
    server = subprocess.Popen([sys.executable, "-m", "sealog", "serve", "--demo", "--port", str(port)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "API key:" in line, server.stderr.read() if server.poll() is not None else line
        key = line.rsplit(" ", 1)[1].strip()
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        page = httpx.get(f"http://127.0.0.1:{port}/v1/events?limit=1000",
                         headers={"Authorization": f"Bearer {key}"}).json()
        assert len(page["events"]) > 100
        assert {e["action"] for e in page["events"]} >= {"auth.login", "content.publish", "settings.change"}
        assert (tmp_path / "sealog.db").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
