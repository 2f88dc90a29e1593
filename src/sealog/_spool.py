"""The durable local queue between emit and the store.

Each process (each ``Spool``) appends newline-terminated events to segment files of
its own, ``<owner>.<n>.seg``, and holds an exclusive ``flock`` on ``<owner>.lock`` for
as long as it lives. An event is in the page cache once ``append`` returns, so it
survives the process being killed; a background fsync bounds what a power cut takes.
A segment is deleted when it is full and every event in it has been acknowledged.

A lock that can be taken belongs to a dead owner: ``claim_orphans`` takes it, hands
the dead owner's events to the caller for delivery, and removes them afterwards.
Two live processes never claim the same owner, because only one can hold the lock.

Several applications may share one directory, each delivering to its own store or
broker. Each segment therefore starts with a header line naming its target (the
store URL, or broker URL and exchange, never a password), and a process claims only
the orphans of its own target: another store's events must never land in ours.
An orphan that cannot be read is recorded in ``orphan_problems`` and logged, never
skipped silently, and never stops the recovery of the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NoReturn
from urllib.parse import unquote_plus, urlsplit

from ._errors import SpoolFull

log = logging.getLogger("sealog")

FullPolicy = Literal["block", "raise"]
DEFAULT_MAX_BYTES: Final = 1 << 30
DEFAULT_SEGMENT_BYTES: Final = 16 << 20
QUARANTINE: Final = "quarantine.jsonl"
HEALTH: Final = ".health.json"
"""``<owner>.health.json``: a writer's outage cause, while it has one."""
READ_CHUNK: Final = 4 << 20
SPOOL_FORMAT: Final = 1
HEADER_PREFIX: Final = b'{"sealog_spool":'
"""How a segment's first line starts; no event line does (events start with event_id)."""
MAX_HEADER: Final = 64 << 10
_SECRET_PARAMS: Final = frozenset({"password", "passwd", "sslpassword"})


def spool_target(url: str, exchange: str | None = None) -> str:
    """The target recorded in each segment: ``url`` without its password, plus ``#exchange``.

    Only the identity of the destination is kept: user, host, port, path and options.
    A relative SQLite path is made absolute, because two processes in different working
    directories with the same ``sqlite:///audit.db`` write to different files.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at:
        user = user.partition(":")[0]
        netloc = f"{user}@{host}" if user else host
    path = parts.path
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        file = url.removeprefix("sqlite:///").split("?")[0].split("#")[0]
        if file and file != ":memory:":
            path = "/" + str(Path(file).resolve())
    query = "&".join(pair for pair in parts.query.split("&")
                     if pair and unquote_plus(pair.partition("=")[0]).lower() not in _SECRET_PARAMS)
    fragment = parts.fragment if exchange is None else exchange
    slashes = "//" if url[len(scheme) + 1:].startswith("//") else ""
    return (f"{scheme}:{slashes}{netloc}{path}" + (f"?{query}" if query else "")
            + (f"#{fragment}" if fragment else ""))


def segment_header(target: str) -> bytes:
    """A segment's first line, newline included."""
    return json.dumps({"sealog_spool": SPOOL_FORMAT, "target": target}, separators=(",", ":")).encode() + b"\n"


class UnreadableSegment(Exception):
    """A segment whose target cannot be known, or that cannot be opened at all."""


def segment_target(path: Path) -> str | None:
    """The target in a segment's header; None for a segment without one.

    None covers segments written before headers existed, and a segment whose owner
    died before the header was written, which holds no events. Raises
    UnreadableSegment (with the reason) when the file cannot be opened or its header
    is not one we understand: such a segment is never claimed on a guess.
    """
    try:
        with path.open("rb") as handle:
            first = handle.readline(MAX_HEADER)
    except OSError as exc:
        raise UnreadableSegment(f"cannot open it: {exc.strerror or exc}") from exc
    if not first.startswith(HEADER_PREFIX):
        return None
    if not first.endswith(b"\n"):  # cut by a kill before any event was written
        if len(first) < MAX_HEADER:
            return None
        raise UnreadableSegment("its spool header is corrupt")
    try:
        header = json.loads(first)
    except ValueError:
        raise UnreadableSegment("its spool header is corrupt") from None
    if not isinstance(header, dict) or header.get("sealog_spool") != SPOOL_FORMAT \
            or not isinstance(header.get("target"), str):
        raise UnreadableSegment(f"its spool header is not format {SPOOL_FORMAT}: {first[:200]!r}")
    target: str = header["target"]
    return target


