"""``sealog serve --workers N``: one listening socket, N worker processes, a small supervisor.

uvicorn's own ``workers=`` re-imports the app from an import string and pickles its Config into
spawned children, which the header-deadline protocol (a class made at run time) does not survive.
So the supervisor binds the socket once and starts N ``python -m sealog.server.workers`` processes
that inherit it: one shared accept queue, so connections waiting for a worker that dies stay queued
for the others (with SO_REUSEPORT each worker would have its own queue, reset when it dies).

Each worker has its own AuditLog: its own spool owner and writer process, in the one spool
directory. A 202 goes out only once the events are in the worker's spool, so a worker killed even
by SIGKILL loses nothing acknowledged: its spool lock is free again, and a live worker (every 5 s)
or its replacement (at start) claims and delivers the spool; inserts are idempotent, so the
batch the dead worker's writer may have been committing is never stored twice.

The supervisor restarts a worker that dies (with a growing pause if it dies again soon), turns
SIGTERM and SIGINT into SIGTERM for each worker (uvicorn's graceful stop, then ``AuditLog.close``
drains the spool), and exits 0 once all are gone. A worker whose supervisor died stops the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

from .._errors import SealogError
from .._log import AuditLog
from .guard import Limits, server_config
from .keys import KeyStore

OPTIONS_ENV: Final = "SEALOG_SERVE_OPTIONS"
"""How a worker gets its settings: the environment, so a store password is not on a command line."""
STOP_SECONDS: Final = 60.0
"""How long a worker may take to finish its requests and drain its spool after SIGTERM."""
STEADY_SECONDS: Final = 10.0
"""A worker that served this long before dying is restarted at once; sooner, after a growing pause."""
MAX_PAUSE: Final = 10.0
BACKLOG: Final = 2048


@dataclass(frozen=True)
class ServeOptions:
    """What every worker serves with; ``sealog serve``'s options."""

    url: str
    host: str = "127.0.0.1"
    port: int = 8080
    limits: Limits = field(default_factory=Limits)
    secure_cookies: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    verifier_key: str | None = None
    checkpoint_every: float = 60.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        data = json.loads(text)
        data["limits"] = Limits(**data["limits"])
        return cls(**data)


