"""The examples run: FastAPI and Flask in-process with their test clients, Django as its README starts it."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from starlette.testclient import TestClient

from sealog import AuditLog

from .conftest import stored

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fastapi_example_audits_with_request_and_user(default_log: AuditLog) -> None:
    """POST /documents/{id}/publish stores an event with the user and request id; GET /audit shows it."""
    app = load("example_fastapi", EXAMPLES / "fastapi_app" / "app.py").app
    client = TestClient(app)
    response = client.post("/documents/d-1/publish", headers={"x-user": "u-1", "x-request-id": "ex-1"})
    [event] = stored(default_log, "demo")
    assert (event.event_id, event.actor_id, event.request_id, event.target_id) == (
        response.json()["event_id"], "u-1", "ex-1", "d-1")
    assert [e["event_id"] for e in client.get("/audit").json()] == [event.event_id]


def test_flask_example_audits_through_logging(default_log: AuditLog) -> None:
    """The approve view's log call becomes invoice.approve with the middleware's request context."""
    client = load("example_flask", EXAMPLES / "flask_app" / "app.py").app.test_client()
    client.post("/invoices/inv-1/approve", headers={"X-User": "u-2", "X-Request-ID": "ex-2"})
    [event] = stored(default_log, "demo")
    assert (event.action, event.actor_id, event.request_id, event.target_id) == ("invoice.approve", "u-2", "ex-2", "inv-1")
    assert [e["action"] for e in client.get("/audit").json] == ["invoice.approve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_django_example_runs_as_its_readme_says(tmp_path: Path) -> None:
    """migrate, runserver, a POST and a bulk update over HTTP, then `manage.py sealog query|verify` see the events."""
    project = EXAMPLES / "django_project"
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE" and not k.startswith("SEALOG_")}
    env = {**inherited, "EXAMPLE_STATE_DIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    manage = [sys.executable, "manage.py"]

    def run(*args: str) -> str:
        done = subprocess.run([*manage, *args], check=False, cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("migrate", "--verbosity", "0")
    port = free_port()
    server = subprocess.Popen([*manage, "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                created = httpx.post(f"http://127.0.0.1:{port}/notes/", data={"title": "hi"},
                                     headers={"x-request-id": "dj-ex-1"})
                break
            except httpx.ConnectError:
                assert server.poll() is None, server.stderr and server.stderr.read()
                assert time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)  # the server process is starting: nothing to await but its socket
        assert (created.status_code, created.headers["x-request-id"]) == (201, "dj-ex-1")
        assert httpx.post(f"http://127.0.0.1:{port}/notes/archive/").json() == {"archived": 1}
    finally:
        server.send_signal(signal.SIGINT)  # a clean exit: the AuditLog drains its spool at exit
        server.wait(90)  # a hang guard; draining at exit is slow only on a loaded machine
    lines = run("sealog", "query", "--tenant", "demo", "--format", "jsonl")
    assert '"action":"notes.note.bulk_update"' in lines.replace(" ", "")
    assert '"request_id":"dj-ex-1"' in lines.replace(" ", "")
    assert "2 events in 1 chains: ok" in run("sealog", "verify")
