"""The consumer's store write runs beside the broker I/O: refusals, outages and a stop during one.

A real RabbitMQ and a real PostgreSQL: a trigger refuses one action's rows (as a constraint
would), and the consumer's role losing its INSERT privilege is the outage (as a misconfigured
grant is), given back to end it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from sealog.broker.consumer import Consumer, Settings
from sealog.stores import Store, open_store
from tests.fixtures.pgserver import PgServer
from tests.fixtures.rabbitmq import Names, wait_for

from .test_consume import publish, sealog_body

REFUSED: str = "refuse.me"


class Database:
    """The consumer's own login role on a fresh database; ``down()`` takes its INSERT away, ``up()`` gives it back."""

    def __init__(self, pg_server: PgServer, pg_url: str) -> None:
        self.admin_url = pg_url
        setup = open_store(pg_url)
        setup.migrate()
        setup.close()
        self.role = f"consumer_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.role)))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(self.role)))
            conn.execute("CREATE FUNCTION refuse_me() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         f"IF NEW.action = '{REFUSED}' THEN RAISE EXCEPTION 'refused by a trigger (test)' "
                         "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$")
            conn.execute("CREATE TRIGGER refuse_me BEFORE INSERT ON sealog_events FOR EACH ROW EXECUTE FUNCTION refuse_me()")
        self.up()
        self.url = pg_server.url(pg_url.rsplit("/", 1)[1], user=self.role)

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def up(self) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(self.role)))
            conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(self.role)))

    def down(self) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("REVOKE INSERT ON ALL TABLES IN SCHEMA public FROM {}").format(sql.Identifier(self.role)))

    def actions(self) -> list[str]:
        with self._admin() as conn:
            return sorted(str(row[0]) for row in conn.execute("SELECT action FROM sealog_events"))


@pytest.fixture
def database(pg_server: PgServer, pg_url: str) -> Database:
    return Database(pg_server, pg_url)


@pytest.fixture
def running(rabbit_url: str, names: Names, database: Database) -> Iterator[tuple[Consumer, threading.Thread]]:
    store: Store = open_store(database.url)
    settings = Settings(broker=rabbit_url, exchange=names.exchange, queue=names.queue, bindings=("#",),
                        dead_letter=names.dead, batch_size=4, batch_delay=0.05, prefetch=8)
    consumer = Consumer(settings, store)
    consumer.connect()
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    yield consumer, thread
    consumer.stop()
    thread.join(30)
    store.close()


def _dead_letter(amqp: Any, names: Names) -> tuple[Any, bytes]:
    """The next message in Q.dead: (properties, body)."""
    _, props, body = wait_for(lambda: (got := amqp.basic_get(names.dead, auto_ack=True))[0] and got,
                              what="the dead letter")
    return props, body


def _waiting(amqp: Any, queue: str) -> int:
    return int(amqp.queue_declare(queue, passive=True).method.message_count)


def _stop(consumer: Consumer, thread: threading.Thread) -> None:
    consumer.stop()
    thread.join(30)
    assert not thread.is_alive(), "the consumer did not stop"


def test_a_refused_message_is_dead_lettered_and_its_batch_mates_stored(
        running: tuple[Consumer, threading.Thread], amqp: Any, names: Names, database: Database) -> None:
    """The store thread proves the refusal (siblings stored); the main thread dead-letters it, then acks."""
    consumer, thread = running
    publish(amqp, names.exchange, [(f"good.n{i}", sealog_body(f"good.n{i}")) for i in range(3)]
            + [("refuse.me", sealog_body("refuse.me"))] + [(f"good.m{i}", sealog_body(f"good.m{i}")) for i in range(6)])
    wait_for(lambda: len(database.actions()) == 9, what="the nine stored")
    props, body = _dead_letter(amqp, names)
    assert b"refuse.me" in body
    assert "the store refused it" in props.headers["x-sealog-reason"]
    wait_for(lambda: consumer.counts.dead_lettered == 1, what="the dead-letter count")
    _stop(consumer, thread)
    assert _waiting(amqp, names.queue) == 0  # all acked: nothing came back to the queue at stop


def test_a_refused_batch_element_is_dead_lettered_alone(
        running: tuple[Consumer, threading.Thread], amqp: Any, names: Names, database: Database) -> None:
    """In a batch message, the element the store refused goes to Q.dead by itself (x-sealog-index);
    its batch mates are stored once, and the message is acked."""
    consumer, thread = running
    elements = [sealog_body("good.a"), sealog_body(REFUSED), sealog_body("good.b"), sealog_body("good.c")]
    publish(amqp, names.exchange, [("good.a", b"[" + b",".join(elements) + b"]")])
    wait_for(lambda: len(database.actions()) == 3, what="the three stored")
    props, body = _dead_letter(amqp, names)
    assert body == elements[1]
    assert props.headers["x-sealog-index"] == 1
    assert "the store refused it" in props.headers["x-sealog-reason"]
    _stop(consumer, thread)
    assert database.actions() == ["good.a", "good.b", "good.c"]
    assert _waiting(amqp, names.queue) == 0


def test_an_outage_holds_every_batch_unacked_until_the_store_is_back(
        running: tuple[Consumer, threading.Thread], amqp: Any, names: Names, database: Database) -> None:
    """Batches wait (one in the store thread, the next in hand) without acks or dead letters, then all land once."""
    consumer, thread = running
    database.down()
    publish(amqp, names.exchange, [(f"first.n{i}", sealog_body(f"first.n{i}")) for i in range(4)])
    wait_for(lambda: consumer.counts.store_retries >= 3, what="retries of the outage")
    publish(amqp, names.exchange, [(f"second.n{i}", sealog_body(f"second.n{i}")) for i in range(12)])
    wait_for(lambda: consumer.counts.received >= 8, what="the next batch in hand")
    assert database.actions() == []
    assert consumer.counts.batches == 0  # nothing acked while nothing is stored
    database.up()
    wait_for(lambda: len(database.actions()) == 16, timeout=60, what="all sixteen stored")
    _stop(consumer, thread)
    assert consumer.counts.dead_lettered == 0
    assert consumer.counts.stored == 16
    assert _waiting(amqp, names.queue) == 0
    assert _waiting(amqp, names.dead) == 0


def test_a_stop_during_an_outage_leaves_the_messages_in_the_queue(
        running: tuple[Consumer, threading.Thread], amqp: Any, names: Names, database: Database) -> None:
    """The store thread gives up at stop; its batch and the one in hand stay unacked and go back to the queue."""
    consumer, thread = running
    database.down()
    publish(amqp, names.exchange, [(f"held.n{i}", sealog_body(f"held.n{i}")) for i in range(8)])
    wait_for(lambda: consumer.counts.received == 8 and consumer.counts.store_retries >= 2, what="the outage")
    _stop(consumer, thread)
    assert database.actions() == []
    assert consumer.counts.dead_lettered == 0
    wait_for(lambda: _waiting(amqp, names.queue) == 8, what="the eight back in the queue")
