"""A service over a fresh SQLite store, with a key per tenant and an admin key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sealog import AuditLog
from sealog.server.app import create_app
from sealog.server.keys import KeyStore


@dataclass
class Service:
    log: AuditLog
    client: TestClient
    keys: KeyStore
    acme: str
    globex: str
    admin: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool")
    assert log.flush(30)
    keys = KeyStore(log.url)
    keys.migrate()
    app = create_app(log, keys)
    with TestClient(app) as client:
        yield Service(log, client, keys, keys.create("acme")[1], keys.create("globex")[1], keys.create(None)[1])
    log.close()
