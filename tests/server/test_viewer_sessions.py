"""Viewer sign-ins shared by the workers of `sealog serve --workers N` (one spool directory), and kept across
a restart; the shared record holds the key's id, never its secret."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from sealog import AuditLog
from sealog.server.app import create_app
from sealog.server.keys import KeyStore


def test_a_sign_in_on_one_worker_holds_on_another_and_a_sign_out_ends_it_everywhere(tmp_path: Path) -> None:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread")
    try:
        log.emit(tenant_id="acme", action="auth.login", actor=("user", "u-1"))
        assert log.flush(20)
        keys = KeyStore(log.url)
        key, secret = keys.create("acme", "viewer")
        with TestClient(create_app(log, keys), follow_redirects=False) as one, \
                TestClient(create_app(log, keys), follow_redirects=False) as two:
            assert two.get("/events").status_code == 303  # not signed in anywhere yet
            assert one.post("/signin", data={"api_key": secret}).status_code == 303
            two.cookies = one.cookies  # the browser's next request lands on the other worker
            listed = two.get("/events")
            assert listed.status_code == 200
            assert "auth.login" in listed.text
            records = list((tmp_path / "spool" / "sessions").glob("*.rec"))
            assert len(records) == 1
            assert secret.encode() not in records[0].read_bytes()
            assert key.key_id.encode() in records[0].read_bytes()
            with TestClient(create_app(log, keys), follow_redirects=False) as restarted:
                restarted.cookies = one.cookies
                assert restarted.get("/events").status_code == 200  # a restart keeps the sign-in
            assert two.post("/signout").status_code == 303
            one_after = one.get("/events")
            assert one_after.status_code == 303  # ended on the worker that signed in, too
            assert one_after.headers["location"] == "/"
    finally:
        log.close()


def test_revoking_the_key_ends_a_shared_session(tmp_path: Path) -> None:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread")
    try:
        keys = KeyStore(log.url)
        key, secret = keys.create("acme", "viewer")
        with TestClient(create_app(log, keys), follow_redirects=False) as one, \
                TestClient(create_app(log, keys), follow_redirects=False) as two:
            assert one.post("/signin", data={"api_key": secret}).status_code == 303
            assert keys.revoke(key.key_id)
            two.cookies = one.cookies  # this worker never cached the key: it sees the revocation at once
            assert two.get("/events").status_code == 303
    finally:
        log.close()
