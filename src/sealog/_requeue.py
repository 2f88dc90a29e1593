"""``sealog requeue``: deliver quarantined events again, once the cause is fixed.

The quarantine file is moved aside first (writers keep appending to a fresh one), so a
requeue never races a writer; a requeue that dies midway leaves its file, which the next
requeue takes up. Inserts are idempotent, so delivering an event twice stores it once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from ._errors import EventRejected
from ._event import Event, decode
from ._spool import QUARANTINE


class Writable(Protocol):
    def write(self, events: Sequence[Event]) -> int: ...


@dataclass
class Requeued:
    stored: int = 0
    duplicates: int = 0
    kept: list[str] = field(default_factory=list)
    """The reasons of the events that stay in quarantine."""


def requeue(sink: Writable, spool_dir: Path) -> Requeued:
    """Write every quarantined event; what the store still refuses goes back to quarantine.

    A StoreUnavailable propagates after everything not yet stored is back in quarantine.
    """
    mine = spool_dir / f"quarantine.requeue-{os.getpid()}.jsonl"
    with contextlib.suppress(FileNotFoundError):
        os.rename(spool_dir / QUARANTINE, mine)
    files = sorted(spool_dir.glob("quarantine.requeue-*.jsonl"))
    records = [raw for path in files for raw in path.read_bytes().splitlines() if raw.strip()]
    result, keep, position = Requeued(), [], 0
    try:
        while position < len(records):
            raw = records[position]
            position += 1
            event, reason = _event_of(raw)
            if event is None:
                keep.append(raw)
                result.kept.append(reason)
                continue
            try:
                added = sink.write([event])
            except EventRejected as exc:
                keep.append(_record(str(exc), raw))
                result.kept.append(str(exc))
                continue
            result.stored += added
            result.duplicates += 1 - added
    except BaseException:  # an outage: the event in hand was not stored either
        position -= 1
        raise
    finally:
        _append(spool_dir / QUARANTINE, keep + records[position:])
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return result


def _event_of(raw: bytes) -> tuple[Event | None, str]:
    try:
        record = json.loads(raw)
        return decode(record["line"].encode()), ""
    except (ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
        return None, f"unreadable quarantine record: {exc}"


def _record(reason: str, raw: bytes) -> bytes:
    record = json.loads(raw)
    return json.dumps({"reason": reason, "line": record["line"]}).encode()


def _append(path: Path, records: list[bytes]) -> None:
    if not records:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"".join(r + b"\n" for r in records))
        os.fsync(fd)
    finally:
        os.close(fd)
