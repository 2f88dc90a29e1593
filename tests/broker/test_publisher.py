"""Emitters in broker mode: AuditLog(broker=...) publishes each event, confirmed, to the exchange."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sealog import AuditLog
from sealog._redact import REDACTED
from sealog._spool import QUARANTINE
from tests.fixtures.rabbitmq import ConsumerProcess, Names, row_counts, wait_for

Consume = Callable[..., ConsumerProcess]


def test_emit_through_the_broker_end_to_end(consumer: Consume, rabbit_url: str, names: Names,
                                            tmp_path: Path) -> None:
    """AuditLog(broker=...) -> RabbitMQ -> sealog consume -> store, then queried like any event."""
    consumer("auth.#", "content.*")
    with AuditLog(broker=rabbit_url, exchange=names.exchange, spool_dir=tmp_path / "spool") as log:
        first = log.emit(tenant_id="acme", action="auth.login", actor=("user", "u-1"), ip_address="203.0.113.5",
                         metadata={"method": "password", "password": "hunter2"})
        log.event("acme").action("content.publish").actor("agent", "publisher").target("post", "p-1") \
            .failed("PLATFORM_ERROR", "Rate limit exceeded").emit()
        ids = [first, *(log.emit(tenant_id="beta", action="auth.logout", actor=("user", f"u-{i}"))
                        for i in range(200))]
        assert log.flush(timeout=30)
        assert log.stats()["stored"] == 202  # confirmed by the broker
    db = tmp_path / "audit.db"
    wait_for(lambda: row_counts(db)[0] == 202, what="every event in the store")
    with AuditLog(f"sqlite:///{db}", spool_dir=tmp_path / "reader-spool") as reader:
        got = reader.get("acme", first)
        assert got is not None
        assert (got.action, got.actor_id, got.ip_address) == ("auth.login", "u-1", "203.0.113.5")
        assert got.metadata == {"method": "password", "password": REDACTED}
        failed = reader.query("acme", action="content.*").events
        assert [(e.outcome, e.error_code, e.target_id) for e in failed] == [("failure", "PLATFORM_ERROR", "p-1")]
        assert {e.event_id for e in reader.query("beta", limit=1000).events} == set(ids[1:])
        assert reader.verify().ok


def test_published_messages_follow_the_contract(rabbit_url: str, names: Names, amqp: Any, tmp_path: Path) -> None:
    """Persistent JSON messages to a durable topic exchange, routing key = action, message_id = event_id."""
    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True)
    amqp.queue_bind(names.queue, names.exchange, routing_key="#")
    with AuditLog(broker=rabbit_url, exchange=names.exchange, spool_dir=tmp_path / "spool", writer="thread") as log:
        event_id = log.emit(tenant_id="acme", action="gpt.oauth.token_exchange", metadata={"n": 1})
        assert log.flush(timeout=30)
    method, props, body = amqp.basic_get(names.queue, auto_ack=True)
    assert method.routing_key == "gpt.oauth.token_exchange"
    assert (props.delivery_mode, props.content_type, props.message_id) == (2, "application/json", event_id)
    sent = json.loads(body)
    assert (sent["event_id"], sent["tenant_id"], sent["metadata"]) == (event_id, "acme", {"n": 1})
    passive = amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True, passive=True)
    assert passive.method.NAME == "Exchange.DeclareOk"


@pytest.mark.allow_sealog_errors
def test_unroutable_event_is_quarantined_not_dropped(rabbit_url: str, names: Names, amqp: Any,
                                                     tmp_path: Path) -> None:
    """An action no queue is bound for comes back from the broker and lands in the local quarantine."""
    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True)
    amqp.queue_bind(names.queue, names.exchange, routing_key="auth.*")
    spool = tmp_path / "spool"
    with AuditLog(broker=rabbit_url, exchange=names.exchange, spool_dir=spool, writer="thread") as log:
        routed = [log.emit(tenant_id="acme", action="auth.login") for _ in range(20)]
        lost = log.emit(tenant_id="acme", action="billing.refund")
        assert log.flush(timeout=30)
        assert log.stats()["quarantined"] == 1
    record = json.loads((spool / QUARANTINE).read_text())
    assert json.loads(record["line"])["event_id"] == lost
    assert "no queue is bound" in record["reason"]
    received = set()
    while (got := amqp.basic_get(names.queue, auto_ack=True))[0] is not None:
        received.add(got[1].message_id)
    assert received == set(routed)
