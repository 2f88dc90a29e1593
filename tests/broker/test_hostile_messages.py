"""Issue 9, broker side: no message stops the consumer, and none can make it crash in a loop."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealog._event import CONTENT_FIELDS, Event
from sealog.broker.envelopes import _NOT_BRACKETS, _STRING, MAX_MESSAGE_BYTES, Poison, to_event, too_deep
from sealog.broker.envelopes import _outside_strings as outside_strings
from sealog.stores import open_store
from tests.children import CRASHING_CONSUMER
from tests.fixtures.rabbitmq import ConsumerProcess, Names, wait_for

from .test_consume import publish, sealog_body, stored_actions

Consume = Callable[..., ConsumerProcess]
YEAR_ONE = json.dumps({"event_type": "auth.login", "event_id": "e-1", "timestamp": "0001-01-01T00:00:00+01:00",
                       "payload": {"tenant_id": "acme"}}).encode()
DEEP = b"[" * 100_000


def _get(channel: Any, queue: str) -> Any:
    method, props, body = channel.basic_get(queue, auto_ack=True)
    return (method, props, body) if method is not None else None


def test_the_two_poison_messages_are_dead_lettered_and_the_ten_behind_them_stored(
        consumer: Consume, amqp: Any, names: Names, tmp_path: Path) -> None:
    """100,000 nested '[' and a year-1 timestamp with an offset: dead letters with reasons; the consumer lives on."""
    running = consumer("#")
    publish(amqp, names.exchange, [("x.deep", DEEP), ("auth.login", YEAR_ONE)])
    publish(amqp, names.exchange, [(f"good.n{i}", sealog_body(f"good.n{i}")) for i in range(10)])
    db = tmp_path / "audit.db"
    wait_for(lambda: len(stored_actions(db)) == 10, what="the ten good events")
    letters = [wait_for(lambda: _get(amqp, names.dead), what="a dead letter") for _ in range(2)]
    reasons = {body[:1]: props.headers["x-sealog-reason"] for _, props, body in letters}
    assert "nests deeper than" in reasons[b"["]
    assert "occurred_at" in reasons[b"{"]
    assert "years 1..9999" in reasons[b"{"]
    assert running.proc is not None
    assert running.proc.poll() is None
    wait_for(lambda: running.stats().get("dead_lettered") == 2, what="the dead-letter count")




@pytest.mark.slow
def test_a_message_that_kills_the_process_is_dead_lettered_after_three_attempts(
        rabbit_url: str, amqp: Any, names: Names, tmp_path: Path) -> None:
    """A killer among innocents: restarted after each death, the consumer isolates it, dead-letters it with the
    reason after three deaths, stores each innocent exactly once, and then stays up."""
    script = tmp_path / "crashing_consumer.py"
    script.write_text(CRASHING_CONSUMER)
    db, stats = tmp_path / "audit.db", tmp_path / "stats.json"
    args = [sys.executable, str(script), rabbit_url, names.exchange, names.queue, str(db), str(stats)]
    first = subprocess.Popen(args)
    wait_for(stats.exists, what="the queue to be declared")
    innocents = [(f"good.n{i}", sealog_body(f"good.n{i}")) for i in range(5)]
    publish(amqp, names.exchange, [*innocents[:2], ("crash.now", sealog_body("crash.now")), *innocents[2:]])
    deaths, process = 0, first
    while True:  # a supervisor (systemd, Kubernetes) restarts it until it stays up for 5 s
        try:
            assert process.wait(timeout=5) == 70
        except subprocess.TimeoutExpired:
            break
        deaths += 1
        assert deaths <= 3, "the crash loop was not broken"
        process = subprocess.Popen(args)
    try:
        assert deaths == 3
        _, props, body = wait_for(lambda: _get(amqp, names.dead), what="the killer's dead letter")
        assert json.loads(body)["action"] == "crash.now"
        assert "died while handling it" in props.headers["x-sealog-reason"]
        wait_for(lambda: len(stored_actions(db)) == 5, what="the innocents")
        assert stored_actions(db) == sorted(a for a, _ in innocents)
        assert process.poll() is None
        assert json.loads((tmp_path / "stats.attempts.json").read_text()) == {}
    finally:
        process.terminate()
        process.wait(10)


# -- fuzz ------------------------------------------------------------------------------------

KEYS = st.sampled_from([*CONTENT_FIELDS, "specversion", "type", "id", "time", "source", "subject", "data",
                        "tenantid", "event_type", "payload", "timestamp", "source_service", "user_id", "x"])
leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
          | st.sampled_from(["1.0", "a.b", "acme", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                             "::ffff:1.2.3.4", "\x00", "\ud800"]))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6),
                      max_leaves=20)
bodies = st.one_of(st.binary(max_size=200), st.dictionaries(KEYS, values, max_size=8).map(
    lambda d: json.dumps(d).encode("utf-8", "surrogatepass")))


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'audit.db'}")
    store.migrate()
    yield store
    store.close()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=bodies, tenant=st.none() | st.just("fallback"), message_id=st.none() | st.text(max_size=10))
def test_random_bodies_become_a_stored_event_or_a_dead_letter_reason(
        fuzz_store: Any, body: bytes, tenant: str | None, message_id: str | None) -> None:
    """Random bytes and random envelope-shaped JSON: an Event the store takes, or Poison with a reason; nothing else."""
    try:
        event = to_event(body, default_tenant=tenant, message_id=message_id or None)
    except Poison as exc:
        reason = str(exc)
        assert reason  # the dead letter's x-sealog-reason
        return
    assert isinstance(event, Event)
    assert fuzz_store.write([event]) in (0, 1)


def test_oversized_and_over_deep_bodies_are_refused_before_decoding() -> None:
    """Size and nesting are bounded first; brackets inside strings do not count."""
    with pytest.raises(Poison, match="over the"):
        to_event(b" " * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(Poison, match="nests deeper"):
        to_event(b'{"a":' * 73 + b"1" + b"}" * 73)
    shallow = json.dumps({"tenant_id": "acme", "action": "a.b", "metadata": {"s": "[" * 10_000}}).encode()
    assert not too_deep(shallow)
    assert to_event(shallow).metadata == {"s": "[" * 10_000}
    assert not too_deep(b'"\\"' + b"[" * 100)  # an unterminated string is text to its end (and not JSON)
    assert too_deep(b'"\\""' + b"[" * 100)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b'"', b"[", b"]", b"{", b"}", b"\\", b"a", b":", b",", b'""', b'"["']),
                max_size=60).map(b"".join))
def test_the_quick_bracket_scan_agrees_with_the_regex(text: bytes) -> None:
    """Brackets outside strings, the quick way (no backslash: pairs of quotes) or by the regex: the same."""
    assert outside_strings(text) == _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)


def test_a_batch_of_events_and_strings_holding_brackets_are_measured_right() -> None:
    """A typical 100-event body (the quick road's case: no string holds a bracket) and bodies whose strings
    do (the regex's case) give the brackets and depths they hold; the speed is bench_http.py's."""
    batch = json.dumps([{"tenant_id": "acme", "action": "a.b", "metadata": {"n": [i]}} for i in range(100)]).encode()
    assert outside_strings(batch) == b"[" + b"{{[]}}" * 100 + b"]"
    assert not too_deep(batch)
    assert too_deep(json.dumps([{"s": "[]"}, [[[[[1]]]]]]).encode(), 5)  # the regex road, same answer
    assert not too_deep(json.dumps([{"s": "[[[[[[["}, [[[1]]]]).encode(), 5)


def test_every_envelope_keeps_a_valid_ip_as_given() -> None:
    """A domain event's ::ffff:1.2.3.4 is stored as written."""
    body = json.dumps({"event_type": "auth.login", "event_id": str(uuid.uuid4()),
                       "payload": {"tenant_id": "acme", "ip_address": "::ffff:1.2.3.4"}}).encode()
    assert to_event(body).ip_address == "::ffff:1.2.3.4"
