"""``sealog consume`` against a real RabbitMQ: routing, poison, redelivery, crashes, restarts, stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sealog.stores import open_store
from tests.fixtures.rabbitmq import ConsumerProcess, Names, row_counts, wait_for
from tests.fixtures.rabbitserver import RabbitServer, free_port

Consume = Callable[..., ConsumerProcess]


def sealog_body(action: str, tenant: str = "acme", **fields: Any) -> bytes:
    return json.dumps({"event_id": str(uuid.uuid4()), "tenant_id": tenant, "action": action,
                       "occurred_at": "2024-06-01T12:00:00Z", **fields}).encode()


def publish(channel: Any, exchange: str, messages: list[tuple[str, bytes]], headers: Any = None) -> None:
    import pika

    props = pika.BasicProperties(delivery_mode=2, content_type="application/json", headers=headers)
    for routing_key, body in messages:
        channel.basic_publish(exchange, routing_key, body, props)


def stored_actions(db: Path, tenant: str = "acme") -> list[str]:
    store = open_store(f"sqlite:///{db}")
    try:
        return sorted(e.action for e in store.iter_events(tenant))
    finally:
        store.close()


def test_bindings_route_only_matching_actions(consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """With --bind auth.* and --bind gpt.#, other actions never reach the store."""
    consumer("auth.*", "gpt.#")
    publish(amqp, names.exchange, [(a, sealog_body(a)) for a in (
        "content.publish", "auth.login", "auth.login.mfa", "gpt.oauth.token_exchange", "gpt", "settings.change")])
    # Routing is in order on one queue: once the last bound message is stored, the rest were judged.
    publish(amqp, names.exchange, [("auth.logout", sealog_body("auth.logout"))])
    db = tmp_path / "audit.db"
    wait_for(lambda: "auth.logout" in stored_actions(db), what="the sentinel event")
    assert stored_actions(db) == ["auth.login", "auth.logout", "gpt", "gpt.oauth.token_exchange"]