def spool_problems(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Files in a spool directory that no process could deliver, path -> reason; read-only.

    For ``sealog stats``, which must not create an owner of its own: it cannot tell dead
    owners from live ones, but an unreadable file is a problem either way.
    """
    problems: dict[str, str] = {}
    folder = Path(directory)
    try:
        paths = sorted(folder.iterdir())
    except FileNotFoundError:
        return problems
    except OSError as exc:
        return {str(folder): f"cannot list the spool directory: {exc.strerror or exc}"}
    for path in paths:
        if path.suffix == ".seg":
            try:
                segment_target(path)
            except UnreadableSegment as exc:
                problems[str(path)] = str(exc)
        elif path.suffix == ".lock":
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems[str(path)] = f"cannot open its lock file: {exc.strerror or exc}"
    return problems


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
    """The segments to deliver; unreadable ones are left out (and in ``orphan_problems``)."""


class Spool:
    """Append-only segments in ``directory``, shared safely by several processes."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        target: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        full_policy: FullPolicy = "block",
        full_timeout: float = 5.0,
    ) -> None:
        if full_policy not in ("block", "raise"):
            raise ValueError(f"full_policy must be 'block' or 'raise', not {full_policy!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.target = target
        """From ``spool_target``. None is the legacy mode: no headers, claims every orphan."""
        self._header = b"" if target is None else segment_header(target)
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
        self._problems: dict[str, str] = {}
        self._confirmed: set[str] = set()
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
        try:
            if self._header and os.write(fd, self._header) != len(self._header):
                raise OSError("short write of the segment header")
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise SpoolFull(f"cannot write to the spool {self.directory}: {exc}") from exc
        # The header is not an event: not read back, not part of the backlog's bytes.
        segment = Segment(path, fd, size=len(self._header), read=len(self._header))
        self._segments.append(segment)
        return segment

    # -- the emit path ---------------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Write one event durably; at the size cap, wait (``block``) or raise SpoolFull.

        SpoolFull is also what a full or failing local disk raises: the one storage
        failure emit reports, because the event could not be accepted at all.
        """
        data = line + b"\n"
        size = len(data)
        with self._lock:  # _write, inlined for emit's one line: the checks that pass, one write
            segment = self._active
            if self._closed or self.bytes + size > self.max_bytes or segment.size >= self.segment_bytes:
                segment = self._ready(size)
            try:
                written = os.write(segment.fd, data)
            except OSError as exc:  # disk full, I/O error
                self._torn(segment, str(exc))
            if written != size:
                self._torn(segment, "a short write")
            segment.size += size
            segment.pending += 1
            self.bytes += size
            self.appended += 1
            self._dirty = True

    def append_all(self, lines: list[bytes]) -> None:
        """Write a batch as one record: every line durable, or none of them (SpoolFull).

        HTTP ingest promises all or nothing. Room for the whole batch is waited for first,
        then one ``write`` adds it; a failed or short write is cut off again (the file is
        truncated back), so neither this process nor a later claim reads half a batch.
        """
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            if len(data) > self.max_bytes:
                raise SpoolFull(f"a batch of {len(data)} bytes can never fit the spool's cap of {self.max_bytes}")
            self._write(data, len(lines))

    def _write(self, data: bytes, count: int) -> None:
        """Append ``count`` whole lines under the lock; a failed or short write is cut off again.

        SpoolFull is also what a full or failing local disk raises: the events could not be
        made durable, so they are refused rather than half kept.
        """
        segment = self._ready(len(data))
        try:
            written = os.write(segment.fd, data)
        except OSError as exc:  # disk full, I/O error
            self._torn(segment, str(exc))
        if written != len(data):
            self._torn(segment, "a short write")
        segment.size += len(data)
        segment.pending += count
        self.bytes += len(data)
        self.appended += count
        self._dirty = True

    def _ready(self, size: int) -> Segment:
        """The segment to append ``size`` bytes to, once there is room (under the lock)."""
        if self._closed:
            raise RuntimeError("this spool is closed")
        if self.bytes + size > self.max_bytes:
            self._make_room(size)
        segment = self._active
        if segment.size >= self.segment_bytes:
            segment.sealed = True
            segment = self._active = self._new_segment()
        return segment

    def _torn(self, segment: Segment, failure: str) -> NoReturn:
        """A torn line must not be read: truncate it, start a new segment, refuse the event."""
        with contextlib.suppress(OSError):
            os.ftruncate(segment.fd, segment.size)
        segment.sealed = True
        self._active = self._new_segment()
        raise SpoolFull(f"cannot write to the spool {self.directory}: {failure}")

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

    def write_health(self, record: dict[str, object]) -> None:
        """This owner's writer state, replaced atomically; read by ``sealog stats``."""
        path = self.directory / f"{self.owner}{HEALTH}"
        temporary = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # a health record must never stop delivery
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(record).encode())
            finally:
                os.close(fd)
            os.replace(temporary, path)

    @property
    def orphan_problems(self) -> dict[str, str]:
        """Orphan files that could not be delivered, path -> reason: the ones still unresolved."""
        with self._lock:
            return dict(self._problems)

    def report_problem(self, path: Path | str, reason: str) -> None:
        """Record an orphan file that cannot be delivered; logged once while it stays unresolved."""
        key = str(path)
        with self._lock:
            self._confirmed.add(key)
            if self._problems.get(key) == reason:
                return
            self._problems[key] = reason
        log.warning("sealog: cannot recover the orphaned spool file %s: %s; it stays in place and "
                    "is retried at every scan", key, reason)

    def claim_orphans(self) -> Iterator[Orphan]:
        """Lock, one at a time, each dead owner's segments meant for our target.

        Each is released (delivered) or release_lock'ed (given up) by the caller. What
        cannot be read is reported and left in place; the scan always goes on. After a
        complete scan, problems not seen again (fixed, or delivered by another process)
        are dropped from ``orphan_problems``.
        """
        with self._lock:
            self._confirmed = set()
        try:
            names = sorted(p.name for p in self.directory.iterdir())
        except OSError as exc:
            self.report_problem(self.directory, f"cannot list the spool directory: {exc.strerror or exc}")
            return
        owners = sorted({name.split(".")[0] for name in names if name.endswith(".seg")} - {self.owner})
        for owner in owners:
            # A first look without the lock: another target's orphans are not even locked,
            # so their own process never finds them busy.
            if self._verdict(self._segments_of(owner), report=False) is None:
                continue
            lock_path = self.directory / f"{owner}.lock"
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                self.report_problem(lock_path, f"cannot open its lock file: {exc.strerror or exc}")
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its owner is alive
                continue
            except OSError as exc:
                os.close(fd)
                self.report_problem(lock_path, f"cannot lock it: {exc.strerror or exc}")
                continue
            # Dead for sure now, and it can no longer add segments: look again, reporting.
            segments = self._segments_of(owner)
            deliverable = self._verdict(segments, report=True)
            if deliverable is None or (not deliverable and len(segments) > 0):
                os.close(fd)  # not ours, or nothing we can read: left for later scans
                continue
            yield Orphan(owner, fd, deliverable)
        with self._lock:  # a complete scan: what was not reported again is resolved
            self._problems = {k: v for k, v in self._problems.items() if k in self._confirmed}

    def _segments_of(self, owner: str) -> list[Path]:
        return sorted(self.directory.glob(f"{owner}.*.seg"))

    def _verdict(self, segments: list[Path], *, report: bool) -> list[Path] | None:
        """The segments we may deliver, or None when they belong to another target."""
        readable = []
        for path in segments:
            try:
                target = segment_target(path)
            except UnreadableSegment as exc:
                if report:
                    self.report_problem(path, str(exc))
                continue
            # A segment without a header was written by an older sealog (or holds no
            # event yet): it has no target to compare, so it is taken as ours, which is
            # what those versions did. Legacy spools (target None) claim everything.
            if target is not None and self.target is not None and target != self.target:
                return None  # one owner, one target: the whole owner is someone else's
            readable.append(path)
        return readable

    def release_segment(self, orphan: Orphan, path: Path) -> None:
        """One segment of an orphan is delivered: removed now, so a later failure in the
        same orphan does not send it again."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with self._lock:
            self._problems.pop(str(path), None)
        with contextlib.suppress(ValueError):
            orphan.segments.remove(path)

    def release(self, orphan: Orphan) -> None:
        """The orphan was delivered: remove its files, and its problems if any."""
        with self._lock:
            for path in orphan.segments:
                self._problems.pop(str(path), None)
            self._problems.pop(str(self.directory / f"{orphan.owner}.lock"), None)
        for path in orphan.segments:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if not self._segments_of(orphan.owner):  # an unreadable segment keeps its lock file
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{orphan.owner}.lock").unlink()
        os.close(orphan.lock_fd)

    def release_lock(self, orphan: Orphan) -> None:
        """Give up a claim without delivering it (shutdown): the next scan retries."""
        os.close(orphan.lock_fd)

    @staticmethod
    def read(path: Path) -> Iterator[bytes]:
        """The events of a segment; a torn last line (a write cut by a kill) is skipped."""
        with path.open("rb") as handle:
            for number, raw in enumerate(handle):
                if number == 0 and raw.startswith(HEADER_PREFIX):
                    continue  # the header, checked by claim_orphans
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
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{self.owner}{HEALTH}").unlink()
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
