"""``sealog verify-export``, fast: one typed decode a line, one C encode, two SHA-256 and a short tree fold.

The same checks and messages as ``_checkpoints.check_export`` (the reference, kept for the library).
A line of sealog's shape is decoded straight into a struct whose JSON fields stay raw bytes, spliced
in as written: when that hashes to the line's hash, those are the bytes that were sealed (SHA-256),
and nothing is re-canonicalised; otherwise the values are, as the reference does. Any other line (a
missing or extra field, a value of another type) goes through the reference path, so an export is
judged the same either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec
from msgspec.structs import astuple

from ._canonical import SORTED_FIELDS, canonical_row, canonical_value, loads
from ._checkpoints import ExportCheck, content_canonical
from ._event import FIELDS, JSON_FIELDS
from ._merkle import EMPTY_ROOT
from ._note import Checkpoint

_TYPES: Final = (dict.fromkeys(FIELDS, str | None) | dict.fromkeys(JSON_FIELDS, msgspec.Raw)
                 | dict.fromkeys(("seq", "hash", "prev_hash", "tenant_id"), Any) | {"latency_ms": float | None})
_Line = msgspec.defstruct("_Line", [(name, _TYPES[name]) for name in FIELDS], forbid_unknown_fields=True)
_decode = msgspec.json.Decoder(_Line).decode
_SORTED_AT: Final = tuple(FIELDS.index(name) for name in SORTED_FIELDS)
_JSON_AT: Final = tuple(SORTED_FIELDS.index(name) for name in JSON_FIELDS)
_SEQ, _TENANT, _PREV, _HASH = (FIELDS.index(name) for name in ("seq", "tenant_id", "prev_hash", "hash"))
_TRIVIAL: Final = {b"null": b"null", b"{}": b"{}", b"[]": b"[]"}
_HEX: Final = frozenset("0123456789abcdef")


def _json(raw: msgspec.Raw) -> bytes:
    data = bytes(raw)
    trivial = _TRIVIAL.get(data)
    return trivial if trivial is not None else canonical_value(loads(data))


def _canonical(line: bytes, as_given: bool) -> tuple[bytes, Any, Any, Any, Any]:
    """(canonical bytes, seq, tenant_id, prev_hash, hash) of one export line; ValueError/TypeError when it is none.

    ``as_given``: JSON values spliced in as the line spells them (sealog writes them canonical): when
    that hashes to the line's hash, those are the very bytes that were sealed; else the caller asks
    again without it, and the values are re-canonicalised as any auditor would.
    """
    try:
        event = _decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        obj = loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object") from None
        return content_canonical(obj), obj.get("seq"), obj.get("tenant_id"), obj.get("prev_hash"), obj.get("hash")
    row = astuple(event)
    values = [row[i] for i in _SORTED_AT]
    for i in _JSON_AT:
        values[i] = bytes(values[i]) if as_given else _json(values[i])
    return canonical_row(values), row[_SEQ], row[_TENANT], row[_PREV], row[_HASH]


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def check_export(lines: Iterable[bytes], tenant_id: str, checkpoint: Checkpoint,
                 progress: Callable[[int], None] | None = None) -> ExportCheck:
    """Check a JSONL export's chain and that its first ``size`` events give the checkpoint's root.

    Constant memory: the tree's right edge (at most 64 hashes) and the previous hash.
    """
    result = ExportCheck(tenant_id, checkpoint)
    sha256 = hashlib.sha256
    stack: list[bytes] = []
    prev, size, leaves = bytes(32), checkpoint.size, 0
    prev_hex = prev.hex()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            canonical, seq, tenant, prev_hash, digest_hex = _canonical(line, True)
            digest = sha256(prev + canonical).digest()
            hexed = digest.hex()
            if hexed != digest_hex:
                canonical = _canonical(line, False)[0]
                digest = sha256(prev + canonical).digest()
                hexed = digest.hex()
        except (ValueError, TypeError) as exc:
            result.add(f"tenant {tenant_id!r} line {number}: not an exported event: {exc}")
            continue
        result.events += 1
        if tenant != tenant_id or seq != result.events or prev_hash != prev_hex or digest_hex != hexed:
            _report(result, f"tenant {tenant_id!r} line {number}", tenant_id, tenant, seq, prev_hash, prev_hex,
                    digest_hex, hexed)
        if digest_hex == hexed:  # the common case: the line's own hash, valid hex by construction
            prev, prev_hex = digest, hexed
        elif _is_hash(digest_hex):
            prev, prev_hex = bytes.fromhex(digest_hex), digest_hex
        else:
            prev, prev_hex = digest, hexed
        if leaves < size:  # the right edge of the tree of the first `size` leaves, folded as RFC 6962 does
            node, width = sha256(b"\x00" + canonical).digest(), leaves
            while width & 1:
                node = sha256(b"\x01" + stack.pop() + node).digest()
                width >>= 1
            stack.append(node)
            leaves += 1
        if progress is not None and number % 1000 == 0:
            progress(number)
    if leaves < size:
        result.add(f"tenant {tenant_id!r}: the checkpoint covers {size} events but the export holds only "
                   f"{leaves}: it was cut short")
    elif _root(stack) != checkpoint.root:
        result.add(f"tenant {tenant_id!r}: the export's first {size} events do not give the checkpoint's root: "
                   "events were changed, added, removed or re-hashed")
    return result


def _report(result: ExportCheck, where: str, tenant_id: str, tenant: Any, seq: Any, prev_hash: Any, prev_hex: str,
            digest_hex: Any, hexed: str) -> None:
    """The problems of one line (kept out of the loop: a sound line builds no message)."""
    if tenant != tenant_id:
        result.add(f"{where}: an event of tenant {tenant!r}, not of the checkpoint's tenant")
    if seq != result.events:
        result.add(f"{where}: seq {seq!r}, expected {result.events} (an event is missing, added or moved)")
    if prev_hash != prev_hex:
        result.add(f"{where} seq {seq}: prev_hash does not match the previous event's hash")
    if digest_hex != hexed:
        result.add(f"{where} seq {seq}: the content does not match its hash (the event was changed)")


def _root(stack: list[bytes]) -> bytes:
    if not stack:
        return EMPTY_ROOT
    root = stack[-1]
    for node in reversed(stack[:-1]):
        root = hashlib.sha256(b"\x01" + node + root).digest()
    return root
