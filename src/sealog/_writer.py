"""Background delivery: batches from the spool to the sink, retried until they land.

The writer owns its thread; the sink (a store or the broker publisher) only writes.
One error model: an outage (StoreUnavailable, or any error the store did not classify)
is retried with backoff while the events wait in the spool; only an event the store
refused on its own (EventRejected), proven by bisection (``_isolate``), goes to the
quarantine file, from which ``sealog requeue`` delivers it again once the cause is fixed.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import _timefmt as timefmt
from ._errors import EventRejected, StoreUnavailable
from ._isolate import Unproven, isolate
from ._sinks import LineSink
from ._spool import Segment, Spool

log = logging.getLogger("sealog")

MAX_BATCH: Final = 5000
BACKOFF_START: Final = 0.05
BACKOFF_CAP: Final = 5.0
ORPHAN_SCAN_EVERY: Final = 5.0
FSYNC_EVERY: Final = 0.2
LINGER: Final = 0.05
"""An idle writer wakes this often; sooner only for a full batch's worth, flush or close."""
WAKE_AT: Final = 500
_jitter = random.Random()
"""Backoff jitter from a generator of our own: the application's global ``random`` stays untouched."""


@dataclass
class Stats:
    stored: int = 0
    duplicates: int = 0
    retries: int = 0
    errors: int = 0
    quarantined: int = 0
    recovered: int = 0
    """Dead owners' spools delivered."""
    last_error: str | None = None
    last_write_ms: float = 0.0


