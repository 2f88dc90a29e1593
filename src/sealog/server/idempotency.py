"""What each Idempotency-Key was first used for, shared by every worker of the service.

The event ids derive from the key *and* the body's SHA-256 (``event_id_for``), so a retry
of the same bytes stores nothing twice, on any worker and after any restart, while a key
reused for a different body can never make its events collide with the first body's and
vanish as "duplicates". What is remembered here only lets a retry skip the work and lets a
reused key be refused (422), as the IETF draft asks: in this process's memory, and in a
shared record (``_records``) that ``sealog serve --workers N`` sees from every worker.
A record holds the body's hash and the ids, never the body.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Final

import msgspec

from ._records import SharedRecords
from .auth import HTTPError

SECONDS: Final = 24 * 3600
"""How long a key is remembered."""
_IDS: Final = uuid.UUID("8d3c2f7e-1b5a-5e4c-9f60-7a2d4b8c0e19")
"""UUIDv5 namespace of the event ids derived from an Idempotency-Key."""


class _Record(msgspec.Struct, array_like=True):
    expires: float  # wall-clock seconds: records outlive the process that wrote them
    fingerprint: str
    ids: list[str]


def event_id_for(key_id: str, idempotency_key: str, fingerprint: bytes, index: int) -> str:
    """The id of the ``index``-th event of a request: the same on every retry of the same body."""
    return str(uuid.uuid5(_IDS, f"{key_id}\n{idempotency_key}\n{fingerprint.hex()}\n{index}"))


class Idempotency:
    """First answers by (API key, Idempotency-Key): memory first, then the shared records."""

    def __init__(self, directory: Path | None = None, capacity: int = 10_000) -> None:
        self.records = SharedRecords(directory, SECONDS)
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._lock = threading.Lock()
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
        self.records.put(_name(scope), msgspec.json.encode(record))

    def _read(self, scope: tuple[str, str]) -> _Record | None:
        data = self.records.get(_name(scope))
        try:
            return None if data is None else self._decoder.decode(data)
        except msgspec.DecodeError:  # unreadable: the ids still keep retries safe
            return None


def _name(scope: tuple[str, str]) -> str:
    return f"idempotency\n{scope[0]}\n{scope[1]}"
