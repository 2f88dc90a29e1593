"""Shared fixtures. Server fixtures (PostgreSQL, RabbitMQ) live in tests/fixtures/."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealog import AuditLog

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.rabbitmq", "tests.fixtures.rabbitcluster"]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def audit_log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(db_url, spool_dir=tmp_path / "spool")
    yield log
    log.close()


class _Swallowed(logging.Handler):
    """Collects what sealog logged as errors, so a swallowed failure fails the test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_swallowed_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """sealog never raises delivery failures, so the tests check its error log instead."""
    handler = _Swallowed()
    logger = logging.getLogger("sealog")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    if handler.records and not request.node.get_closest_marker("allow_sealog_errors"):
        lines = "\n".join(r.getMessage() for r in handler.records[:5])
        pytest.fail(f"sealog logged errors during the test:\n{lines}")
