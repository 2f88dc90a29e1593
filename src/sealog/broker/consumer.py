"""Broker to store: the one consumer that writes, acking only what the store committed.

The order per batch is the whole design: dead-letter the poison messages (confirmed by
the broker), write the good events in one store transaction, then ack the batch with
``multiple=True``. A crash anywhere before the ack makes the broker redeliver, and the
store's idempotent insert (on event_id, derived from the body when a message has none)
turns the redelivery into nothing. A message that cannot become an event is acked only
after its copy, with the reason in ``x-sealog-reason``, is safe in the dead-letter queue,
so one bad body can neither be lost nor loop forever.

A message that kills the process outright (no exception to catch: a segfault, the OOM
killer) comes back with the ``redelivered`` flag. Each redelivered message's attempts
are counted in a small file written *before* it is handled, so the count survives the
crash it counts. From the second attempt on, redelivered messages are handled one by
one, which isolates the killer from its innocent batch mates; at ``MAX_ATTEMPTS`` it is
dead-lettered unread, with the reason, and the consumer carries on. A quorum queue's
``x-delivery-count`` is not used for that count: the broker counts every return, and a
lost connection or a stopped node returns every message in flight, so innocent messages
would be taken for killers (and handled one by one, slowly) after a node loss. Deaths of
consumers on other hosts are what the quorum queue's delivery limit is for.

``--queue-type quorum`` declares a replicated quorum queue (and dead-letter queue) with
``x-delivery-limit``: the broker itself dead-letters a message returned more often than
that, the last line for a crash the consumer could not count (a fault in the client
library, a wiped attempts file). Dead-lettering is ``at-least-once``, so a message is
never dropped between the queue and its dead-letter queue, even while a node is down.

pika's blocking API fits: one connection with two channels (consume; confirmed dead-letter
publishes), used from the main thread only. The store write runs in one helper thread so
that it overlaps the next batch: while batch N waits on the database (its commit, the
round trips: most of a write's time is spent waiting), the main thread receives and
checks batch N+1. At most one batch is in the store; the next is acked only after it, so
``multiple=True`` never covers a message the store has not committed. Dead letters and
acks stay on the main thread, and a batch read on a connection that has since been lost
is never acked on the new one: the broker redelivers it, and the idempotent insert turns
the copy into nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from .. import _timefmt as timefmt
from .._errors import EventRejected, StoreUnavailable
from .._event import Event
from .._isolate import Unproven, isolate
from ..stores import Store
from .envelopes import Part, Poison, part_message_id, parts, to_event
from .publisher import broker_urls, connection_parameters

_jitter = random.Random()  # leaves the global random state alone
log = logging.getLogger("sealog")

REASON_HEADER: Final = "x-sealog-reason"
BACKOFF_START: Final = 0.1
BACKOFF_CAP: Final = 5.0
STOP_POLL: Final = 0.2
"""How often an idle consumer looks at the stop flag: the bound on SIGTERM latency."""
MAX_ATTEMPTS: Final = 3
"""Deliveries during which the process died before a message is dead-lettered unread."""
QUEUE_TYPES: Final = ("classic", "quorum")
DEFAULT_DELIVERY_LIMIT: Final = 10
"""Quorum queues: returns before the broker dead-letters a message. Above MAX_ATTEMPTS, so the
consumer (which names the reason) acts first, and above the few returns an innocent message
collects when a killer's batch mates go back to the queue with it."""


class BrokerUnavailable(Exception):
    """The broker cannot be reached or refused the connection at start."""


class TopologyConflict(Exception):
    """The broker refused a declaration (an existing queue or exchange differs)."""


