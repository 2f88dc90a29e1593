"""Small records that every worker of the service shares: a file each, under the spool directory.

``sealog serve --workers N`` runs N processes on one spool directory; what one worker
answered (an Idempotency-Key's first ids, a viewer sign-in) must hold on the others and
across a restart. A record is written to a temporary file and renamed, so no worker reads
half of one; its file's age is its age. Records never hold a secret: callers store hashes
and ids, and a record's file name is the SHA-256 of its key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Final

_SWEEP_EVERY: Final = 60.0
"""Seconds between removals of expired records (each worker sweeps on its own)."""


class SharedRecords:
    """Bytes by key, kept ``seconds`` long; a missing directory only means nothing is shared."""

    def __init__(self, directory: Path | None, seconds: float) -> None:
        self.directory = directory
        self.seconds = seconds
        self._swept = 0.0

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            if time.time() - path.stat().st_mtime > self.seconds:
                return None
            return path.read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> bool:
        """False when not shared (no directory, or it cannot be written): the caller keeps its own copy."""
        path = self._path(key)
        if path is None:
            return False
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError:
            return False
        self._sweep()
        return True

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def _path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()}.rec"

    def _sweep(self) -> None:
        now = time.time()
        if self.directory is None or now - self._swept < _SWEEP_EVERY:
            return
        self._swept = now
        with contextlib.suppress(OSError):
            for path in self.directory.iterdir():
                with contextlib.suppress(OSError):
                    age = now - path.stat().st_mtime
                    if age > (self.seconds if path.suffix == ".rec" else _SWEEP_EVERY):
                        path.unlink()
