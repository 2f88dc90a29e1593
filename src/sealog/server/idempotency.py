"""What each Idempotency-Key was first used for, shared by every worker of the service.

The event ids derive from the key *and* the body's SHA-256 (``event_id_for``), so a retry
of the same bytes stores nothing twice, on any worker and after any restart, while a key
reused for a different body can never make its events collide with the first body's and
vanish as "duplicates". What is remembered here only lets a retry skip the work and lets a
reused key be refused (422), as the IETF draft asks: in this process's memory, and in a
small file per key under the spool directory, which ``sealog serve --workers N`` shares.
A record holds the body's hash and the ids, never the body.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Final

import msgspec

from .auth import HTTPError

SECONDS: Final = 24 * 3600
"""How long a key is remembered."""
_IDS: Final = uuid.UUID("8d3c2f7e-1b5a-5e4c-9f60-7a2d4b8c0e19")
"""UUIDv5 namespace of the event ids derived from an Idempotency-Key."""
_SWEEP_EVERY: Final = 60.0
"""Seconds between removals of expired records (each worker sweeps on its own)."""


class _Record(msgspec.Struct, array_like=True):
    expires: float  # wall-clock seconds: records outlive the process that wrote them
    fingerprint: str
    ids: list[str]


def event_id_for(key_id: str, idempotency_key: str, fingerprint: bytes, index: int) -> str:
    """The id of the ``index``-th event of a request: the same on every retry of the same body."""
    return str(uuid.uuid5(_IDS, f"{key_id}\n{idempotency_key}\n{fingerprint.hex()}\n{index}"))


class Idempotency:
    """First answers by (API key, Idempotency-Key): memory first, then the shared directory."""

    def __init__(self, directory: Path | None = None, capacity: int = 10_000) -> None:
        self.directory = directory
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._lock = threading.Lock()
        self._swept = 0.0
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Record)

    def answer(self, scope: tuple[str, str], fingerprint: bytes) -> list[str] | None:
        """The ids first answered for this body; 422 when the key came with another body."""
        now = time.time()
        with self._lock:
            record = self._seen.get(scope)
        if record is None or record.expires < now:
            record = self._read(scope)
        if record is None or record.expires < now:
            return None
        if record.fingerprint != fingerprint.hex():
            raise HTTPError(422, "this Idempotency-Key was used for a different body: "
                                 "use a new key for a new request")
        return record.ids

    def remember(self, scope: tuple[str, str], fingerprint: bytes, ids: list[str]) -> None:
        record = _Record(time.time() + SECONDS, fingerprint.hex(), ids)
        with self._lock:
            self._seen[scope] = record
            self._seen.move_to_end(scope)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        self._write(scope, record)

    # -- the shared records ------------------------------------------------------------

    def _path(self, scope: tuple[str, str]) -> Path | None:
        if self.directory is None:
            return None
        name = hashlib.sha256(f"{scope[0]}\n{scope[1]}".encode()).hexdigest()
        return self.directory / f"{name}.json"

    def _read(self, scope: tuple[str, str]) -> _Record | None:
        path = self._path(scope)
        if path is None:
            return None
        try:
            return self._decoder.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError):  # none, or unreadable: the ids still keep retries safe
            return None

    def _write(self, scope: tuple[str, str], record: _Record) -> None:
        """Write-then-rename, so a worker never reads half a record; a failure only costs the 422."""
        path = self._path(scope)
        if path is None:
            return
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            temporary.write_bytes(self._encoder.encode(record))
            os.replace(temporary, path)
        except OSError:
            return
        self._sweep(record.expires - SECONDS)

    def _sweep(self, now: float) -> None:
        if self.directory is None or now - self._swept < _SWEEP_EVERY:
            return
        self._swept = now
        with contextlib.suppress(OSError):
            for path in self.directory.iterdir():
                with contextlib.suppress(OSError):  # a record is written once: its mtime is its age
                    age = now - path.stat().st_mtime
                    if age > (SECONDS if path.suffix == ".json" else _SWEEP_EVERY):
                        path.unlink()
