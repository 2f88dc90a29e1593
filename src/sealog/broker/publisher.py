"""The emitter's broker sink: each event a persistent message, released only once confirmed.

pika's ``BlockingChannel.confirm_delivery`` waits for every message's confirm before the
next publish: one round trip per event (~1,500 a second here). This sink instead drives
a ``SelectConnection`` (pika's public asynchronous API) from the writer thread: the
whole batch is written, then the ioloop runs until the broker confirmed every delivery
tag. The writer calls ``write`` from its one thread, so nothing here is shared.

Published with ``mandatory``: a message no queue is bound for comes back as a return
(before its confirm). ``write_lines`` reports just that event as rejected, and the
writer puts it in the local quarantine file: an audit event is never silently dropped
by the broker. The rest of the batch was confirmed and is not sent again: re-sending a
whole batch for one unroutable event once put 1,884 copies of 1,001 events in a queue.

Through the older ``write`` (Sink protocol) a return still raises ``EventRejected``, and the
writer splits the batch to find the event; the messages the broker already confirmed
are remembered, so those retries skip them instead of publishing them again. The same
memory keeps the retry after an outage from re-sending what was confirmed before it.

A cluster is one URL with several hosts, ``amqp://user:pass@h1:5672,h2:5672,h3:5672/vhost``
(one set of credentials, so the spool's target, which drops the password, names them all).
The publisher stays on the node that works; when its connection breaks it tries the
others in turn, and the messages the lost node never confirmed are published again (the
consumer's idempotent store turns a copy into nothing).

``events_per_message`` above 1 packs up to that many events of one routing key into one
message, a JSON array of the events (``sealog consume`` reads either form). Per message,
RabbitMQ and pika at both ends cost more than storing the event: packing 25 roughly
doubles what one consumer stores a second (``bench/bench_broker.py``). The default stays
one event per message, the form other consumers of the exchange may expect. Events of
one routing key keep their order; a batch's messages go out grouped by routing key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import msgspec

from .._errors import EventRejected, StoreUnavailable
from .._event import Event
from .._sinks import Written

log = logging.getLogger("sealog")

DEFAULT_EXCHANGE: Final = "sealog.events"
CONNECT_TIMEOUT: Final = 10.0
CONFIRM_TIMEOUT: Final = 30.0
"""A broker that neither confirms nor fails within this counts as down (e.g. a disk alarm)."""
REMEMBER_CAP: Final = 100_000
"""Confirmed keys kept for retries; past this, forgetting costs duplicates, never losses."""
MAX_EVENTS_PER_MESSAGE: Final = 1000
PACKED_BYTES: Final = 512 * 1024
"""A packed message stops growing here, well under the consumer's 1 MiB limit per body."""

_encode = msgspec.json.Encoder().encode
_decode_batch = msgspec.json.Decoder(list[Event]).decode
_decode = msgspec.json.Decoder(Event).decode
Key = tuple[str, str]
"""(tenant_id, event_id): the idempotency key of an event."""


class Message(NamedTuple):
    body: bytes
    positions: list[int]
    """The events it carries, as positions in the batch."""


