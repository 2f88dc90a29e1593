"""Where the writer delivers spool lines: in this process, or in a writer process.

Sealing and inserting cost ~20 us of Python per event. In a thread they compete with
the application for the GIL, so a busy emitter would pay for them; a ``ProcessSink``
moves that work to a child process (the second core), and the writer thread left in
the application only moves bytes. A ``LocalSink`` runs the same code in-process: for
in-memory stores, and as the fallback when a child process cannot be started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple, Protocol

import msgspec

from ._errors import EventRejected, StoreUnavailable
from ._event import Event, decode

log = logging.getLogger("sealog")
_decode_batch = msgspec.json.Decoder(list[Event]).decode


class Sink(Protocol):
    """What the writer's backends implement: a store, or the broker publisher."""

    def migrate(self) -> None: ...

    def write(self, events: Sequence[Event]) -> int: ...

    def close(self) -> None: ...


class Written(NamedTuple):
    added: int
    """Rows (or messages) that were new; the rest of the good lines were duplicates."""
    rejected: list[tuple[int, str]]
    """(index, reason) of lines that are not events at all; they go to quarantine."""




class LineSink(Protocol):
    def migrate(self) -> None: ...

    def write_lines(self, lines: list[bytes]) -> Written: ...

    def close(self) -> None: ...


class LocalSink:
    """Decodes spool lines and hands the events to a sink in this process."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def migrate(self) -> None:
        self.sink.migrate()

    def write_lines(self, lines: list[bytes]) -> Written:
        try:  # one decode for the whole batch; line by line only to find a bad one
            events = _decode_batch(b"[" + b",".join(lines) + b"]")
            return Written(self.sink.write(events) if events else 0, [])
        except msgspec.DecodeError:
            pass
        events, rejected = [], []
        for index, line in enumerate(lines):
            try:
                events.append(decode(line))
            except msgspec.DecodeError as exc:
                rejected.append((index, f"unreadable spool line: {exc}"))
        return Written(self.sink.write(events) if events else 0, rejected)

    def close(self) -> None:
        self.sink.close()


class ProcessSink:
    """Runs a LocalSink in a child process (``python -m sealog._worker``), over pipes.

    Frames to the child: one command byte, a 4-byte length, the payload. One reply line
    back: ``OK <json>``, ``DOWN <reason>`` (an outage: retried) or ``BAD <reason>``.
    The child exits when its stdin closes, so it never outlives the application.
    """

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()

    def _spawn(self) -> subprocess.Popen[bytes]:
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
        try:
            return subprocess.Popen([sys.executable, "-m", "sealog._worker", *self.args],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                    close_fds=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot start the writer process: {exc}") from exc

    def _call(self, command: bytes, payload: bytes = b"") -> str:
        if self._pid != os.getpid():  # forked: the parent's child process is not ours
            self._proc, self._pid = None, os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._spawn()
        stdin, stdout = self._pipes(self._proc)
        try:
            stdin.write(command + len(payload).to_bytes(4, "big") + payload)
            stdin.flush()
            reply = stdout.readline().decode()
        except (OSError, ValueError) as exc:
            self._stop(kill=True)
            raise StoreUnavailable(f"the writer process failed: {exc}") from exc
        if not reply:
            self._stop(kill=True)
            raise StoreUnavailable("the writer process exited; starting a new one")
        kind, _, rest = reply.rstrip("\n").partition(" ")
        if kind == "DOWN":
            raise StoreUnavailable(rest)
        if kind == "BAD":
            raise EventRejected(rest)
        return rest

    @staticmethod
    def _pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        return proc.stdin, proc.stdout

    def migrate(self) -> None:
        self._call(b"M")

    def write_lines(self, lines: list[bytes]) -> Written:
        reply = json.loads(self._call(b"W", b"\n".join(lines)))
        return Written(reply["added"], [(i, reason) for i, reason in reply["rejected"]])

    def close(self) -> None:
        self._stop(kill=False)

    def _stop(self, *, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None or self._pid != os.getpid():
            return
        with contextlib.suppress(OSError, ValueError):
            if not kill:
                stdin, _ = self._pipes(proc)
                stdin.write(b"Q\x00\x00\x00\x00")
                stdin.close()
        try:
            proc.wait(timeout=0.2 if kill else 5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