class Writer:
    """Moves events from the in-memory queue (fed by emit) and from dead owners' spools."""

    def __init__(self, spool: Spool, sink: LineSink, *, migrate: bool = True) -> None:
        self.spool = spool
        self.sink = sink
        self.stats = Stats()
        self.delivered = 0
        self.idle = False
        self._migrate = migrate
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._recovered_once = False
        self._stopping = False
        self._abandon_at = float("inf")
        self._last_scan = 0.0
        self._last_failure_log = 0.0
        self._delay = BACKOFF_START
        self._inflight: list[tuple[Segment, list[bytes]]] = []
        self._unproven = False
        self.outage: str | None = None
        """The cause while the store refuses writes; None once a write succeeds."""
        self._thread: threading.Thread | None = None
        _live.add(self)
        self.start()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sealog-writer", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # interpreter shutting down: the spool keeps the events
            self._thread = None

    # -- the caller's side -----------------------------------------------------------

    def notify(self) -> None:
        """Called after each append. Waking the writer for every event would hand it the GIL
        (and a pipe round trip) per emit; it lingers instead, as a batch processor should."""
        if self.idle and self.spool.appended - self.delivered >= WAKE_AT:
            self._wake.set()

    def flush(self, timeout: float | None, target: int) -> bool:
        """Wait until ``target`` events of this process and the first recovery are delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self.delivered < target or not self._recovered_once:
                if self._thread is None or not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._done.wait(0.05 if left is None else min(left, 0.05))
        return True

    def stop(self, timeout: float) -> bool:
        """Drain within ``timeout``; what is left stays in the spool for the next process."""
        self._stopping = True
        _live.discard(self)
        self._abandon_at = time.monotonic() + timeout
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
            if thread.is_alive():
                log.warning("sealog: writer thread %s did not stop; the spool keeps its events",
                            thread.name)
                return False
        return self.delivered >= self.spool.appended

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        last_sync = time.monotonic()
        migrated = not self._migrate
        try:
            while not self._abandoned():
                try:
                    if not migrated:
                        migrated = self._retry(self.sink.migrate)
                        continue
                    if time.monotonic() - self._last_scan >= ORPHAN_SCAN_EVERY:
                        self._recover()
                    worked = self._deliver_batch()
                except Unproven as exc:  # while recovering an orphan: an outage like any other
                    self._note_outage(exc)
                    self._pause(self._next_delay())
                    continue
                except Exception as exc:  # a bug or a misconfiguration must not end delivery
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    if time.monotonic() - self._last_failure_log >= 30:
                        self._last_failure_log = time.monotonic()
                        log.exception("sealog: the writer hit an unexpected error; retrying")
                    self._wake.wait(1.0)
                    continue
                if not worked:
                    if self._stopping:
                        break
                    self.idle = True
                    self._wake.wait(LINGER)
                    self._wake.clear()
                    self.idle = False
                if time.monotonic() - last_sync >= FSYNC_EVERY:
                    self.spool.sync()
                    last_sync = time.monotonic()
        finally:
            self.spool.sync()
            with self._done:
                self._done.notify_all()

    def _abandoned(self) -> bool:
        return time.monotonic() >= self._abandon_at

    def _deliver_batch(self) -> bool:
        """Deliver the next batch of this process's own events; False when there was none.

        The batch stays in flight until stored. When the store refused all of it without
        proof that the events are at fault (``Unproven``), the next attempt takes the lines
        appended since as well: a stored sibling is what proves a refused event bad.
        """
        room = MAX_BATCH - sum(len(lines) for _, lines in self._inflight)
        if room > 0 and (not self._inflight or self._unproven):
            self._inflight += self.spool.read_batch(room)
        if not self._inflight:
            return False
        try:
            delivered = self._deliver([line for _, lines in self._inflight for line in lines])
        except Unproven as exc:
            self._unproven = True
            self._note_outage(exc)
            self._pause(self._next_delay())
            return True
        if not delivered:
            return True  # abandoned at shutdown: the lines stay in the spool for the next process
        self._unproven = False
        done: dict[Segment, tuple[int, int]] = {}
        for segment, lines in self._inflight:  # each line cost its length plus the newline
            count, size = done.get(segment, (0, 0))
            done[segment] = (count + len(lines), size + sum(map(len, lines)) + len(lines))
        self._inflight = []
        self.spool.ack(done)
        with self._done:
            self.delivered += sum(count for count, _ in done.values())
            self._done.notify_all()
        return True

    def _recover(self) -> None:
        """Deliver what dead processes left in the shared spool directory."""
        self._last_scan = time.monotonic()
        try:
            self._recover_orphans()
        finally:
            if not self._recovered_once:
                with self._done:
                    self._recovered_once = True
                    self._done.notify_all()

    def _recover_orphans(self) -> None:
        """Deliver each orphan of our target; one that cannot be read does not stop the others."""
        from ._spool import UnreadableSegment

        for orphan in self.spool.claim_orphans():
            try:
                delivered = True
                for path in list(orphan.segments):
                    delivered = all(self._deliver(batch) for batch in self._batches(path))
                    if not delivered:
                        break
                    self.spool.release_segment(orphan, path)
            except UnreadableSegment:  # reported by _batches; let go of the lock: a later scan retries
                self.spool.release_lock(orphan)
                continue
            except BaseException:
                self.spool.release_lock(orphan)  # let the next scan (ours or another's) retry
                raise
            if not delivered:  # abandoned at shutdown
                self.spool.release_lock(orphan)
                break
            self.spool.release(orphan)
            self.stats.recovered += 1
            log.info("sealog: delivered the spool left by %s", orphan.owner)

    def _batches(self, path: Path) -> Iterator[list[bytes]]:
        """An orphan segment's events in batches; a read error is reported to the spool, then raised."""
        from ._spool import UnreadableSegment

        batch: list[bytes] = []
        try:
            for line in self.spool.read(path):
                batch.append(line)
                if len(batch) >= MAX_BATCH:
                    yield batch
                    batch = []
        except OSError as exc:
            reason = f"reading it failed: {exc.strerror or exc}"
            self.spool.report_problem(path, reason)
            raise UnreadableSegment(reason) from exc
        if batch:
            yield batch

    def _deliver(self, lines: list[bytes]) -> bool:
        """Write, isolating what the store refuses; False only when abandoned at shutdown.

        Raises Unproven when the store refused everything (an outage in all but name).
        """
        if not lines:
            return True
        return isolate(lines, self._write_retrying, self._quarantine)

    def _write_retrying(self, lines: Sequence[bytes]) -> bool:
        return self._retry(lambda: self._write(lines))

    def _write(self, lines: Sequence[bytes]) -> None:
        started = time.perf_counter()
        added, unreadable = self.sink.write_lines(list(lines))
        self.stats.last_write_ms = (time.perf_counter() - started) * 1000
        for index, reason in unreadable:
            self._quarantine(lines[index], reason)
        self.stats.stored += added
        self.stats.duplicates += len(lines) - len(unreadable) - added
        self._delay = BACKOFF_START
        if self.outage is not None:
            log.warning("sealog: the store accepts writes again; delivering the backlog")
            self._set_outage(None)

    def _retry(self, operation: Callable[[], object]) -> bool:
        """Run ``operation`` until it stops failing; False when abandoned at shutdown.

        StoreUnavailable is an outage. So is any other error except EventRejected: an
        unclassified failure is never blamed on the events, they wait in the spool.
        """
        while True:
            try:
                operation()
                return True
            except EventRejected:
                raise
            except Exception as exc:  # StoreUnavailable, or unclassified: both are outages
                self._note_outage(exc)
                if self._abandoned():
                    return False
                self._pause(min(self._next_delay(), self._abandon_at - time.monotonic()))

    def _next_delay(self) -> float:
        """Capped exponential backoff with full jitter."""
        delay, self._delay = self._delay, min(self._delay * 2, BACKOFF_CAP)
        return _jitter.uniform(0, delay)

    def _note_outage(self, exc: Exception) -> None:
        cause = str(exc) if isinstance(exc, StoreUnavailable) else f"{type(exc).__name__}: {exc}"
        self.stats.retries += 1
        self.stats.errors += 1
        self.stats.last_error = cause
        now = time.monotonic()
        if cause != self.outage or now - self._last_failure_log >= 30:  # once per cause, not per retry
            self._last_failure_log = now
            if isinstance(exc, StoreUnavailable):
                log.warning("sealog: store unavailable, events wait in the spool: %s", cause)
            else:
                log.warning("sealog: unexpected store error, treated as an outage; events wait in the "
                            "spool: %s", cause, exc_info=exc)
        if cause != self.outage:
            self._set_outage(cause)

    def _set_outage(self, cause: str | None) -> None:
        """Keep the cause where ``sealog stats`` (another process) can show it."""
        self.outage = cause
        self.spool.write_health({"pid": os.getpid(), "outage": cause, "since": timefmt.now()})

    def _pause(self, seconds: float) -> None:
        """Back off, still fsyncing the spool every FSYNC_EVERY: an outage is when it matters."""
        deadline = time.monotonic() + seconds
        while True:
            self.spool.sync()
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, FSYNC_EVERY)):
                self._wake.clear()
                return

    def _quarantine(self, line: bytes, reason: str) -> None:
        self.stats.quarantined += 1
        self.stats.errors += 1
        self.stats.last_error = reason
        log.error("sealog: quarantined an event the store rejected: %s", reason)
        self.spool.quarantine(line, reason)


_live: weakref.WeakSet[Writer] = weakref.WeakSet()


def _restart_after_fork() -> None:
    """A forked child gets a fresh writer thread and state (the spool, whose fork hook runs
    first, already gave it an owner of its own); the parent keeps delivering its own queue."""
    for writer in list(_live):
        writer.__init__(writer.spool, writer.sink, migrate=writer._migrate)  # type: ignore[misc]


os.register_at_fork(after_in_child=_restart_after_fork)
