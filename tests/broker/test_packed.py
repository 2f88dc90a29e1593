"""Several events per message (``events_per_message``): packed by routing key, each element judged alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sealog import AuditLog
from sealog._event import Event, encode
from sealog.broker.envelopes import Part, Poison, part_message_id, parts
from sealog.broker.publisher import PACKED_BYTES, Publisher
from sealog.stores import open_store
from tests.fixtures.rabbitmq import ConsumerProcess, Names, row_counts, wait_for

Consume = Callable[..., ConsumerProcess]


def line(i: int, action: str, **fields: Any) -> bytes:
    return encode(Event(event_id=f"00000000-0000-7000-8000-{i:012d}", tenant_id="acme", action=action,
                        occurred_at="2026-01-01T00:00:00.000000Z", **fields))


def messages(amqp: Any, queue: str) -> list[tuple[str, str, Any, int]]:
    """(routing key, message_id, decoded body, body bytes) of every message in the queue, in order."""
    got = []
    while (item := amqp.basic_get(queue, auto_ack=True))[0] is not None:
        method, props, body = item
        got.append((method.routing_key, props.message_id, json.loads(body), len(body)))
    return got


def publish_lines(rabbit_url: str, names: Names, lines: list[bytes], per_message: int) -> tuple[int, list[int]]:
    """Publisher.write_lines with ``events_per_message``: (added, positions rejected)."""
    publisher = Publisher(rabbit_url, exchange=names.exchange, events_per_message=per_message)
    try:
        added, rejected = publisher.write_lines(lines)
    finally:
        publisher.close()
    return added, [index for index, _ in rejected]


def bind_all(amqp: Any, names: Names, pattern: str = "#") -> None:
    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True)
    amqp.queue_bind(names.queue, names.exchange, routing_key=pattern)


def test_events_are_packed_per_routing_key_in_order(rabbit_url: str, names: Names, amqp: Any) -> None:
    """11 events of two actions, 5 a message: arrays of one action each, in emit order; a lone one is an object."""
    bind_all(amqp, names)
    lines = [line(i, "auth.login" if i % 2 else "content.publish") for i in range(11)]
    assert publish_lines(rabbit_url, names, lines, 5) == (11, [])
    got = messages(amqp, names.queue)
    ids = [json.loads(raw)["event_id"] for raw in lines]
    publish_ids = [ids[i] for i in range(0, 11, 2)], [ids[i] for i in range(1, 11, 2)]
    assert [(key, len(body) if isinstance(body, list) else "object") for key, _, body, _ in got] == [
        ("content.publish", 5), ("content.publish", "object"), ("auth.login", 5)]
    assert [e["event_id"] for e in got[0][2]] + [got[1][2]["event_id"]] == publish_ids[0]
    assert [e["event_id"] for e in got[2][2]] == publish_ids[1]
    assert [message_id for _, message_id, _, _ in got] == [publish_ids[0][0], publish_ids[0][5], publish_ids[1][0]]


def test_a_packed_message_stays_under_the_byte_limit(rabbit_url: str, names: Names, amqp: Any) -> None:
    """Big events start a new message before a body would pass PACKED_BYTES (the consumer takes 1 MiB)."""
    bind_all(amqp, names)
    lines = [line(i, "data.export", metadata={"blob": "x" * 60_000}) for i in range(20)]
    assert publish_lines(rabbit_url, names, lines, 100) == (20, [])
    got = messages(amqp, names.queue)
    assert [len(body) for _, _, body, _ in got] == [8, 8, 4]  # 8 x ~60 KB fit in 512 KiB, 9 would not
    assert all(size <= PACKED_BYTES for _, _, _, size in got)


def test_an_unroutable_key_rejects_only_its_own_events(rabbit_url: str, names: Names, amqp: Any) -> None:
    """Packed, the events of an unbound action come back by index; the bound ones are sent once."""
    bind_all(amqp, names, "auth.*")
    lines = [line(i, "billing.refund" if i in (3, 7, 8) else "auth.login") for i in range(30)]
    assert publish_lines(rabbit_url, names, lines, 10) == (27, [3, 7, 8])
    got = messages(amqp, names.queue)
    assert [len(body) for _, _, body, _ in got] == [10, 10, 7]
    assert sorted(e["event_id"] for _, _, body, _ in got for e in body) == sorted(
        json.loads(raw)["event_id"] for i, raw in enumerate(lines) if i not in (3, 7, 8))


def test_emit_packed_end_to_end_stores_every_event_once(consumer: Consume, rabbit_url: str, names: Names,
                                                        tmp_path: Path) -> None:
    """AuditLog(events_per_message=25) through sealog consume: every id stored once, chains verify."""
    consumer("#")
    with AuditLog(broker=rabbit_url, exchange=names.exchange, spool_dir=tmp_path / "spool",
                  events_per_message=25) as log:
        ids = [log.emit(tenant_id=f"t-{i % 3}", action=("auth.login", "content.publish", "tool.call")[i % 4 % 3],
                        actor=("user", f"u-{i}"), metadata={"i": i, "api_key": "sk_live_" + "a" * 24})
               for i in range(600)]
        assert log.flush(timeout=60)
    db = tmp_path / "audit.db"
    wait_for(lambda: row_counts(db) == (600, 600), what="every event in the store")
    store = open_store(f"sqlite:///{db}")
    try:
        stored = {e.event_id: e for t in ("t-0", "t-1", "t-2") for e in store.iter_events(t)}
        assert set(stored) == set(ids)
        assert all("sk_live_" not in json.dumps(e.metadata) for e in stored.values())
        assert store.verify().ok
    finally:
        store.close()


def test_a_bad_element_is_dead_lettered_alone_and_its_batch_mates_stored(
        consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """One array, three good events around two bad ones: the bad ones go to Q.dead alone, by index."""
    running = consumer("#")
    good = [{"event_id": str(uuid.uuid4()), "tenant_id": "acme", "action": "auth.login"} for _ in range(3)]
    bad = [{"tenant_id": "acme", "action": "Not An Action"}, [1, 2]]
    body = json.dumps([good[0], bad[0], good[1], bad[1], good[2]]).encode()
    amqp.basic_publish(names.exchange, "auth.login", body)
    amqp.basic_publish(names.exchange, "auth.login", b"[]")
    db = tmp_path / "audit.db"
    wait_for(lambda: row_counts(db) == (3, 3), what="the three good events")
    dead = []
    for _ in range(3):
        _method, props, raw = wait_for(lambda: _get(amqp, names.dead), what="a dead letter")
        dead.append((props.headers.get("x-sealog-index"), props.headers["x-sealog-reason"], raw))
    assert [(index, json.loads(raw)) for index, _, raw in dead[:2]] == [(1, bad[0]), (3, bad[1])]
    assert dead[0][1].startswith("element 1: invalid event")
    assert "action" in dead[0][1]
    assert dead[1][1].startswith("element 3: body is a JSON list")
    assert dead[2] == (None, "body is an empty JSON array: a batch with no events", b"[]")
    store = open_store(f"sqlite:///{db}")
    try:
        assert {e.event_id for e in store.iter_events("acme")} == {g["event_id"] for g in good}
    finally:
        store.close()
    wait_for(lambda: running.stats().get("events") == 5 and running.stats()["dead_lettered"] == 3,
             what="the counts")
    assert amqp.queue_declare(names.queue, passive=True).method.message_count == 0


def test_elements_without_ids_are_stored_once_each_across_redeliveries(
        consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """Two identical id-less elements are two events; the same message again adds nothing."""
    consumer("#")
    element = {"event_type": "auth.token", "payload": {"tenant_id": "acme"}}
    body = json.dumps([element, element, {**element, "payload": {"tenant_id": "acme", "n": 1}}]).encode()
    import pika

    for _ in range(2):
        amqp.basic_publish(names.exchange, "auth.token", body, pika.BasicProperties(message_id="batch-1"))
    amqp.basic_publish(names.exchange, "auth.done", json.dumps(
        {"tenant_id": "acme", "action": "auth.done", "event_id": str(uuid.uuid4())}).encode())
    db = tmp_path / "audit.db"
    wait_for(lambda: row_counts(db)[0] == 4, what="three events and the sentinel")
    store = open_store(f"sqlite:///{db}")
    try:
        ids = sorted(e.event_id for e in store.iter_events("acme") if e.action == "auth.token")
    finally:
        store.close()
    assert ids == ["batch-1#0", "batch-1#1", "batch-1#2"]
    assert row_counts(db) == (4, 4)


def _get(channel: Any, queue: str) -> tuple[Any, Any, bytes] | None:
    method, props, body = channel.basic_get(queue, auto_ack=True)
    return None if method is None else (method, props, body)


# -- without a broker ---------------------------------------------------------------------


def test_parts_of_a_body() -> None:
    """An object is one part; an array, one per element, as raw JSON; a broken array is the message's fault."""
    assert parts(b'{"a": 1}') == [Part(b'{"a": 1}', None)]
    assert parts(b' [{"a": 1}, 2 , "x"]') == [Part(b'{"a": 1}', 0), Part(b"2", 1), Part(b'"x"', 2)]
    for body, reason in ((b"[", "not JSON"), (b"[]", "empty JSON array"),
                         (b"[" * 100 + b"]" * 100, "nests deeper"), (b"[" + b"1," * 600_000 + b"1]", "over the")):
        with pytest.raises(Poison, match=reason):
            parts(body)


def test_an_element_id_comes_from_the_message_and_its_position() -> None:
    body = b'[{"x": 1}]'
    assert part_message_id("m-1", body, Part(body, None)) == "m-1"
    assert part_message_id("m-1", body, Part(b'{"x": 1}', 0)) == "m-1#0"
    derived = part_message_id(None, body, Part(b'{"x": 1}', 3))
    assert derived is not None
    assert derived.endswith("#3")
    assert derived == part_message_id(None, body, Part(b'{"x": 1}', 3))
    assert derived != part_message_id(None, body + b" ", Part(b'{"x": 1}', 3))


@pytest.mark.parametrize("value", [0, 1001, 2.5, True, "25"])
def test_events_per_message_out_of_range_is_refused(value: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="events_per_message must be a whole number from 1 to 1000"):
        AuditLog(broker="amqp://guest:guest@127.0.0.1:1/%2F", spool_dir=tmp_path, events_per_message=value)


def test_events_per_message_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEALOG_EVENTS_PER_MESSAGE", "many")
    with pytest.raises(ValueError, match="SEALOG_EVENTS_PER_MESSAGE='many'"):
        AuditLog(broker="amqp://guest:guest@127.0.0.1:1/%2F", spool_dir=tmp_path)
