"""What keeps the service up under hostile or careless clients: limits, timeouts, thread pools.

- Every blocking call (store, key check, spool wait, verify, export) runs in a worker
  thread, never on the event loop, and each kind has its own ``CapacityLimiter``: a
  heavy verify or export can fill only its own pool, so ingest and ``/healthz`` go on.
- uvicorn has a keep-alive timeout and a concurrency limit but no header or body
  timeout, so a client sending half a request line would hold its connection for ever
  (slowloris). ``HeaderDeadline`` closes a connection whose request head is not complete
  in time; ``BodyDeadline`` answers 408 when a body is not complete in time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import HTTPError

T = TypeVar("T")
EXPORT_CHUNK: Final = 500
"""Events per thread hop of an export: per-event hops would cost more than the events."""


@dataclass(frozen=True)
class Limits:
    """The service's limits; ``sealog serve`` options set them, the README lists them."""

    header_timeout: float = 10.0
    """Seconds for a request line and headers to arrive, from connect or the previous response."""
    body_timeout: float = 30.0
    """Seconds for a request body to arrive once its headers have."""
    keep_alive: int = 5
    """Seconds an idle keep-alive connection stays open."""
    max_connections: int = 1000
    """Open connections (and requests in progress) beyond which new requests get 503."""
    max_header_bytes: int = 16 << 10
    """Request line and headers, beyond which the request gets 400."""
    read_threads: int = 8
    """Concurrent key checks, searches and event reads."""
    ingest_threads: int = 8
    """Concurrent ingest calls (each may wait up to the spool timeout for room)."""
    heavy_threads: int = 2
    """Concurrent verifies and export reads: the most a heavy client can occupy."""


class Offload:
    """Runs blocking calls in worker threads, within per-kind limits.

    The limiters are made on the serving event loop (``start``), as anyio requires.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    def start(self) -> None:
        lim = self.limits
        self._limiters = {"read": anyio.CapacityLimiter(lim.read_threads),
                          "ingest": anyio.CapacityLimiter(lim.ingest_threads),
                          "heavy": anyio.CapacityLimiter(lim.heavy_threads)}

    def _limiter(self, kind: str) -> anyio.CapacityLimiter:
        if not self._limiters:  # an app driven without its lifespan (a bare ASGI call)
            self.start()
        return self._limiters[kind]

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter("read"))

    async def ingest(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                              limiter=self._limiter("ingest"))

    async def heavy(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                              limiter=self._limiter("heavy"))

    async def chunks(self, items: Iterator[T], size: int = EXPORT_CHUNK) -> Any:
        """An async iterator of lists drawn from a blocking iterator in the heavy pool."""
        while True:
            chunk = await self.heavy(_take, items, size)
            if not chunk:
                return
            yield chunk


def _take(items: Iterator[T], size: int) -> list[T]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            break
    return chunk


class BodyDeadline:
    """ASGI middleware: a request body must be complete within ``seconds`` (else 408).

    Only the body is timed: once it is complete, ``receive`` waits untimed, because a
    streaming response listens on it for the client's disconnect for as long as it runs.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        complete = False

        async def timed() -> Message:
            nonlocal deadline, complete
            if complete:
                return await receive()
            if deadline is None:
                deadline = anyio.current_time() + self.seconds
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                message = await receive()
                complete = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            raise HTTPError(408, f"the request body did not arrive within {self.seconds:g} s",
                            {"connection": "close"})  # the rest of the body may still come: not reusable

        await self.app(scope, timed, send)


def header_deadline_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head takes over ``seconds``.

    The clock starts when the connection opens and again after each response; it stops
    when h11 has a complete request line and headers (its peer state leaves IDLE).
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expired(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def server_config(app: ASGIApp, host: str, port: int, limits: Limits, **options: Any) -> Any:
    """The uvicorn ``Config`` with every limit applied; ``options`` pass through (ssl_*, log_level)."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, http=header_deadline_protocol(limits.header_timeout),
        timeout_keep_alive=limits.keep_alive, limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes, lifespan="on", **options)