def test_poison_is_dead_lettered_with_reason_and_consumption_goes_on(
        consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """Bodies that cannot become events go to Q.dead with x-sealog-reason; good ones around them are stored."""
    running = consumer("#")
    poison = [b"not json at all", b"[1]", json.dumps({"tenant_id": "acme", "action": "Bad Action"}).encode(),
              json.dumps({"event_type": "auth.login", "payload": {"user_id": "u"}}).encode()]  # no tenant
    publish(amqp, names.exchange, [("x.y", b) for b in poison[:2]])
    publish(amqp, names.exchange, [("auth.login", sealog_body("auth.login"))])
    publish(amqp, names.exchange, [("x.y", b) for b in poison[2:]], headers={"origin": "test"})
    publish(amqp, names.exchange, [("auth.logout", sealog_body("auth.logout"))])
    db = tmp_path / "audit.db"
    wait_for(lambda: stored_actions(db) == ["auth.login", "auth.logout"], what="both good events")

    reasons = []
    for _ in poison:
        _, props, _ = wait_for(lambda: _get(amqp, names.dead), what="a dead letter")
        reasons.append(props.headers["x-sealog-reason"])
    assert [r.split(":")[0] for r in reasons] == ["body is not JSON", "element 0", "invalid event", "invalid event"]
    assert reasons[1] == "element 0: body is a JSON int, not an object"  # an array is a batch (test_packed)
    assert "action" in reasons[2]
    assert "tenant_id" in reasons[3]
    assert running.proc is not None
    assert running.proc.poll() is None
    wait_for(lambda: running.stats()["dead_lettered"] == len(poison), what="the dead-letter count")


def test_dead_letters_carry_body_reason_and_origin(consumer: Consume, amqp: Any, names: Names) -> None:
    """The dead-letter copy keeps the body and headers and names the reason and the routing key."""
    consumer("#")
    publish(amqp, names.exchange, [("auth.login", b"{broken")], headers={"origin": "test"})
    got = wait_for(lambda: _get(amqp, names.dead), what="the dead letter")
    _, props, body = got
    assert body == b"{broken"
    assert "not JSON" in props.headers["x-sealog-reason"]
    assert props.headers["origin"] == "test"
    assert props.headers["x-sealog-routing-key"] == "auth.login"
    assert props.delivery_mode == 2
    assert amqp.queue_declare(names.queue, passive=True).method.message_count == 0  # acked, not looping


def _get(channel: Any, queue: str) -> tuple[Any, Any, bytes] | None:
    method, props, body = channel.basic_get(queue, auto_ack=True)
    return None if method is None else (method, props, body)


def test_same_messages_twice_give_one_row_each(consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """Republished messages, with ids and without (derived from the body), are stored once."""
    consumer("#")
    with_ids = [("auth.login", sealog_body("auth.login", actor_id=f"u-{i}")) for i in range(150)]
    without = [("auth.token", json.dumps({"event_type": "auth.token",
                                          "payload": {"tenant_id": "acme", "n": i}}).encode()) for i in range(150)]
    for _ in range(2):
        publish(amqp, names.exchange, with_ids + without)
    db = tmp_path / "audit.db"
    sentinel = sealog_body("auth.done")
    publish(amqp, names.exchange, [("auth.done", sentinel)])
    wait_for(lambda: "auth.done" in stored_actions(db), what="the sentinel")
    assert row_counts(db) == (301, 301)


@pytest.mark.slow
def test_sigkill_mid_batch_loses_and_duplicates_nothing(
        consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """A consumer killed while writing leaves unacked messages that its successor stores once."""
    first = consumer("#", extra=("--batch-size", "100"))
    first.signal(signal.SIGSTOP)  # hold it so the backlog is there when it resumes
    total = 6000
    publish(amqp, names.exchange, [("auth.login", sealog_body("auth.login", tenant=f"t{i % 3}"))
                                   for i in range(total)])
    first.signal(signal.SIGCONT)
    db = tmp_path / "audit.db"
    wait_for(lambda: row_counts(db)[0] >= 300, what="the first batches")
    first.signal(signal.SIGKILL)
    first.wait(10)
    assert row_counts(db)[0] < total, "the consumer finished before it was killed: nothing was proven"
    consumer("#", extra=("--batch-size", "100"))
    wait_for(lambda: row_counts(db)[0] >= total, timeout=60, what="every event after the restart")
    assert row_counts(db) == (total, total)
    store = open_store(f"sqlite:///{db}")
    try:
        assert store.verify().ok
    finally:
        store.close()


@pytest.mark.slow
def test_rabbitmq_restart_while_events_flow(consumer: Consume, amqp: Any, names: Names, tmp_path: Path,
                                            rabbit_server: RabbitServer) -> None:
    """Publisher and consumer both ride out a broker restart; every event is stored once."""
    from sealog import AuditLog

    running = consumer("#")
    db = tmp_path / "audit.db"
    log = AuditLog(broker=rabbit_server.url, exchange=names.exchange, spool_dir=tmp_path / "spool")
    try:
        ids = [log.emit(tenant_id="acme", action="auth.login", actor=("user", f"u-{i}")) for i in range(500)]
        wait_for(lambda: row_counts(db)[0] > 0, what="events flowing before the restart")
        rabbit_server.stop()
        ids += [log.emit(tenant_id="acme", action="auth.login", actor=("user", f"v-{i}")) for i in range(500)]
        rabbit_server.start()
        ids += [log.emit(tenant_id="acme", action="auth.logout", actor=("user", f"w-{i}")) for i in range(500)]
        assert log.flush(timeout=60), log.stats()
    finally:
        log.close()
    wait_for(lambda: row_counts(db)[0] >= len(ids), timeout=60, what="every event after the restart")
    assert row_counts(db) == (len(ids), len(ids))
    wait_for(lambda: running.stats().get("reconnects", 0) >= 1, what="the consumer to report its reconnect")


def test_sigterm_finishes_the_batch_in_hand_and_exits_zero(
        consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """Messages held for a long batch are stored and acked on SIGTERM, and the exit is prompt and 0."""
    running = consumer("#", extra=("--batch-size", "1000", "--batch-delay", "60000"))
    publish(amqp, names.exchange, [("auth.login", sealog_body("auth.login")) for _ in range(40)])
    wait_for(lambda: running.stats().get("received") == 40, what="the consumer to hold 40 messages")
    db = tmp_path / "audit.db"
    assert row_counts(db)[0] == 0  # held in hand, not yet written
    started = time.monotonic()
    running.signal(signal.SIGTERM)
    assert running.wait(10) == 0, running.output()
    assert time.monotonic() - started < 3
    assert row_counts(db) == (40, 40)
    assert amqp.queue_declare(names.queue, passive=True).method.message_count == 0


def test_sigint_exits_zero_when_idle(consumer: Consume) -> None:
    """Ctrl-C on an idle consumer is a clean stop, not a traceback."""
    running = consumer("#")
    running.signal(signal.SIGINT)
    assert running.wait(10) == 0
    assert "Traceback" not in running.output()
    assert running.stats()["state"] == "stopped"


def test_stats_file_is_the_health_signal(consumer: Consume, amqp: Any, names: Names) -> None:
    """The stats file counts received, stored, duplicates and dead letters, and is kept fresh."""
    running = consumer("#")
    event = sealog_body("auth.login")
    publish(amqp, names.exchange, [("auth.login", event), ("auth.login", event), ("auth.login", b"nope")])
    stats = wait_for(lambda: (s := running.stats()).get("dead_lettered") == 1 and s.get("stored") == 1 and s,
                     what="the counts")
    assert (stats["received"], stats["duplicates"], stats["state"]) == (3, 1, "consuming")
    assert stats["queue"] == names.queue
    first = stats["updated_at"]
    wait_for(lambda: running.stats()["updated_at"] != first, what="a fresh stats record")
    assert "received=3 stored=1 duplicates=1 dead_lettered=1" in running.output()


def run_consume(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealog", "consume", *args], check=False,
                          capture_output=True, text=True, timeout=60)


def test_exit_codes_at_start(tmp_path: Path, rabbit_url: str) -> None:
    """3 when the broker or the store is unreachable at start, 2 for a malformed pattern or URL."""
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    common = ["--queue", "q.exit", "--bind", "#"]
    down = run_consume("--broker", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", "--url", store, *common)
    assert down.returncode == 3, down.stderr
    assert "broker" in down.stderr
    no_store = run_consume("--broker", rabbit_url, "--url", f"sqlite:///{tmp_path / 'missing' / 'a.db'}", *common)
    assert no_store.returncode == 3, no_store.stderr
    bad_pattern = run_consume("--broker", rabbit_url, "--url", store, "--queue", "q", "--bind", "Auth.*")
    assert bad_pattern.returncode == 2
    assert "--bind" in bad_pattern.stderr
    assert run_consume("--broker", rabbit_url, "--url", store, "--queue", "q").returncode == 2  # no --bind
    assert run_consume("--broker", rabbit_url, "--url", "mysql://x", *common).returncode == 2
