"""The emitter's broker sink: each event a persistent message, released only once confirmed.

pika's ``BlockingChannel.confirm_delivery`` waits for every message's confirm before the
next publish: one round trip per event (~1,500 a second here). This sink instead drives
a ``SelectConnection`` (pika's public asynchronous API) from the writer thread: the
whole batch is written, then the ioloop runs until the broker confirmed every delivery
tag. The writer calls ``write`` from its one thread, so nothing here is shared.

Published with ``mandatory``: a message no queue is bound for comes back as a return.
The batch is then refused with ``Rejected``, and the writer isolates that event into
the local quarantine file: an audit event is never silently dropped by the broker.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from .._errors import StoreUnavailable
from .._event import Event
from .._sinks import Rejected

log = logging.getLogger("sealog")

DEFAULT_EXCHANGE: Final = "sealog.events"
CONNECT_TIMEOUT: Final = 10.0
CONFIRM_TIMEOUT: Final = 30.0
"""A broker that neither confirms nor fails within this counts as down (e.g. a disk alarm)."""

_encode = msgspec.json.Encoder().encode


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

    def __init__(self, url: str, *, exchange: str = DEFAULT_EXCHANGE) -> None:
        self.url = url
        self.exchange = exchange
        self.published = 0
        self._params = connection_parameters(url)
        self._conn: Any = None
        self._channel: Any = None
        self._ready = False
        self._broken: str | None = None
        self._done: Callable[[], bool] | None = None
        self._sent = 0  # delivery tags issued on this channel (they start at 1)
        self._confirmed = 0  # every tag up to here is acked
        self._singles: set[int] = set()  # acked tags beyond the contiguous prefix
        self._nacked = False
        self._returned: list[str] = []
        self._loop: Any = None  # the ioloop _wait is running, which callbacks stop

    # -- the Sink protocol -------------------------------------------------------------

    def migrate(self) -> None:
        """Connect and declare the exchange (idempotent, so any number of emitters may)."""
        self._connected()

    def write(self, events: Sequence[Event]) -> int:
        """Publish the batch; returns once the broker confirmed every message.

        A connection that went stale while the writer idled (heartbeats are only
        answered while it waits here) is replaced once, quietly, before failing.
        """
        reused = self._ready
        try:
            return self._publish(events)
        except StoreUnavailable:
            if not reused:
                raise
        return self._publish(events)

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

    def _publish(self, events: Sequence[Event]) -> int:
        import pika

        channel = self._connected()
        self._returned.clear()
        self._nacked = False
        properties = [pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                           message_id=event.event_id) for event in events]
        try:
            for event, props in zip(events, properties, strict=True):
                channel.basic_publish(self.exchange, event.action, _encode(event), props, mandatory=True)
                self._sent += 1
        except Exception as exc:  # the channel or connection closed under us
            self._fail(f"publish failed: {type(exc).__name__}: {exc}")
        last = self._sent
        self._wait(lambda: self._confirmed >= last or self._nacked, CONFIRM_TIMEOUT)
        if self._nacked:
            raise StoreUnavailable("the broker refused (nacked) a message; the batch will be retried")
        self.published += len(events)
        if self._returned:
            keys = ", ".join(sorted(set(self._returned))[:5])
            raise Rejected(f"no queue is bound on exchange {self.exchange!r} for routing key {keys}")
        return len(events)

    def _connected(self) -> Any:
        if self._ready and self._conn is not None and self._conn.is_open:
            return self._channel
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
        if method.NAME == "Basic.Nack":
            self._nacked = True
        elif method.multiple:
            self._confirmed = max(self._confirmed, method.delivery_tag)
        else:  # a single ack may come for a later tag than the next one expected
            self._singles.add(method.delivery_tag)
        while self._confirmed + 1 in self._singles:
            self._confirmed += 1
        if self._singles and min(self._singles) <= self._confirmed:
            self._singles = {tag for tag in self._singles if tag > self._confirmed}
        self._check()

    def _on_return(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        self._returned.append(repr(method.routing_key))
