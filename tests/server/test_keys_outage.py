"""API keys in PostgreSQL: a server that refuses the login is an outage (503), never a 500."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from sealog import AuditLog, StoreUnavailable
from sealog.server.app import create_app
from sealog.server.keys import KeyStore
from tests.fixtures.pgserver import PgServer


def test_a_refused_login_is_store_unavailable_and_a_503(pg_server: PgServer, pg_url: str, tmp_path: Path) -> None:
    """The service's role loses its login while serving: the next key check is StoreUnavailable, answered 503."""
    admin_keys = KeyStore(pg_url)
    admin_keys.migrate()
    role = f"keys_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON sealog_api_keys TO {role}")
    keys = KeyStore(pg_server.url(pg_url.rsplit("/", 1)[1], user=role))
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread")
    try:
        with TestClient(create_app(log, keys), raise_server_exceptions=False) as client:
            secret = admin_keys.create("acme")[1]  # never checked yet: no cached answer
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f"ALTER ROLE {role} NOLOGIN")
            with pytest.raises(StoreUnavailable, match="PostgreSQL"):
                keys.check(secret)
            answer = client.post("/v1/events", json={"tenant_id": "acme", "action": "a.b"},
                                 headers={"Authorization": f"Bearer {secret}"})
            assert answer.status_code == 503, answer.text
    finally:
        log.close()
