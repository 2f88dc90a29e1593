"""Issue 13, broker scale-out: competing consumers, quorum queues with a delivery limit, several nodes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from sealog import AuditLog, StoreUnavailable
from sealog.broker.consumer import Settings
from sealog.broker.publisher import Publisher, broker_urls
from sealog.stores import open_store
from tests.children import CRASHING_CONSUMER
from tests.fixtures.rabbitmq import ConsumerProcess, Names, wait_for
from tests.fixtures.rabbitserver import free_port

from .test_consume import publish, run_consume, sealog_body, stored_actions

TENANTS = ("t0", "t1", "t2", "t3")


def consumer_process(broker: str, names: Names, store_url: str, tmp_path: Path, n: int,
                     *extra: str) -> ConsumerProcess:
    args = ["--broker", broker, "--exchange", names.exchange, "--queue", names.queue, "--bind", "#",
            "--url", store_url, "--stats-file", str(tmp_path / f"consumer-{n}.json"), "--stats-interval", "0.2",
            *extra]
    return ConsumerProcess(args, tmp_path / f"consumer-{n}.json", tmp_path / f"consumer-{n}.log")


def pg_rows(store_url: str) -> tuple[int, int]:
    """(rows, distinct event ids) in the PostgreSQL store."""
    import psycopg

    with psycopg.connect(store_url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM sealog_events").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def stored_ids(store_url: str) -> set[str]:
    store = open_store(store_url)
    try:
        return {e.event_id for tenant in TENANTS for e in store.iter_events(tenant)}
    finally:
        store.close()


def assert_exactly_once_and_verified(store_url: str, ids: list[str]) -> None:
    assert pg_rows(store_url) == (len(ids), len(ids))
    assert stored_ids(store_url) == set(ids)
    store = open_store(store_url)
    try:
        report = store.verify()
        assert report.ok, report.problems[:5]
        assert report.checked == len(ids)
        # Gap-free: each tenant's chain runs 1..n without a hole or a fork.
        assert sum(head.seq for head in store.heads()) == len(ids)
    finally:
        store.close()


# -- options -------------------------------------------------------------------------------


def test_a_cluster_url_names_every_node_with_one_set_of_credentials() -> None:
    assert broker_urls("amqp://u:p%2C1@h1:5672,h2:5673 , h3/vh?heartbeat=5") == [
        "amqp://u:p%2C1@h1:5672/vh?heartbeat=5", "amqp://u:p%2C1@h2:5673/vh?heartbeat=5",
        "amqp://u:p%2C1@h3/vh?heartbeat=5"]
    assert broker_urls("amqp://u:p@h1:5672/%2F") == ["amqp://u:p@h1:5672/%2F"]
    with pytest.raises(ValueError, match="empty host"):
        broker_urls("amqp://u:p@h1,,h2/%2F")


def test_quorum_declaration_arguments() -> None:
    quorum = Settings(broker="amqp://x", exchange="x", queue="q", bindings=("#",), dead_letter="q.dead",
                      queue_type="quorum", delivery_limit=4)
    assert quorum.queue_arguments() == {
        "x-dead-letter-exchange": "q.dead", "x-queue-type": "quorum", "x-delivery-limit": 4,
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    assert quorum.dead_letter_arguments() == {"x-queue-type": "quorum"}
    classic = Settings(broker="amqp://x", exchange="x", queue="q", bindings=("#",), dead_letter="q.dead")
    assert classic.queue_arguments() == {"x-dead-letter-exchange": "q.dead"}


def test_queue_type_usage_errors(tmp_path: Path, rabbit_url: str, names: Names) -> None:
    """Exit 2 for a delivery limit on a classic queue, an unknown type, or a host list with a hole."""
    common = ["--queue", names.queue, "--bind", "#", "--url", f"sqlite:///{tmp_path / 'a.db'}"]
    limit = run_consume("--broker", rabbit_url, "--delivery-limit", "3", *common)
    assert limit.returncode == 2
    assert "--queue-type quorum" in limit.stderr
    assert run_consume("--broker", rabbit_url, "--queue-type", "stream", *common).returncode == 2
    hole = run_consume("--broker", "amqp://guest:guest@127.0.0.1:1,,127.0.0.1:2/%2F", *common)
    assert hole.returncode == 2
    assert "--broker" in hole.stderr


def test_a_classic_queue_cannot_silently_become_quorum(tmp_path: Path, rabbit_url: str, names: Names,
                                                       amqp: Any) -> None:
    """The broker refuses to redeclare a queue with another type: exit 2 naming the conflict, queue intact."""
    amqp.queue_declare(names.queue, durable=True, arguments={"x-dead-letter-exchange": f"{names.queue}.dead"})
    done = run_consume("--broker", rabbit_url, "--queue", names.queue, "--bind", "#", "--queue-type", "quorum",
                       "--url", f"sqlite:///{tmp_path / 'a.db'}", "--exchange", names.exchange)
    assert done.returncode == 2, done.stderr
    assert "refused a declaration" in done.stderr
    amqp.queue_delete(names.queue)


def test_the_publisher_moves_to_a_node_that_answers(rabbit_url: str, names: Names, amqp: Any,
                                                    tmp_path: Path) -> None:
    """A dead first node in the list costs nothing: the batch is confirmed by the next one."""
    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True)
    amqp.queue_bind(names.queue, names.exchange, routing_key="#")
    live = rabbit_url.split("@")[1].split("/", maxsplit=1)[0]
    publisher = Publisher(f"amqp://guest:guest@127.0.0.1:{free_port()},{live}/%2F", exchange=names.exchange)
    try:
        lines = [json.dumps({"event_id": str(uuid.uuid4()), "tenant_id": "acme", "action": "auth.login",
                             "occurred_at": "2026-01-01T00:00:00.000000Z"}).encode() for _ in range(20)]
        assert publisher.write_lines(lines) == (20, [])
    finally:
        publisher.close()
    assert amqp.queue_declare(names.queue, passive=True).method.message_count == 20


def test_after_a_nack_only_the_refused_messages_are_published_again(rabbit_url: str, names: Names,
                                                                    amqp: Any) -> None:
    """A queue full with reject-publish nacks the messages past its length (a quorum queue between leaders
    nacks too): the retry publishes those, not the whole batch again."""
    amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    amqp.queue_declare(names.queue, exclusive=True, arguments={"x-max-length": 4, "x-overflow": "reject-publish"})
    amqp.queue_bind(names.queue, names.exchange, routing_key="#")
    ids = [str(uuid.uuid4()) for _ in range(10)]
    lines = [json.dumps({"event_id": i, "tenant_id": "acme", "action": "auth.login",
                         "occurred_at": "2026-01-01T00:00:00.000000Z"}).encode() for i in ids]
    publisher = Publisher(rabbit_url, exchange=names.exchange)
    try:
        with pytest.raises(StoreUnavailable, match="nacked"):
            publisher.write_lines(lines)
        first = [json.loads(_get(amqp, names.queue)[2])["event_id"] for _ in range(4)]
        assert _get(amqp, names.queue) is None
        with pytest.raises(StoreUnavailable, match="nacked"):  # 4 of the 6 taken, 2 refused again
            publisher.write_lines(lines)
        second = [json.loads(_get(amqp, names.queue)[2])["event_id"] for _ in range(4)]
        assert publisher.write_lines(lines) == (10, [])
        third = [json.loads(_get(amqp, names.queue)[2])["event_id"] for _ in range(2)]
        assert _get(amqp, names.queue) is None
    finally:
        publisher.close()
    assert sorted(first + second + third) == sorted(ids)  # each once: nothing confirmed was sent again


def test_consumers_on_one_host_each_get_their_own_stats_and_attempts_files(rabbit_url: str, names: Names,
                                                                          tmp_path: Path) -> None:
    """The same command started twice: the second takes consume-QUEUE.1.json (sharing the first's file
    would mix their crash counts); a --stats-file that a running consumer holds is a usage error."""
    db = tmp_path / "audit.db"
    args = [sys.executable, "-m", "sealog", "consume", "--broker", rabbit_url, "--exchange", names.exchange,
            "--queue", names.queue, "--bind", "#", "--url", f"sqlite:///{db}", "--stats-interval", "0.1"]
    spool = tmp_path / "audit.db.spool"
    first = subprocess.Popen(args)
    second = None
    try:
        wait_for((spool / f"consume-{names.queue}.json").exists, what="the first consumer's stats file")
        second = subprocess.Popen(args)
        wait_for((spool / f"consume-{names.queue}.1.json").exists, what="the second consumer's own stats file")
        taken = run_consume(*args[4:], "--stats-file", str(spool / f"consume-{names.queue}.json"))
        assert taken.returncode == 2
        assert "another running consumer" in taken.stderr
        assert first.poll() is None
        assert second.poll() is None
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.terminate()
                assert proc.wait(10) == 0


# -- competing consumers ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("per_message", [1, 10])
def test_three_competing_consumers_keep_every_chain_gap_free(rabbit_url: str, names: Names, pg_url: str,
                                                             tmp_path: Path, per_message: int) -> None:
    """Three ``sealog consume`` processes on one queue, small batches, four tenants interleaved: every
    event is stored exactly once, every consumer stored some, and every chain verifies without a gap;
    also with the events packed ten to a message."""
    consumers = [consumer_process(rabbit_url, names, pg_url, tmp_path, n, "--batch-size", "40",
                                  "--batch-delay", "5", "--prefetch", "80").start() for n in range(3)]
    try:
        total = 6000
        with AuditLog(broker=rabbit_url, exchange=names.exchange, spool_dir=tmp_path / "spool",
                      events_per_message=per_message) as log:
            ids = [log.emit(tenant_id=TENANTS[i % len(TENANTS)], action="auth.login", actor=("user", f"u-{i}"),
                            metadata={"i": i}) for i in range(total)]
            assert log.flush(timeout=120), log.stats()
        wait_for(lambda: pg_rows(pg_url)[0] >= total, timeout=180, what="every event in PostgreSQL")
        # Each consumer writes its stats file a moment after its commit: wait for the last one.
        wait_for(lambda: sum(c.stats()["stored"] for c in consumers) >= total, timeout=60, what="every stats file")
        counts = [c.stats() for c in consumers]
        assert all(s["stored"] > 0 for s in counts), counts  # they did compete
        assert sum(s["stored"] for s in counts) == total
        assert_exactly_once_and_verified(pg_url, ids)
    finally:
        for c in consumers:
            c.kill_all()


# -- quorum queues: the delivery limit ----------------------------------------------------------



@pytest.mark.slow
def test_a_quorum_queue_dead_letters_a_killer_at_its_delivery_limit(
        rabbit_url: str, amqp: Any, names: Names, tmp_path: Path) -> None:
    """A message that kills every consumer that takes it ends in the dead-letter queue (the broker's delivery
    limit, x-death reason delivery_limit) instead of being redelivered forever; events after it are stored."""
    script = tmp_path / "crashing_consumer.py"
    script.write_text(CRASHING_CONSUMER)
    db, stats = tmp_path / "audit.db", tmp_path / "stats.json"
    args = [sys.executable, str(script), rabbit_url, names.exchange, names.queue, str(db), str(stats), "1"]
    process = subprocess.Popen(args)
    try:
        wait_for(stats.exists, what="the quorum queue to be declared")
        declared = amqp.queue_declare(names.queue, durable=True, passive=True)
        assert declared.method.queue == names.queue
        publish(amqp, names.exchange, [(f"good.a{i}", sealog_body(f"good.a{i}")) for i in range(3)])
        wait_for(lambda: len(stored_actions(db)) == 3, what="the events before the killer")
        publish(amqp, names.exchange, [("crash.now", sealog_body("crash.now"))])
        deaths = 0
        while True:  # a supervisor restarts it until it stays up
            try:
                assert process.wait(timeout=5) == 70
            except subprocess.TimeoutExpired:
                break
            deaths += 1
            assert deaths <= 3, "the killer was redelivered past the delivery limit"
            process = subprocess.Popen(args)
        assert deaths == 2  # delivery limit 1: the first delivery and one return, then the dead-letter queue
        _, props, body = wait_for(lambda: _get(amqp, f"{names.queue}.dead"), what="the killer's dead letter")
        assert json.loads(body)["action"] == "crash.now"
        death = props.headers["x-death"][0]
        assert (death["reason"], death["queue"]) == ("delivery_limit", names.queue)
        publish(amqp, names.exchange, [(f"good.b{i}", sealog_body(f"good.b{i}")) for i in range(3)])
        wait_for(lambda: len(stored_actions(db)) == 6, what="the events after the killer")
        assert "crash.now" not in stored_actions(db)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(10)


def _get(channel: Any, queue: str) -> Any:
    method, props, body = channel.basic_get(queue, auto_ack=True)
    return (method, props, body) if method is not None else None
