"""Fixtures for the integration tests: an AuditLog on SQLite (thread writer) and the module default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sealog
from sealog import AuditLog, Event


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    audit = AuditLog(db_url, spool_dir=tmp_path / "spool", writer="thread")
    yield audit
    audit.close()


@pytest.fixture
def default_log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """sealog.configure(...): what integrations use when they are given log=None."""
    audit = sealog.configure(db_url, spool_dir=tmp_path / "default-spool", writer="thread")
    yield audit
    audit.close()


def stored(log: AuditLog, tenant_id: str = "acme", **filters: str) -> list[Event]:
    """Every stored event of the tenant that matches, oldest first, once all emitted ones are stored."""
    assert log.flush(10), log.stats()
    return list(reversed(log.query(tenant_id, limit=1000, **filters).events))
