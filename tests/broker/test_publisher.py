"""Emitters in broker mode: AuditLog(broker=...) publishes each event, confirmed, to the exchange."""

from __future__ import annotations

import json
from collections import Counter
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


# -- one unroutable event in a batch: rejected alone, nothing sent twice ---------------

def batch_lines(count: int, unbound_at: int) -> list[bytes]:
    """``count`` events routed by ``auth.*`` and, at ``unbound_at``, one no queue is bound for."""
    from sealog._event import Event, encode

    return [encode(Event(event_id=f"00000000-0000-7000-8000-{i:012d}", tenant_id="acme",
                         action="billing.refund" if i == unbound_at else "auth.login",
                         occurred_at="2026-01-01T00:00:00.000000Z")) for i in range(count + 1)]


def bound_queue(amqp: Any, names: Names) -> None:
    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True)
    amqp.queue_bind(names.queue, names.exchange, routing_key="auth.*")


def drain(amqp: Any, queue: str) -> list[str]:
    """Every message id in the queue, in order, duplicates included."""
    ids = []
    while (got := amqp.basic_get(queue, auto_ack=True))[0] is not None:
        ids.append(got[1].message_id)
    return ids


def test_one_unroutable_event_is_rejected_alone_and_the_rest_sent_once(rabbit_url: str, names: Names,
                                                                       amqp: Any) -> None:
    """write_lines: 1,001 bound + 1 unbound give 1,001 messages and one rejected line, by index."""
    from sealog.broker.publisher import Publisher

    bound_queue(amqp, names)
    lines = batch_lines(1001, unbound_at=500)
    publisher = Publisher(rabbit_url, exchange=names.exchange)
    try:
        added, rejected = publisher.write_lines(lines)
    finally:
        publisher.close()
    assert added == 1001
    assert [index for index, _ in rejected] == [500]
    assert "no queue is bound" in rejected[0][1]
    assert "'billing.refund'" in rejected[0][1]
    received = drain(amqp, names.queue)
    assert len(received) == 1001
    assert set(received) == {json.loads(line)["event_id"] for i, line in enumerate(lines) if i != 500}


def test_sink_protocol_retries_skip_what_the_broker_confirmed(rabbit_url: str, names: Names, amqp: Any) -> None:
    """write() refuses a batch with an unroutable event; the writer's smaller retries send nothing twice."""
    from sealog import EventRejected as Rejected
    from sealog._event import decode
    from sealog.broker.publisher import Publisher

    bound_queue(amqp, names)
    events = [decode(line) for line in batch_lines(1001, unbound_at=0)]
    publisher = Publisher(rabbit_url, exchange=names.exchange)
    try:
        with pytest.raises(Rejected, match=r"billing\.refund"):
            publisher.write(events)
        # What the writer does next: halves, until the bad event stands alone.
        with pytest.raises(Rejected):
            publisher.write(events[:501])
        assert publisher.write(events[501:]) == 501
        with pytest.raises(Rejected):
            publisher.write(events[:1])
        assert publisher.write(events[1:501]) == 500
        assert publisher.write(events[1:2]) == 1  # a later replay of a confirmed event: sent again
    finally:
        publisher.close()
    received = drain(amqp, names.queue)
    assert len(received) == 1002
    assert Counter(received)[events[1].event_id] == 2
    assert set(received) == {e.event_id for e in events[1:]}


@pytest.mark.allow_sealog_errors
@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_spooled_batch_with_one_unroutable_event_lands_once_and_quarantines_it(
        writer: str, rabbit_url: str, names: Names, amqp: Any, tmp_path: Path) -> None:
    """1,001 bound + 1 unbound in one spooled batch: exactly 1,001 messages, the unbound one quarantined."""
    from sealog._spool import Spool, spool_target

    bound_queue(amqp, names)
    spool = tmp_path / "spool"
    lines = batch_lines(1001, unbound_at=700)
    dead = Spool(spool, target=spool_target(rabbit_url, names.exchange))
    for line in lines:  # left by a process that stopped before delivering: recovered as one batch
        dead.append(line)
    dead.close()
    with AuditLog(broker=rabbit_url, exchange=names.exchange, spool_dir=spool, writer=writer) as log:  # type: ignore[arg-type]
        assert log.flush(60)
        assert log.stats()["quarantined"] == 1
    received = drain(amqp, names.queue)
    assert len(received) == 1001
    assert set(received) == {json.loads(line)["event_id"] for i, line in enumerate(lines) if i != 700}
    record = json.loads((spool / QUARANTINE).read_text())
    assert json.loads(record["line"])["action"] == "billing.refund"
    assert "no queue is bound" in record["reason"]


def test_after_a_nack_the_publisher_starts_a_fresh_connection_and_resends_only_the_refused(
        rabbit_url: str, names: Names, amqp: Any) -> None:
    """A queue full with reject-publish nacks the overflow: write() is an outage (StoreUnavailable), the
    publisher drops that channel (RabbitMQ 3.10 could keep nacking a quorum queue's publishes on a channel
    opened during a leader election), and the retry, once there is room, sends only the refused messages."""
    from sealog import StoreUnavailable
    from sealog._event import decode
    from sealog.broker.publisher import Publisher

    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True, arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    amqp.queue_bind(names.queue, names.exchange, routing_key="auth.*")
    events = [decode(line) for line in batch_lines(5, unbound_at=-1)][:5]
    publisher = Publisher(rabbit_url, exchange=names.exchange)
    try:
        with pytest.raises(StoreUnavailable, match="nacked"):
            publisher.write(events)
        assert publisher._conn is None  # the channel that saw the nacks is gone
        first = drain(amqp, names.queue)
        assert len(first) == 3
        assert publisher.write(events) == 5  # room again: only the two refused ones are sent
        second = drain(amqp, names.queue)
    finally:
        publisher.close()
    assert sorted(first + second) == sorted(e.event_id for e in events)


def test_after_a_nack_only_the_refused_packed_messages_go_again(rabbit_url: str, names: Names, amqp: Any) -> None:
    """Packed (events_per_message=2), a nacked message's events are the ones sent again, and only those."""
    from sealog import StoreUnavailable
    from sealog._event import decode
    from sealog.broker.publisher import Publisher

    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    amqp.queue_bind(names.queue, names.exchange, routing_key="auth.*")
    events = [decode(line) for line in batch_lines(6, unbound_at=-1)][:6]  # three messages of two
    publisher = Publisher(rabbit_url, exchange=names.exchange, events_per_message=2)
    try:
        with pytest.raises(StoreUnavailable, match="nacked"):
            publisher.write(events)
        first = [json.loads(body) for body in drain_bodies(amqp, names.queue)]
        assert [len(message) for message in first] == [2, 2]
        assert publisher.write(events) == 6
        second = [json.loads(body) for body in drain_bodies(amqp, names.queue)]
    finally:
        publisher.close()
    assert [[e["event_id"] for e in message] for message in second] == [[e.event_id for e in events[4:]]]
    assert sorted(e["event_id"] for message in first + second for e in message) == sorted(e.event_id for e in events)


def drain_bodies(amqp: Any, queue: str) -> list[bytes]:
    bodies = []
    while (got := amqp.basic_get(queue, auto_ack=True))[0] is not None:
        bodies.append(got[2])
    return bodies