@dataclass(frozen=True)
class Settings:
    broker: str
    exchange: str
    queue: str
    bindings: tuple[str, ...]
    dead_letter: str
    default_tenant: str | None = None
    batch_size: int = 500
    batch_delay: float = 0.05
    """Seconds a partial batch waits for more messages before it is written."""
    prefetch: int = 1000
    stats_file: Path | None = None
    stats_interval: float = 30.0
    attempts_file: Path | None = None
    """Attempt counts of redelivered messages [default: beside the stats file; else in memory]."""
    queue_type: str = "classic"
    """``classic`` or ``quorum`` (replicated on a cluster, with a delivery limit)."""
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def queue_arguments(self) -> dict[str, Any]:
        """The queue's declaration arguments; a queue declared before with others is a TopologyConflict."""
        arguments: dict[str, Any] = {"x-dead-letter-exchange": self.dead_letter}
        if self.queue_type == "quorum":
            arguments.update({"x-queue-type": "quorum", "x-delivery-limit": self.delivery_limit,
                              "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        return arguments

    def dead_letter_arguments(self) -> dict[str, Any] | None:
        return {"x-queue-type": "quorum"} if self.queue_type == "quorum" else None


@dataclass
class Counts:
    """The health signal: logged every interval and written to the stats file."""

    received: int = 0
    """Messages; ``events`` counts the events in them (more, with batch messages)."""
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    reconnects: int = 0
    store_retries: int = 0
    state: str = "starting"
    last_error: str | None = None
    last_batch_at: str | None = None
    started_at: str = field(default_factory=timefmt.now)


class Delivery(NamedTuple):
    tag: int
    routing_key: str
    exchange: str
    properties: Any
    body: bytes
    redelivered: bool = False

    @property
    def key(self) -> str:
        """Who this message is, across redeliveries: its body and message id."""
        digest = hashlib.sha256(self.body)
        digest.update(b"\0" + str(self.properties.message_id or "").encode())
        return digest.hexdigest()[:32]

    @property
    def broker_count(self) -> int:
        """A quorum queue's own count of earlier deliveries (``x-delivery-count``), else 0."""
        count = (self.properties.headers or {}).get("x-delivery-count", 0)
        return count if isinstance(count, int) and not isinstance(count, bool) else 0


class Item(NamedTuple):
    """One event's origin: its message, and its body there (the whole body, or a batch element)."""

    delivery: Delivery
    part: Part


Refused = list[tuple[Item, str]]
"""Events the store refused alone (proven by a stored sibling), with the reason."""


class InFlight(NamedTuple):
    """The batch in the store thread: acked (up to ``last_tag``) once its write is done."""

    result: Future[tuple[bool, Refused]]
    last_tag: int
    channel: Any


class Attempts:
    """How often each redelivered message was being handled when the process died.

    Kept in a JSON file replaced atomically (and fsynced) before the messages are
    handled; entries leave when their message is acked. Only redelivered messages are
    recorded, so the normal path never touches the file.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: dict[str, int] = {}
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text())
                self.counts = {str(k): int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    def seen(self, delivery: Delivery) -> int:
        """Attempts counted so far: deaths of this consumer (its file) while handling the message."""
        return self.counts.get(delivery.key, 0)

    def begin(self, deliveries: Sequence[Delivery]) -> dict[str, int]:
        """Count one more attempt for each redelivered message; returns the counts, saved."""
        for d in deliveries:
            self.counts[d.key] = self.counts.get(d.key, 0) + 1
        self._save()
        return {d.key: self.counts[d.key] for d in deliveries}

    def forgive(self, deliveries: Sequence[Delivery]) -> None:
        """Undo ``begin``: the process did not die, the broker connection did (or we stopped)."""
        changed = False
        for d in deliveries:
            if self.counts.get(d.key, 0) > 0:
                self.counts[d.key] -= 1
                changed = True
        if changed:
            self._save()

    def done(self, deliveries: Sequence[Delivery]) -> None:
        removed = [self.counts.pop(d.key, None) for d in deliveries]
        if any(count is not None for count in removed):
            self._save()

    def _save(self) -> None:
        self.counts = {k: v for k, v in self.counts.items() if v > 0}
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(self.counts).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.path)
        except OSError as exc:  # counting is a safety net; it must not stop consumption
            log.warning("sealog consume: cannot write the attempts file %s: %s", self.path, exc)


def _broker_errors() -> tuple[type[BaseException], ...]:
    import pika.exceptions

    return (pika.exceptions.AMQPError, OSError)


class Consumer:
    """Consumes one queue into one store until ``stop()``; reconnects after broker restarts."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.counts = Counts()
        self._stopping = False
        self._conn: Any = None
        self._channel: Any = None
        self._dl_channel: Any = None
        self._pending: list[Delivery] = []
        self._inflight: InFlight | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sealog-consume-store")
        self._first_at = 0.0
        self._turn = -1  # the node connected to last, in broker_urls order
        self._last_report = time.monotonic()
        attempts = settings.attempts_file
        if attempts is None and settings.stats_file is not None:
            attempts = settings.stats_file.with_name(settings.stats_file.stem + ".attempts.json")
        self.attempts = Attempts(attempts)

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Safe from a signal handler: the loop finishes the batch in hand, then returns."""
        self._stopping = True

    def connect(self) -> None:
        """Connect and declare the topology; BrokerUnavailable or TopologyConflict at once."""
        import pika
        import pika.exceptions

        try:  # several nodes (amqp://u:p@h1:p1,h2:p2/vh): pika tries them in turn, from the next one
            self._conn = pika.BlockingConnection(self._nodes())
        except pika.exceptions.AMQPError as exc:
            raise BrokerUnavailable(f"cannot reach the broker {self._where}: {exc!r}") from exc
        try:
            self._declare()
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._close_connection()
            raise TopologyConflict(f"the broker refused a declaration: {exc.reply_text}") from exc
        except pika.exceptions.AMQPError as exc:
            self._close_connection()
            raise BrokerUnavailable(f"broker {self._where}: {exc!r}") from exc
        self.counts.state = "consuming"

    def run(self) -> None:
        """Consume until stopped; a lost connection is re-established with backoff."""
        errors = _broker_errors()
        try:
            while not self._stopping:
                try:
                    if self._conn is None:
                        self._reconnect()
                        continue
                    self._consume()
                except errors as exc:
                    self._lost(exc)
        finally:
            self._stopping = True  # a write still retrying an outage gives up (its batch stays unacked)
            self._writer.shutdown(wait=True)
        self._close_connection()
        self.counts.state = "stopped"
        self.report()

    # -- topology ----------------------------------------------------------------------

    def _declare(self) -> None:
        s = self.settings
        channel = self._conn.channel()
        channel.exchange_declare(s.exchange, exchange_type="topic", durable=True)
        channel.exchange_declare(s.dead_letter, exchange_type="fanout", durable=True)
        channel.queue_declare(s.dead_letter, durable=True, arguments=s.dead_letter_arguments())
        channel.queue_bind(s.dead_letter, s.dead_letter)
        # The queue's own dead-letter exchange catches what an operator rejects or expires, and
        # (quorum) what was returned more than the delivery limit.
        channel.queue_declare(s.queue, durable=True, arguments=s.queue_arguments())
        for pattern in s.bindings:
            channel.queue_bind(s.queue, s.exchange, routing_key=pattern)
        channel.basic_qos(prefetch_count=s.prefetch)
        dl_channel = self._conn.channel()
        dl_channel.confirm_delivery()
        channel.basic_consume(s.queue, self._on_message, auto_ack=False)
        self._channel, self._dl_channel = channel, dl_channel

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append(Delivery(method.delivery_tag, method.routing_key, method.exchange,
                                      properties, body, bool(method.redelivered)))
        self.counts.received += 1

    # -- the loop ----------------------------------------------------------------------

    def _consume(self) -> None:
        s = self.settings
        while True:
            if self._stopping:
                self._flush()  # the batch in hand; unread prefetched messages return to the queue
                self._settle()
                return
            wait = STOP_POLL
            if self._pending:
                wait = max(0.0, min(wait, self._first_at + s.batch_delay - time.monotonic()))
            self._conn.process_data_events(time_limit=wait)
            if self._inflight is not None and self._inflight.result.done():
                self._settle()
            if self._pending and (len(self._pending) >= s.batch_size
                                  or time.monotonic() - self._first_at >= s.batch_delay):
                self._flush()
            if time.monotonic() - self._last_report >= s.stats_interval:
                self.report()

    def _flush(self) -> None:
        """Handle the batch in hand; redelivered messages are counted first (see the module doc)."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        again = [d for d in batch if d.redelivered or d.broker_count]
        if not again:
            self._submit(batch)  # acked once stored, while the next batch comes in
            return
        if not self._settle():  # the counting below needs the batch before it settled
            return  # stopping during a store outage: unacked, so the broker redelivers both
        begun: list[Delivery] = []
        acked: list[Delivery] = []
        try:
            if max(self.attempts.seen(d) for d in again) == 0:  # a first redelivery: as a batch
                begun = again
                self.attempts.begin(again)
                if self._handle(batch):
                    acked = batch
                return
            # A batch died before: one message at a time, each counted just before it is handled,
            # so only the one that kills the process is counted again.
            counted = {id(d) for d in again}
            for delivery in batch:
                if time.monotonic() - self._last_report >= self.settings.stats_interval:
                    self.report()  # this path is slow (a transaction per message): still visibly alive
                if id(delivery) not in counted:
                    if not self._handle([delivery]):
                        break
                    continue
                begun, acked = [delivery], []
                if (n := self.attempts.begin(begun)[delivery.key]) >= MAX_ATTEMPTS:
                    self._dead_letter(delivery, f"delivered {n} times and the consumer process died while "
                                                "handling it: dead-lettered unread to end a crash loop")
                    self._channel.basic_ack(delivery.tag)
                elif not self._handle(begun):
                    break
                acked = begun
                self._settle_attempts(begun, acked)  # acked: its count goes now, before a later message can kill us
        except _broker_errors():
            self._settle_attempts(begun, acked)  # the connection died, not the process: no attempt used up
            raise
        except BaseException:  # ends the process, like a crash: its counts stand, as they should
            begun = []
            raise
        finally:
            if begun:
                self._settle_attempts(begun, acked)

    def _settle_attempts(self, begun: list[Delivery], acked: list[Delivery]) -> None:
        handled = {id(d) for d in acked}
        self.attempts.done([d for d in begun if id(d) in handled])
        self.attempts.forgive([d for d in begun if id(d) not in handled])  # a lost connection, or a stop
        begun.clear()  # settled once only: _flush's finally sees an empty list

    def _handle(self, batch: list[Delivery]) -> bool:
        """Dead-letter the poison, store the rest in one transaction, then ack everything.

        False when stopping during a store outage: nothing acked, the broker redelivers.
        """
        return self._submit(batch) and self._settle()

    def _submit(self, batch: list[Delivery]) -> bool:
        """Dead-letter the poison, then hand the rest to the store thread once the batch before is acked.

        The poison's copies are confirmed in the dead-letter queue before the batch is acked.
        False (and nothing handed on) when the batch before could not be stored (stopping
        during an outage): both stay unacked, so the broker redelivers them.
        """
        settings = self.settings
        good: list[tuple[Item, Event]] = []
        for delivery in batch:
            message_id = delivery.properties.message_id
            try:
                found = parts(delivery.body)
            except Poison as exc:
                self._dead_letter(delivery, str(exc))
                continue
            self.counts.events += len(found)
            for part in found:
                try:
                    event = to_event(part.body, default_tenant=settings.default_tenant,
                                     message_id=part_message_id(message_id, delivery.body, part))
                except Poison as exc:
                    where = "" if part.position is None else f"element {part.position}: "
                    self._dead_letter(delivery, f"{where}{exc}", part)
                    continue
                good.append((Item(delivery, part), event))
        if not self._settle():
            return False
        result = self._writer.submit(self._store, good)
        self._inflight = InFlight(result, batch[-1].tag, self._channel)
        conn = self._conn
        result.add_done_callback(lambda _done: self._wake(conn))
        return True

    @staticmethod
    def _wake(conn: Any) -> None:
        """From the store thread: end the main thread's wait for broker I/O, so it acks at once."""
        with contextlib.suppress(Exception):  # the connection closed meanwhile: nothing left to ack on
            conn.add_callback_threadsafe(lambda: None)

    def _settle(self) -> bool:
        """Wait for the batch in the store (serving the connection meanwhile), dead-letter what
        the store refused, then ack the batch. False if it was not stored (stopping in an outage)."""
        inflight = self._inflight
        if inflight is None:
            return True
        while not inflight.result.done():
            self._conn.process_data_events(time_limit=STOP_POLL)  # heartbeats; new messages wait in _pending
        self._inflight = None
        stored, refused = inflight.result.result()
        if not stored:
            return False
        if inflight.channel is not self._channel:  # read on a lost connection: redelivered, not acked
            return True
        for item, reason in refused:
            self._dead_letter(item.delivery, f"the store refused it: {reason}", item.part)
        self._channel.basic_ack(inflight.last_tag, multiple=True)
        self.counts.batches += 1
        self.counts.last_batch_at = timefmt.now()
        return True

    def _store(self, pairs: Sequence[tuple[Item, Event]]) -> tuple[bool, Refused]:
        """In the store thread: write; retry outages; name what the store refused for that message alone.

        The same rule as the writer (``_isolate``): a refusal is a message's fault only once a
        sibling was stored; a store that refuses everything is an outage. False if given up
        at stop (unacked: the broker redelivers).
        """
        refused: Refused = []
        delay = BACKOFF_START
        while pairs:
            try:
                stored = isolate(pairs, self._write_retrying, lambda pair, reason: refused.append((pair[0], reason)))
                return stored, refused if stored else []
            except Unproven as exc:
                if not self._outage(exc, len(pairs)):
                    return False, []
                self._sleep(_jitter.uniform(delay / 2, delay))
                delay = min(delay * 2, BACKOFF_CAP)
        return True, refused

    def _write_retrying(self, pairs: Sequence[tuple[Item, Event]]) -> bool:
        """One store write, retrying outages (and unclassified errors) with backoff."""
        delay = BACKOFF_START
        while True:
            try:
                added = self.store.write([event for _, event in pairs])
            except EventRejected:
                raise
            except Exception as exc:  # StoreUnavailable or unclassified: an outage, never the message's fault
                if not self._outage(exc, len(pairs)):
                    return False
                self._sleep(_jitter.uniform(delay / 2, delay))  # the main thread keeps the connection alive
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            self.counts.stored += added
            self.counts.duplicates += len(pairs) - added
            return True

    def _outage(self, exc: Exception, waiting: int) -> bool:
        """Count and log an outage; False when stopping (the messages stay in the queue)."""
        self.counts.store_retries += 1
        cause = str(exc) if isinstance(exc, StoreUnavailable) else f"unexpected {type(exc).__name__}: {exc}"
        self._note_error(f"store unavailable: {cause}", first=self.counts.store_retries == 1)
        if self._stopping:
            log.warning("sealog consume: stopping while the store is down; %d messages stay in the queue",
                        waiting)
            return False
        return True

    def _dead_letter(self, delivery: Delivery, reason: str, part: Part | None = None) -> None:
        """Publish a copy with the reason, confirmed, before the original is acked.

        A batch element goes alone (its own body, its position in ``x-sealog-index``):
        its batch mates were stored, and a copy of them would be a second delivery.
        """
        import pika

        props = delivery.properties
        body = delivery.body
        headers = {**(props.headers or {}), REASON_HEADER: reason[:1000],
                   "x-sealog-queue": self.settings.queue, "x-sealog-exchange": delivery.exchange,
                   "x-sealog-routing-key": delivery.routing_key}
        if part is not None and part.position is not None:
            body, headers["x-sealog-index"] = part.body, part.position
        copy = pika.BasicProperties(
            content_type=props.content_type, content_encoding=props.content_encoding,
            headers=headers, delivery_mode=2, message_id=props.message_id,
            correlation_id=props.correlation_id, timestamp=props.timestamp, type=props.type,
            app_id=props.app_id)
        self._dl_channel.basic_publish(self.settings.dead_letter, delivery.routing_key, body, copy)
        self.counts.dead_lettered += 1
        log.warning("sealog consume: dead-lettered a message (routing key %r): %s",
                    delivery.routing_key, reason)

    # -- outages -----------------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        self._pending.clear()  # unacked: the broker redelivers them to whoever consumes next
        self._inflight = None  # its write goes on; the copies redelivered are duplicates the store ignores
        self._close_connection()
        self.counts.state = "reconnecting"
        self._note_error(f"broker connection lost: {type(exc).__name__}: {exc}", first=True)

    def _reconnect(self) -> None:
        delay = BACKOFF_START
        started = time.monotonic()
        while not self._stopping:
            try:
                self.connect()
            except (BrokerUnavailable, TopologyConflict) as exc:
                self.counts.last_error = str(exc)
                self._sleep(_jitter.uniform(delay / 2, delay))
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            self.counts.reconnects += 1
            log.warning("sealog consume: reconnected to the broker after %.1f s", time.monotonic() - started)
            return

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, STOP_POLL))  # a signal does not cut a sleep short (PEP 475)

    def _close_connection(self) -> None:
        conn, self._conn, self._channel, self._dl_channel = self._conn, None, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception as exc:  # already broken: nothing left to release
                log.debug("sealog consume: closing the connection failed: %r", exc)

    def _note_error(self, message: str, *, first: bool) -> None:
        self.counts.last_error = message
        if first:  # one line per outage, not one per retry
            log.warning("sealog consume: %s", message)

    def _nodes(self) -> list[Any]:
        """Connection parameters of every node, starting after the one used last."""
        nodes = [connection_parameters(url) for url in broker_urls(self.settings.broker)]
        self._turn = (self._turn + 1) % len(nodes)
        return nodes[self._turn:] + nodes[:self._turn]

    @property
    def _where(self) -> str:
        return self.settings.broker.rpartition("@")[2]

    # -- health ------------------------------------------------------------------------

    def report(self) -> None:
        """Log one line of counts and rewrite the stats file (atomically: tmp, then rename)."""
        self._last_report = time.monotonic()
        c = self.counts
        log.info("sealog consume: %s queue=%s received=%d stored=%d duplicates=%d dead_lettered=%d "
                 "batches=%d reconnects=%d store_retries=%d", c.state, self.settings.queue, c.received,
                 c.stored, c.duplicates, c.dead_lettered, c.batches, c.reconnects, c.store_retries)
        path = self.settings.stats_file
        if path is None:
            return
        record = {"pid": os.getpid(), "queue": self.settings.queue, "exchange": self.settings.exchange,
                  "bindings": list(self.settings.bindings), "broker": self._where,
                  "updated_at": timefmt.now(), **asdict(c)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(record, indent=1) + "\n")
            tmp.replace(path)
        except OSError as exc:
            log.warning("sealog consume: cannot write the stats file %s: %s", path, exc)
