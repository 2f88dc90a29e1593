"""Background delivery: batches from the spool to the sink, retried until they land.

The writer owns its thread; the sink (a store or the broker publisher) only writes.
It never dies from a bad row: a batch that fails for a reason other than an outage
is split until the bad event stands alone, which goes to the quarantine file.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._errors import StoreUnavailable
from ._sinks import LineSink, Rejected, Sink

__all__ = ["Sink", "Stats", "Writer"]  # Sink moved to sinks.py; still importable here
from ._spool import Spool

log = logging.getLogger("sealog")

MAX_BATCH: Final = 5000
BACKOFF_START: Final = 0.05
BACKOFF_CAP: Final = 5.0
ORPHAN_SCAN_EVERY: Final = 5.0
FSYNC_EVERY: Final = 0.2
LINGER: Final = 0.05
"""An idle writer wakes this often; sooner only for a full batch's worth, flush or close."""
WAKE_AT: Final = 500


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
        self._thread: threading.Thread | None = None
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
        """Deliver the next batch of this process's own events; False when there was none."""
        batch = self.spool.read_batch(MAX_BATCH)
        if not batch:
            return False
        if not self._deliver([line for _, lines in batch for line in lines]):
            return True  # abandoned at shutdown: the lines stay in the spool for the next process
        # Each line cost its length plus the newline in the spool's byte count.
        self.spool.ack({seg: (len(lines), sum(map(len, lines)) + len(lines)) for seg, lines in batch})
        with self._done:
            self.delivered += sum(len(lines) for _, lines in batch)
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
        for orphan in self.spool.claim_orphans():
            try:
                delivered = all(self._deliver(batch)
                                for path in orphan.segments for batch in self._batches(path))
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
        batch: list[bytes] = []
        for line in self.spool.read(path):
            batch.append(line)
            if len(batch) >= MAX_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _deliver(self, lines: list[bytes]) -> bool:
        """Write, retrying outages with backoff; False only when abandoned at shutdown."""
        if not lines:
            return True
        try:
            return self._retry(lambda: self._write(lines))
        except Exception as exc:  # Rejected, or any non-outage error: a bad event is in here
            if len(lines) == 1:
                reason = str(exc) if isinstance(exc, Rejected) else f"{type(exc).__name__}: {exc}"
                self._quarantine(lines[0], reason)
                return True
            middle = len(lines) // 2
            return self._deliver(lines[:middle]) and self._deliver(lines[middle:])

    def _write(self, lines: list[bytes]) -> None:
        started = time.perf_counter()
        added, rejected = self.sink.write_lines(lines)
        self.stats.last_write_ms = (time.perf_counter() - started) * 1000
        for index, reason in rejected:
            self._quarantine(lines[index], reason)
        self.stats.stored += added
        self.stats.duplicates += len(lines) - len(rejected) - added

    def _retry(self, operation: Any) -> bool:
        """Run ``operation`` until it stops raising StoreUnavailable; capped jittered backoff."""
        delay = BACKOFF_START
        while True:
            try:
                operation()
                return True
            except StoreUnavailable as exc:
                self.stats.retries += 1
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                self._log_failure(exc)
                if self._abandoned():
                    return False
                self._pause(min(random.uniform(0, delay), self._abandon_at - time.monotonic()))
                delay = min(delay * 2, BACKOFF_CAP)

    def _pause(self, seconds: float) -> None:
        """Back off, still fsyncing the spool every FSYNC_EVERY: an outage is when it matters."""
        deadline = time.monotonic() + seconds
        while True:
            self.spool.sync()
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, FSYNC_EVERY)):
                self._wake.clear()
                return

    def _log_failure(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= 30:  # one line per outage, not one per retry
            self._last_failure_log = now
            log.warning("sealog: store unavailable, events wait in the spool: %s", exc)

    def _quarantine(self, line: bytes, reason: str) -> None:
        self.stats.quarantined += 1
        self.stats.errors += 1
        self.stats.last_error = reason
        log.error("sealog: quarantined an event the store rejected: %s", reason)
        self.spool.quarantine(line, reason)