def serve(options: ServeOptions, log: AuditLog, keys: KeyStore, sockets: list[socket.socket] | None = None,
          watch: Callable[[Any], None] | None = None, stopping: threading.Event | None = None) -> None:
    """Run the service around ``log`` until SIGTERM/SIGINT; ``watch(server)`` runs in a daemon thread.

    ``stopping``: set when a stop signal came while the process was still starting.
    """
    import uvicorn

    from .app import create_app

    app = create_app(log, keys, limits=options.limits, secure_cookies=options.secure_cookies,
                     verifier_key=options.verifier_key)
    server = uvicorn.Server(server_config(app, options.host, options.port, options.limits, log_level="warning",
                                          ssl_certfile=options.ssl_certfile, ssl_keyfile=options.ssl_keyfile))
    if watch is not None:
        threading.Thread(target=watch, args=(server,), name="sealog-serve-watch", daemon=True).start()

    # After its graceful stop uvicorn raises the stop signal again under the handler it found: under
    # the default one SIGTERM would end the process before the caller's AuditLog.close drains the spool.
    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True  # also when it comes before uvicorn's own handlers are in place

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    if stopping is not None and stopping.is_set():
        server.should_exit = True
    try:
        server.run(sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket all workers share; OSError when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


# -- the supervisor -------------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    ready_fd: int
    """Read end of a pipe: the worker writes one byte once it accepts connections, then closes it."""
    ready_at: float | None = None


@dataclass
class _Slot:
    worker: _Worker | None = None
    pause: float = 0.0
    due: float = 0.0
    """When a dead worker's replacement starts (monotonic)."""


class Supervisor:
    """Keeps ``count`` workers serving one socket; ``run`` returns the exit code."""

    def __init__(self, options: ServeOptions, count: int, echo: Callable[[str, bool], None]) -> None:
        """``echo(line, err)`` prints the supervisor's lines: the serving line to stdout, the rest to stderr."""
        self.options = options
        self.count = count
        self.echo = echo
        self._stop: int | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def run(self) -> int:
        try:
            self._sock = listen(self.options.host, self.options.port)
        except OSError as exc:
            self.echo(f"sealog: cannot listen on {self.options.host}:{self.options.port}: {exc.strerror or exc}", True)
            return 2
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        slots = [_Slot() for _ in range(self.count)]
        try:
            for slot in slots:
                slot.worker = self._spawn()
            code = self._await_ready(slots)
            if code is None:
                scheme = "https" if self.options.ssl_certfile else "http"
                self.echo(f"sealog: {self.count} workers serving on {scheme}://{self.options.host}:{self.port}/ "
                          f"(supervisor pid {os.getpid()})", False)
                self._supervise(slots)
                code = 0
            self._stop_all(slots)
            return code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._stop = signum

    def _spawn(self) -> _Worker:
        assert self._sock is not None
        ready_r, ready_w = os.pipe()
        listen_fd = self._sock.fileno()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "sealog.server.workers", str(listen_fd), str(ready_w)],
                pass_fds=(listen_fd, ready_w), env={**os.environ, OPTIONS_ENV: self.options.to_json()})
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        os.set_blocking(ready_r, False)
        return _Worker(process, ready_r)

    def _await_ready(self, slots: list[_Slot]) -> int | None:
        """None once every worker serves; else the exit code (a worker failed to start, or a stop signal)."""
        while self._stop is None:
            for slot in slots:
                assert slot.worker is not None
                self._check_ready(slot.worker)
                code = slot.worker.process.poll()
                if code is not None and slot.worker.ready_at is None:
                    self.echo(f"sealog: a worker failed to start (exit {code}); stopping", True)
                    return code if code > 0 else 1
            if all(slot.worker is not None and slot.worker.ready_at is not None for slot in slots):
                return None
            self._wait([s.worker.ready_fd for s in slots if s.worker is not None], 1.0)
        return 0

    def _check_ready(self, worker: _Worker) -> None:
        if worker.ready_at is not None or worker.ready_fd < 0:
            return
        with contextlib.suppress(BlockingIOError):
            data = os.read(worker.ready_fd, 1)
            if data:
                worker.ready_at = time.monotonic()
            os.close(worker.ready_fd)  # a byte, or EOF: the worker died before serving
            worker.ready_fd = -1

    def _wait(self, fds: list[int], timeout: float) -> None:
        """Until a signal (the wakeup pipe), a ready byte, or ``timeout``."""
        readable, _, _ = select.select([self._wake_r, *[fd for fd in fds if fd >= 0]], [], [], timeout)
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 512):
                    pass

    def _supervise(self, slots: list[_Slot]) -> None:
        while self._stop is None:
            now = time.monotonic()
            for slot in slots:
                worker = slot.worker
                if worker is None:
                    if now >= slot.due:
                        slot.worker = self._spawn()
                    continue
                self._check_ready(worker)
                code = worker.process.poll()
                if code is None:
                    continue
                if worker.ready_fd >= 0:
                    os.close(worker.ready_fd)
                steady = worker.ready_at is not None and now - worker.ready_at >= STEADY_SECONDS
                slot.pause = 0.0 if steady else min(MAX_PAUSE, max(0.5, slot.pause * 2))
                slot.due, slot.worker = now + slot.pause, None
                how = f"signal {-code}" if code < 0 else f"exit {code}"
                self.echo(f"sealog: worker {worker.process.pid} ended ({how}); starting another"
                          + (f" in {slot.pause:.1f} s" if slot.pause else ""), True)
                if not slot.pause:
                    slot.worker = self._spawn()
            pending = [s.due - now for s in slots if s.worker is None]
            self._wait([s.worker.ready_fd for s in slots if s.worker is not None],
                       max(0.05, min([1.0, *pending])))

    def _stop_all(self, slots: list[_Slot]) -> None:
        """SIGTERM every worker (each finishes its requests and drains its spool), then wait; SIGKILL stragglers."""
        workers = [s.worker for s in slots if s.worker is not None]
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"sealog: worker {worker.process.pid} did not stop within {STOP_SECONDS:.0f} s; "
                          "killed (its spool is delivered at the next start)", True)
                worker.process.kill()
                worker.process.wait()
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)


# -- a worker process -------------------------------------------------------------------------


def _watch(parent: int, ready_fd: int) -> Callable[[Any], None]:
    """Say when the server accepts connections; stop it when the supervisor is gone."""
    def watch(server: Any) -> None:
        try:
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                os.write(ready_fd, b"R")
        finally:
            os.close(ready_fd)
        while not server.should_exit:
            if os.getppid() != parent:  # reparented: nobody would restart or stop us
                server.should_exit = True
            time.sleep(0.5)
    return watch


def main() -> None:
    """``python -m sealog.server.workers LISTEN_FD READY_FD``, started by the Supervisor."""
    # A stop that comes while this process starts must still end in AuditLog.close: by default
    # SIGTERM would kill it with its spool undrained and its lock file left behind.
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.set())
    listen_fd, ready_fd = int(sys.argv[1]), int(sys.argv[2])
    options = ServeOptions.from_json(os.environ.pop(OPTIONS_ENV))
    parent = os.getppid()
    sock = socket.socket(fileno=listen_fd)
    try:
        log = AuditLog(options.url, checkpoint_every=options.checkpoint_every)
    except (SealogError, ValueError) as exc:
        print(f"sealog worker: {exc}", file=sys.stderr)
        sys.exit(3)
    try:
        serve(options, log, KeyStore(log.url), [sock], _watch(parent, ready_fd), stopping)
    finally:
        log.close()


if __name__ == "__main__":
    main()
