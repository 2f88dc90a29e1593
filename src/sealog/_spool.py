"""The durable local queue between emit and the store.

Each process (each ``Spool``) appends newline-terminated events to segment files of
its own, ``<owner>.<n>.seg``, and holds an exclusive ``flock`` on ``<owner>.lock`` for
as long as it lives. An event is in the page cache once ``append`` returns, so it
survives the process being killed; a background fsync bounds what a power cut takes.
A segment is deleted when it is full and every event in it has been acknowledged.

A lock that can be taken belongs to a dead owner: ``claim_orphans`` takes it, hands
the dead owner's events to the caller for delivery, and removes them afterwards.
Two live processes never claim the same owner, because only one can hold the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ._errors import SpoolFull

log = logging.getLogger("sealog")

FullPolicy = Literal["block", "raise"]
DEFAULT_MAX_BYTES: Final = 1 << 30
DEFAULT_SEGMENT_BYTES: Final = 16 << 20
QUARANTINE: Final = "quarantine.jsonl"
READ_CHUNK: Final = 4 << 20


@dataclass(eq=False)
class Segment:
    """One file of this process's spool: appended by emit, read back by the writer."""

    path: Path
    fd: int
    size: int = 0
    read: int = 0
    """Bytes the writer has read back; everything before it is in flight or delivered."""
    pending: int = 0
    sealed: bool = False


@dataclass(eq=False)
class Orphan:
    """A dead owner's leftovers, locked by us until ``release``."""

    owner: str
    lock_fd: int
    segments: list[Path] = field(default_factory=list)


