"""The logging bridge: extra={"audit": {...}} becomes an event; nothing else does; nothing raises."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sealog import AuditLog
from sealog.integrations.logging import AuditHandler

from .conftest import stored


@pytest.fixture
def logger(log: AuditLog) -> Iterator[logging.Logger]:
    logger = logging.getLogger("app.audit-test")
    handler = AuditHandler(log)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger
    logger.removeHandler(handler)


def test_a_record_with_an_audit_dict_becomes_that_event(log: AuditLog, logger: logging.Logger) -> None:
    """Every key of extra['audit'] is an emit() argument; the log message itself is not recorded."""
    logger.info("user %s exported", "u-1", extra={"audit": {
        "tenant_id": "acme", "action": "data.export", "actor": ("user", "u-1"), "metadata": {"rows": 3}}})
    [event] = stored(log)
    assert (event.action, event.actor_id, event.metadata) == ("data.export", "u-1", {"rows": 3})


def test_records_without_an_audit_dict_are_ignored(log: AuditLog, logger: logging.Logger) -> None:
    """Ordinary log lines through the same handler record nothing."""
    logger.info("plain line")
    logger.warning("with other extra", extra={"user": "u-1"})
    logger.info("marker", extra={"audit": {"tenant_id": "acme", "action": "marker.seen"}})
    assert [e.action for e in stored(log)] == ["marker.seen"]


def test_the_bound_context_fills_the_event(log: AuditLog, logger: logging.Logger) -> None:
    """Logged inside log.context(...), the event gets the context's request and tenant."""
    with log.context(tenant_id="acme", request_id="r-9"):
        logger.info("login", extra={"audit": {"action": "auth.login", "actor": ("user", "u-2")}})
    assert stored(log)[0].request_id == "r-9"


@pytest.mark.allow_sealog_errors
@pytest.mark.parametrize("audit", [
    {"action": "no.tenant"},
    {"tenant_id": "acme", "action": "Bad Action"},
    {"tenant_id": "acme", "action": "a.b", "unknown_field": 1},
    ["not", "a", "dict"],
])
def test_a_bad_audit_dict_is_reported_on_the_sealog_logger_never_raised(
        log: AuditLog, logger: logging.Logger, audit: object, caplog: pytest.LogCaptureFixture) -> None:
    """The caller's log call returns normally; the sealog logger gets an ERROR naming the call site."""
    with caplog.at_level(logging.ERROR, logger="sealog"):
        logger.info("oops", extra={"audit": audit})
    [record] = [r for r in caplog.records if r.name == "sealog"]
    assert (record.levelno, "test_logging.py" in record.getMessage()) == (logging.ERROR, True)
    assert stored(log) == []


def test_log_none_uses_the_module_default(default_log: AuditLog) -> None:
    """AuditHandler() without a log emits to sealog.configure's default."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.audit = {"tenant_id": "acme", "action": "via.default"}
    AuditHandler().handle(record)
    assert [e.action for e in stored(default_log)] == ["via.default"]