def check_events_per_message(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EVENTS_PER_MESSAGE:
        raise ValueError(f"events_per_message must be a whole number from 1 to {MAX_EVENTS_PER_MESSAGE}, "
                         f"not {value!r}")
    return value


def broker_urls(url: str) -> list[str]:
    """One URL per node of ``amqp://user:pass@h1:p1,h2:p2/vhost`` (a single-host URL is itself)."""
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return [url]
    nodes = [host.strip() for host in hosts.split(",")]
    if not all(nodes):
        raise ValueError(f"not a broker URL: an empty host in {hosts!r}")
    return [urlunsplit(parts._replace(netloc=f"{credentials}{at}{node}")) for node in nodes]


def connection_parameters(url: str) -> Any:
    """Parameters from an ``amqp://`` URL, with timeouts so a dead broker fails fast."""
    import pika

    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises a variety of errors for malformed URLs
        raise ValueError(f"not a broker URL: {url.rpartition('@')[2]!r}: {exc}") from None
    if "socket_timeout" not in url:
        params.socket_timeout = 5.0
    if "connection_attempts" not in url:
        params.connection_attempts = 1
    if "blocked_connection_timeout" not in url:
        # A broker in a memory or disk alarm blocks publishers; give up and retry later.
        params.blocked_connection_timeout = CONFIRM_TIMEOUT
    return params


class Publisher:
    """A writer Sink that publishes to a durable topic exchange with publisher confirms."""

    def __init__(self, url: str, *, exchange: str = DEFAULT_EXCHANGE, events_per_message: int = 1) -> None:
        self.url = url
        self.exchange = exchange
        self.events_per_message = check_events_per_message(events_per_message)
        self.published = 0
        self._nodes = [connection_parameters(node) for node in broker_urls(url)]
        self._node = 0  # the node in use, kept while it works
        self._params = self._nodes[0]
        self._conn: Any = None
        self._channel: Any = None
        self._ready = False
        self._broken: str | None = None
        self._done: Callable[[], bool] | None = None
        self._sent = 0  # delivery tags issued on this channel (they start at 1)
        self._confirmed = 0  # every tag up to here is acked
        self._singles: set[int] = set()  # settled tags beyond the contiguous prefix
        self._nacked: set[int] = set()  # tags the broker refused (settled, but not taken)
        self._returned: list[bytes] = []  # bodies of the messages the broker returned
        self._loop: Any = None  # the ioloop _wait is running, which callbacks stop
        self._already: set[Key] = set()
        """Events the broker confirmed in a call that still failed; its retry skips them."""

    # -- the Sink protocol -------------------------------------------------------------

    def migrate(self) -> None:
        """Connect and declare the exchange (idempotent, so any number of emitters may)."""
        self._connected()

    def write_lines(self, lines: list[bytes]) -> Written:
        """The LineSink contract: publish the events; report unroutable and unreadable lines.

        Returns once the broker confirmed every message. A line that is no event, or an
        event no queue is bound for, comes back in ``rejected`` for the quarantine;
        everything else counts as added.
        """
        try:  # one decode for the whole batch; line by line only to find a bad one
            events = _decode_batch(b"[" + b",".join(lines) + b"]")
            positions = list(range(len(events)))
            rejected: list[tuple[int, str]] = []
        except msgspec.DecodeError:
            events, positions, rejected = [], [], []
            for index, line in enumerate(lines):
                try:
                    events.append(_decode(line))
                    positions.append(index)
                except msgspec.DecodeError as exc:
                    rejected.append((index, f"unreadable spool line: {exc}"))
        added, returned = self._deliver(events)
        rejected += [(positions[i], self._unroutable([events[i].action])) for i in returned]
        return Written(added, sorted(rejected))

    def write(self, events: Sequence[Event]) -> int:
        """The Sink protocol: publish the batch; returns once the broker confirmed every message.

        An unroutable event raises ``EventRejected``; the confirmed rest is remembered, so the
        writer's smaller retries of the batch do not publish those messages again.
        """
        added, returned = self._deliver(events)
        if returned:
            unroutable = set(returned)
            self._already.update((e.tenant_id, e.event_id) for i, e in enumerate(events) if i not in unroutable)
            raise EventRejected(self._unroutable([events[i].action for i in returned]))
        return added

    def _unroutable(self, actions: list[str]) -> str:
        keys = ", ".join(repr(a) for a in sorted(set(actions))[:5])
        return f"no queue is bound on exchange {self.exchange!r} for routing key {keys}"

    def _deliver(self, events: Sequence[Event]) -> tuple[int, list[int]]:
        """(confirmed, positions returned unroutable). A connection that went stale while the
        writer idled (heartbeats are only answered while it waits here) is replaced once,
        quietly, before failing; what the broken one confirmed is not sent again."""
        reused = self._ready
        try:
            return self._attempt(events)
        except StoreUnavailable:
            if not reused:
                raise
        return self._attempt(events)

    def _attempt(self, events: Sequence[Event]) -> tuple[int, list[int]]:
        todo = list(range(len(events)))
        skipped: list[Key] = []
        if self._already:  # only after a failed call: the happy path pays nothing
            if len(self._already) > REMEMBER_CAP:  # retries never came (shutdown): forget
                self._already.clear()
            todo = []
            for i, event in enumerate(events):
                key = (event.tenant_id, event.event_id)
                if key in self._already:
                    skipped.append(key)
                else:
                    todo.append(i)
            self._already.difference_update(skipped)  # each is skipped once: by the retry it was kept for
        try:
            returned = self._publish([events[i] for i in todo])
        except StoreUnavailable:
            self._already.update(skipped)  # still confirmed: the next retry skips them too
            raise
        return len(events) - len(returned), [todo[j] for j in returned]

    def close(self) -> None:
        conn, self._conn, self._channel, self._ready = self._conn, None, None, False
        if conn is None:
            return
        with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
            if conn.is_open:
                conn.close()
                self._wait(lambda: conn.is_closed, 5.0, conn)
        with contextlib.suppress(Exception):
            conn.ioloop.close()

    # -- publishing --------------------------------------------------------------------

    def _publish(self, events: Sequence[Event]) -> list[int]:
        """Publish and wait for every confirm; the positions the broker returned as unroutable."""
        import pika

        if not events:
            return []
        channel = self._connected()
        self._returned.clear()
        self._nacked.clear()
        first = self._sent + 1
        messages = self._pack(events)
        # One properties object, its message_id set per message: basic_publish encodes the
        # frames before it returns, so nothing refers to the object afterwards.
        props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        publish, exchange = channel.basic_publish, self.exchange
        try:
            for body, positions in messages:
                lead = events[positions[0]]
                props.message_id = lead.event_id
                publish(exchange, lead.action, body, props, mandatory=True)
                self._sent += 1
        except Exception as exc:  # the channel or connection closed under us
            self._remember(events, messages, first)
            self._fail(f"publish failed: {type(exc).__name__}: {exc}")
        last = self._sent
        try:
            self._wait(lambda: self._confirmed >= last, CONFIRM_TIMEOUT)
        except StoreUnavailable:
            self._remember(events, messages, first)
            raise
        if self._nacked:  # e.g. a quorum queue between leaders: only the refused ones go again
            self._remember(events, messages, first)
            # On a fresh channel: RabbitMQ 3.10 kept nacking a channel's publishes to a quorum queue
            # whose leader was on a node that stopped, after a new leader was elected (test_cluster).
            self.close()
            raise StoreUnavailable(f"the broker refused (nacked) {len(self._nacked)} of {len(messages)} messages; "
                                   "they will be published again")
        bodies = [message.body for message in messages]
        returned = sorted(i for m in _positions(bodies, self._returned) for i in messages[m].positions)
        self.published += len(events) - len(returned)
        return returned

    def _pack(self, events: Sequence[Event]) -> list[Message]:
        """One message per event, or (``events_per_message``) JSON arrays of one routing key's events."""
        if self.events_per_message == 1:
            return [Message(_encode(event), [i]) for i, event in enumerate(events)]
        by_key: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            by_key.setdefault(event.action, []).append(i)
        messages: list[Message] = []
        for positions in by_key.values():
            bodies: list[bytes] = []
            taken: list[int] = []
            size = 0
            for i in positions:
                body = _encode(events[i])
                if taken and (len(taken) == self.events_per_message or size + len(body) > PACKED_BYTES):
                    messages.append(_packed(bodies, taken))
                    bodies, taken, size = [], [], 0
                bodies.append(body)
                taken.append(i)
                size += len(body) + 1
            messages.append(_packed(bodies, taken))
        return messages

    def _remember(self, events: Sequence[Event], messages: list[Message], first: int) -> None:
        """Before failing: keep the keys of the messages the broker did confirm (and route)."""
        returned = set(_positions([m.body for m in messages], self._returned))
        for m, message in enumerate(messages):
            tag = first + m
            if (tag <= self._confirmed or tag in self._singles) and tag not in self._nacked and m not in returned:
                self._already.update((events[i].tenant_id, events[i].event_id) for i in message.positions)

    def _connected(self) -> Any:
        """The open channel; after a failure, each node in turn from the one that worked last."""
        if self._ready and self._conn is not None and self._conn.is_open:
            return self._channel
        for turn in range(len(self._nodes)):
            self._params = self._nodes[(self._node + turn) % len(self._nodes)]
            try:
                channel = self._connect()
            except StoreUnavailable:
                if turn == len(self._nodes) - 1:
                    raise
                continue
            if turn:
                log.warning("sealog: publishing to broker node %s", self._where)
                self._node = (self._node + turn) % len(self._nodes)
            return channel
        raise AssertionError("unreachable: the loop returns or raises")

    def _connect(self) -> Any:
        self.close()
        import pika

        self._broken, self._sent, self._confirmed = None, 0, 0
        self._singles.clear()
        try:
            self._conn = pika.SelectConnection(
                self._params, on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error, on_close_callback=self._on_closed)
        except Exception as exc:
            raise StoreUnavailable(f"broker {self._where}: {exc}") from exc
        self._wait(lambda: self._ready, CONNECT_TIMEOUT)
        return self._channel

    def _wait(self, done: Callable[[], bool], timeout: float, conn: Any = None) -> None:
        """Run the ioloop until ``done()``, the connection breaks, or the timeout."""
        conn = conn or self._conn
        if not done():
            self._done, self._loop = done, conn.ioloop
            timer = self._loop.call_later(timeout, self._loop.stop)
            try:
                self._loop.start()
            finally:
                self._loop.remove_timeout(timer)
                self._done, self._loop = None, None
        if conn is self._conn and self._broken is not None:
            self._fail(self._broken)
        if not done():
            self._fail(f"no answer from the broker within {timeout:.0f} s")

    def _fail(self, reason: str) -> None:
        self.close()
        raise StoreUnavailable(f"broker {self._where}: {reason}")

    @property
    def _where(self) -> str:
        return f"{self._params.host}:{self._params.port}"

    def _check(self) -> None:
        if self._loop is not None and self._done is not None and (self._done() or self._broken):
            self._loop.stop()

    # -- pika callbacks (run inside _wait) ----------------------------------------------

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)

        def declared(_frame: Any) -> None:
            self._channel, self._ready = channel, True
            self._check()

        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: channel.exchange_declare(
            self.exchange, exchange_type="topic", durable=True, callback=declared))

    def _on_open_error(self, _conn: Any, error: Any) -> None:
        self._broken = f"cannot connect: {error!r}"
        self._check()

    def _on_closed(self, _conn: Any, reason: Any) -> None:
        self._broken = self._broken or f"connection closed: {reason!r}"
        self._ready = False
        if self._loop is not None:
            self._loop.stop()

    def _on_channel_closed(self, _channel: Any, reason: Any) -> None:
        self._broken = self._broken or f"channel closed: {reason!r}"
        self._ready = False
        self._check()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        if method.NAME == "Basic.Nack":  # settled, refused: every unsettled tag it covers
            covered = range(self._confirmed + 1, tag + 1) if method.multiple else (tag,)
            self._nacked.update(t for t in covered if t not in self._singles)
        if method.multiple:
            self._confirmed = max(self._confirmed, tag)
        else:  # a single ack may come for a later tag than the next one expected
            self._singles.add(tag)
        while self._confirmed + 1 in self._singles:
            self._confirmed += 1
        if self._singles and min(self._singles) <= self._confirmed:
            self._singles = {tag for tag in self._singles if tag > self._confirmed}
        self._check()

    def _on_return(self, _channel: Any, _method: Any, _properties: Any, body: bytes) -> None:
        self._returned.append(body)


def _packed(bodies: list[bytes], positions: list[int]) -> Message:
    """A lone event goes as its own object, the form of a one-event message."""
    return Message(bodies[0] if len(bodies) == 1 else b"[" + b",".join(bodies) + b"]", positions)


def _positions(bodies: list[bytes], returned: list[bytes]) -> list[int]:
    """Where the returned bodies are in the batch (a body twice in it is returned twice)."""
    if not returned:
        return []
    wanted: dict[bytes, int] = {}
    for body in returned:
        wanted[body] = wanted.get(body, 0) + 1
    positions = []
    for index, body in enumerate(bodies):
        if wanted.get(body):
            wanted[body] -= 1
            positions.append(index)
    return positions