class Spool:
    """Append-only segments in ``directory``, shared safely by several processes."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        full_policy: FullPolicy = "block",
        full_timeout: float = 5.0,
    ) -> None:
        if full_policy not in ("block", "raise"):
            raise ValueError(f"full_policy must be 'block' or 'raise', not {full_policy!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.full_policy = full_policy
        self.full_timeout = full_timeout
        self.appended = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._dirty = False
        self._closed = False
        self._start_owner()
        _live.add(self)

    def _start_owner(self) -> None:
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        lock_path = self.directory / f"{self.owner}.lock"
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._number = 0
        self._segments: list[Segment] = []
        self._active = self._new_segment()

    def _new_segment(self) -> Segment:
        self._number += 1
        path = self.directory / f"{self.owner}.{self._number:08d}.seg"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        segment = Segment(path, fd)
        self._segments.append(segment)
        return segment

    # -- the emit path ---------------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Write one event durably; at the size cap, wait (``block``) or raise SpoolFull.

        SpoolFull is also what a full or failing local disk raises: the one storage
        failure emit reports, because the event could not be accepted at all.
        """
        data = line + b"\n"
        with self._lock:
            if self._closed:
                raise RuntimeError("this spool is closed")
            if self.bytes + len(data) > self.max_bytes:
                self._make_room(len(data))
            segment = self._active
            if segment.size >= self.segment_bytes:
                segment.sealed = True
                segment = self._active = self._new_segment()
            try:
                written = os.write(segment.fd, data)
            except OSError as exc:  # disk full, I/O error: the event cannot be made durable
                raise SpoolFull(f"cannot write to the spool {self.directory}: {exc}") from exc
            if written != len(data):  # a short write leaves a torn line: start a fresh segment
                segment.sealed = True
                self._active = self._new_segment()
                raise SpoolFull(f"short write to the spool {self.directory}")
            segment.size += len(data)
            segment.pending += 1
            self.bytes += len(data)
            self.appended += 1
            self._dirty = True

    def _make_room(self, size: int) -> None:
        if self.full_policy == "block":
            deadline = time.monotonic() + self.full_timeout
            while self.bytes + size > self.max_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._space.wait(left)
            else:
                return
        raise SpoolFull(
            f"spool {self.directory} holds {self.bytes} bytes, its cap is {self.max_bytes}: "
            "the store has been unreachable too long"
        )

    # -- the writer's side -----------------------------------------------------------

    def read_batch(self, limit: int) -> list[tuple[Segment, list[bytes]]]:
        """Up to ``limit`` appended lines not yet read, oldest first.

        The writer reads events back from the files rather than holding them in memory,
        so memory stays flat however long the store is away. ``size`` only moves after a
        whole line is written, so reading up to it never yields a torn line.
        """
        with self._lock:
            todo = [(s, s.size) for s in self._segments if s.read < s.size]
        batch: list[tuple[Segment, list[bytes]]] = []
        for segment, size in todo:
            if limit <= 0:
                break
            data = os.pread(segment.fd, min(size - segment.read, READ_CHUNK), segment.read)
            lines = data.split(b"\n")
            tail = lines.pop()  # empty when the chunk ended on a line boundary
            if len(lines) > limit:
                tail = b"\n".join(lines[limit:]) + b"\n" + tail
                lines = lines[:limit]
            segment.read += len(data) - len(tail)
            limit -= len(lines)
            if lines:
                batch.append((segment, lines))
        return batch

    def unread(self) -> bool:
        with self._lock:
            return any(s.read < s.size for s in self._segments)

    def ack(self, delivered: dict[Segment, tuple[int, int]]) -> None:
        """Mark (events, bytes) per segment delivered; full, finished segments are removed.

        ``bytes`` counts what is still undelivered, so the cap is about the backlog and
        frees up as soon as the store catches up, not when a file is deleted.
        """
        with self._lock:
            for segment, (count, size) in delivered.items():
                segment.pending -= count
                self.bytes -= size
            for segment in [s for s in self._segments if s.sealed and s.pending <= 0]:
                self._segments.remove(segment)
                os.close(segment.fd)
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
            self._space.notify_all()

    def sync(self) -> None:
        """fsync what was appended since the last call; the writer calls it periodically."""
        with self._lock:
            if not self._dirty or self._closed:
                return
            self._dirty = False
            fds = [s.fd for s in self._segments]
        for fd in fds:
            with contextlib.suppress(OSError):
                os.fsync(fd)

    def quarantine(self, line: bytes, reason: str) -> None:
        """Keep an event no store accepts, so nothing is silently lost."""
        record = b'{"reason": %s, "line": %s}\n' % (
            _json_str(reason), _json_str(line.decode("utf-8", "replace"))
        )
        fd = os.open(self.directory / QUARANTINE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)

    def claim_orphans(self) -> Iterator[Orphan]:
        """Lock, one at a time, each dead owner's segments; release each when delivered."""
        owners = sorted({p.name.split(".")[0] for p in self.directory.glob("*.seg")})
        for owner in owners:
            if owner == self.owner:
                continue
            try:
                fd = os.open(self.directory / f"{owner}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its owner is alive
                continue
            segments = sorted(self.directory.glob(f"{owner}.*.seg"))
            yield Orphan(owner, fd, segments)

    def release(self, orphan: Orphan) -> None:
        for path in orphan.segments:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{orphan.owner}.lock").unlink()
        os.close(orphan.lock_fd)

    def release_lock(self, orphan: Orphan) -> None:
        """Give up a claim without delivering it (shutdown): the next scan retries."""
        os.close(orphan.lock_fd)

    @staticmethod
    def read(path: Path) -> Iterator[bytes]:
        """The complete lines of a segment; a torn last line (a write cut by a kill) is skipped."""
        with path.open("rb") as handle:
            for raw in handle:
                if raw.endswith(b"\n"):
                    yield raw[:-1]
                elif raw.strip():
                    log.warning("sealog: skipped a torn line at the end of %s", path)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock; undelivered segments stay for the next process to claim."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._space.notify_all()
            segments, self._segments = self._segments, []
        for segment in segments:
            with contextlib.suppress(OSError):
                os.fsync(segment.fd)
            os.close(segment.fd)
            if segment.pending <= 0:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
        if not any(s.pending > 0 for s in segments):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{self.owner}.lock").unlink()
        os.close(self._lock_fd)
        _live.discard(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's segments and lock stay the parent's."""
        for segment in self._segments:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self.appended = self.bytes = 0
        self._dirty = False
        if not self._closed:
            self._start_owner()


def _json_str(text: str) -> bytes:
    import json

    return json.dumps(text).encode()


_live: weakref.WeakSet[Spool] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for spool in list(_live):
        spool._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
