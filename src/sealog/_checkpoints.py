"""Signed checkpoints: when to sign a tenant's tree, the proofs handed out against them, receipts.

A checkpoint (C2SP tlog-checkpoint in a signed note) is ``<log name>/<tenant_id>``, the tree size
and its RFC 6962 root, signed with the log's Ed25519 key. Kept outside the database (by an auditor,
a witness, a ticket), it pins the tenant's first ``size`` events: cutting them off or re-hashing
the chain no longer goes unnoticed.

Automatic signing runs in the process that holds the key (``AuditLog(signing_key=...)`` or
``SEALOG_SIGNING_KEY``): a daemon thread that, every ``checkpoint_every`` seconds, signs each tenant
whose chain grew since its latest checkpoint. It needs only the store (the tree's rows are there),
so it works whichever process writes; across processes the stored checkpoints' times keep it to
about one signature per tenant per interval.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from ._canonical import canonical_event, canonical_value, loads
from ._chain import SCALAR_FIELDS
from ._errors import SealogError
from ._event import JSON_FIELDS
from ._merkle import RightEdge, leaf_hash
from ._note import Checkpoint, NoteError, Signer, Verifier, format_checkpoint, open_checkpoint, sign
from ._tlogproof import format_receipt
from .stores.base import NotInLog, StoredCheckpoint, TreeStore, event_canonical

log = logging.getLogger("sealog")

DEFAULT_EVERY: Final = 60.0
DEFAULT_LOG_NAME: Final = "sealog"
_TICK: Final = 1.0
"""How often the signing thread looks whether its AuditLog was closed."""


class NoCheckpoint(SealogError, LookupError):
    """The tenant has no signed checkpoint (and none could be signed: no key, or no events)."""


class TreeRewritten(SealogError):
    """The stored tree is not an extension of the latest checkpoint: it was cut off or rewritten.

    Signing it would bless the change, so sealog refuses; ``sealog verify --checkpoint`` says more.
    """


def log_name(name: str | None = None) -> str:
    return name or os.environ.get("SEALOG_LOG_NAME") or DEFAULT_LOG_NAME


def origin(name: str, tenant_id: str) -> str:
    """The checkpoint's origin line: ``<log name>/<tenant_id>``."""
    return f"{name}/{tenant_id}"


def tenant_of(checkpoint_origin: str, name: str) -> str | None:
    """The tenant a checkpoint's origin names, or None when it is not this log's."""
    prefix = f"{name}/"
    return checkpoint_origin[len(prefix):] if checkpoint_origin.startswith(prefix) else None


def load_signer(path: str | os.PathLike[str]) -> Signer:
    """The signer key in the file ``path`` (as ``sealog keygen`` writes it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SealogError(f"cannot read the signing key {os.fspath(path)}: {exc.strerror}") from None
    try:
        return Signer.from_text(text)
    except NoteError as exc:
        raise SealogError(f"{os.fspath(path)}: {exc}") from None


def load_verifier(text_or_path: str) -> Verifier:
    """A verifier key given as its text (``name+id+key``) or as the path of a file holding it."""
    text = text_or_path
    try:
        if Path(text_or_path).is_file():
            text = Path(text_or_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SealogError(f"cannot read the verifier key {text_or_path}: {exc.strerror}") from None
    try:
        return Verifier.from_text(text)
    except NoteError as exc:
        raise SealogError(f"{exc} (give the key's text or the path of a file holding it)") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class Checkpoints:
    """The signing policy of one AuditLog (or one command): its key, log name and interval."""

    signer: Signer | None = None
    name: str = DEFAULT_LOG_NAME
    every: float = DEFAULT_EVERY
    _signed: dict[str, int] = field(default_factory=dict)
    """Per tenant, the tree size of the latest checkpoint seen: spares the store a query per tick."""

    @classmethod
    def configure(cls, signing_key: str | os.PathLike[str] | None = None, every: float = DEFAULT_EVERY,
                  name: str | None = None) -> Checkpoints:
        """From the arguments, else ``SEALOG_SIGNING_KEY`` and ``SEALOG_LOG_NAME``."""
        if not every > 0:
            raise ValueError(f"checkpoint_every must be > 0 seconds, not {every!r}")
        path = signing_key or os.environ.get("SEALOG_SIGNING_KEY")
        return cls(load_signer(path) if path else None, log_name(name), float(every))

    def sign(self, store: TreeStore, tenant_id: str) -> StoredCheckpoint:
        """Sign and keep the tenant's tree as it is now, once it proved to extend the latest checkpoint."""
        if self.signer is None:
            raise NoCheckpoint("no signing key: give --signing-key FILE or set SEALOG_SIGNING_KEY")
        # The latest checkpoint first: read after the tree, it could be one that another process
        # (a second `serve` worker) signed meanwhile over a bigger tree, and ours would look cut off.
        latest = store.latest_checkpoint(tenant_id)
        size = store.tree_size(tenant_id)
        root = store.tree_root(tenant_id, size)
        if latest is not None:
            check_extends(store, tenant_id, latest, size, root)
        note = sign(format_checkpoint(origin(self.name, tenant_id), size, root), self.signer)
        store.add_checkpoint(tenant_id, size, root, note)
        self._signed[tenant_id] = size
        return StoredCheckpoint(tenant_id, size, root, note, "")

    def checkpoint(self, store: TreeStore, tenant_id: str) -> str:
        """The latest signed checkpoint, signing a new one first when the tree grew and a key is set.

        A tree smaller than the latest checkpoint's is not served quietly either: TreeRewritten.
        """
        latest = store.latest_checkpoint(tenant_id)
        if self.signer is not None and store.tree_size(tenant_id) != (latest.tree_size if latest else 0):
            return self.sign(store, tenant_id).note
        if latest is None:
            raise NoCheckpoint(f"tenant {tenant_id!r} has no signed checkpoint"
                               + ("" if self.signer else " (no signing key is configured)"))
        return latest.note

    def inclusion_proof(self, store: TreeStore, tenant_id: str, event_id: str,
                        tree_size: int | None = None) -> dict[str, Any]:
        size = self._size(store, tenant_id) if tree_size is None else tree_size
        proof = store.inclusion_proof(tenant_id, event_id, size)
        return {"leaf_index": proof.leaf_index, "tree_size": proof.tree_size, "hashes": [b64(h) for h in proof.hashes]}

    def consistency_proof(self, store: TreeStore, tenant_id: str, first: int, second: int) -> dict[str, Any]:
        hashes = store.consistency_proof(tenant_id, first, second)
        return {"first": first, "second": second, "hashes": [b64(h) for h in hashes]}

    def _size(self, store: TreeStore, tenant_id: str) -> int:
        latest = store.latest_checkpoint(tenant_id)
        if latest is None:
            raise NoCheckpoint(f"tenant {tenant_id!r} has no signed checkpoint to prove against; give tree_size")
        return latest.tree_size

    def receipt(self, store: TreeStore, tenant_id: str, event_id: str) -> str | None:
        """The event's C2SP tlog-proof against the latest checkpoint; None when none covers it and no key is set."""
        event = store.get(tenant_id, event_id)
        if event is None or not event.seq:
            raise NotInLog(f"tenant {tenant_id!r} has no event {event_id!r}")
        latest = store.latest_checkpoint(tenant_id)
        if latest is None or latest.tree_size < event.seq:
            if self.signer is None:
                return None
            latest = self.sign(store, tenant_id)
        proof = store.inclusion_proof(tenant_id, event_id, latest.tree_size)
        return format_receipt(event_canonical(event), proof.leaf_index, proof.hashes, latest.note)

    # -- automatic signing -------------------------------------------------------------

    def sign_grown(self, store: TreeStore) -> list[str]:
        """Sign every tenant that grew since its latest checkpoint, unless that one is younger than ``every``."""
        if self.signer is None:
            return []
        signed = []
        for head in store.heads():
            if head.seq == self._signed.get(head.tenant_id, 0):
                continue
            latest = store.latest_checkpoint(head.tenant_id)
            if latest is not None:
                self._signed[head.tenant_id] = latest.tree_size
                if latest.tree_size == head.seq or _age(latest.created_at) < self.every:
                    continue  # another process signed it, or signed lately
            try:
                self.sign(store, head.tenant_id)
                signed.append(head.tenant_id)
            except TreeRewritten as exc:
                log.error("sealog: not signing: %s", exc)
                self._signed[head.tenant_id] = head.seq  # said once per growth, not every tick
        return signed

    def start(self, owner: object, store: TreeStore, alive: Callable[[Any], bool]) -> threading.Thread | None:
        """Sign grown tenants every ``every`` seconds in a daemon thread, while ``alive(owner)``."""
        if self.signer is None:
            return None
        ref = weakref.ref(owner)
        thread = threading.Thread(target=self._run, args=(ref, store, alive), name="sealog-checkpoints", daemon=True)
        thread.start()
        return thread

    def _run(self, ref: weakref.ReferenceType[Any], store: TreeStore, alive: Callable[[Any], bool]) -> None:
        due, failing = time.monotonic() + self.every, False
        while True:
            time.sleep(min(_TICK, self.every))
            owner = ref()
            if owner is None or not alive(owner):
                return
            del owner
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self.every
            try:
                self.sign_grown(store)
                failing = False
            except SealogError as exc:  # an outage: the next interval tries again; the writer reports it too
                if not failing:
                    log.warning("sealog: automatic checkpoint failed (retrying every %.0f s): %s", self.every, exc)
                failing = True


def check_extends(store: TreeStore, tenant_id: str, latest: StoredCheckpoint, size: int, root: bytes) -> None:
    """Raise TreeRewritten unless the tree of ``size`` leaves extends the ``latest`` checkpoint.

    The tree's first ``latest.tree_size`` leaves, from the same rows as ``root``, must give the signed
    root: what a consistency proof shows, at the cost of one root (the proof would cost two).
    """
    if size < latest.tree_size:
        raise TreeRewritten(f"tenant {tenant_id!r}: the tree has {size} events, fewer than the {latest.tree_size} "
                            "of its latest checkpoint: events were cut off")
    if size != latest.tree_size and store.tree_root(tenant_id, latest.tree_size) != latest.root:
        raise TreeRewritten(f"tenant {tenant_id!r}: the tree is not an extension of its latest checkpoint "
                            f"(size {latest.tree_size}): its first {latest.tree_size} events give another root")
    if size == latest.tree_size and root != latest.root:
        raise TreeRewritten(f"tenant {tenant_id!r}: the tree of {size} events has another root than its latest "
                            "checkpoint of that size")


def _age(created_at: str) -> float:
    try:
        return time.time() - datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return float("inf")


# -- audits against a checkpoint ---------------------------------------------------------


def open_signed(text: str, verifier: Verifier, name: str) -> tuple[str, Checkpoint]:
    """(tenant, checkpoint) of a signed checkpoint of this log; SealogError says what is wrong with it."""
    try:
        checkpoint = open_checkpoint(text, [verifier])
    except NoteError as exc:  # name the log it claims to be, so the report says which tenant failed
        claimed = text.partition("\n")[0][:200]
        raise SealogError(f"the checkpoint of {claimed!r} does not verify: {exc}") from None
    tenant = tenant_of(checkpoint.origin, name)
    if not tenant:
        raise SealogError(f"the checkpoint is for log {checkpoint.origin!r}, not one of {name!r} (see --log-name)")
    return tenant, checkpoint


def check_store(store: TreeStore, tenant_id: str, checkpoint: Checkpoint) -> list[str]:
    """What is wrong with the store against a checkpoint: its first ``size`` events, re-hashed, give its root.

    Reads the events themselves (the stored tree could be rewritten along with them), streamed.
    """
    size, edge, seen = checkpoint.size, RightEdge(), 0
    for seq, leaf in store.leaves(tenant_id, size):
        if seq != seen + 1:
            break
        edge.append(leaf)
        seen += 1
    if seen < size:
        return [f"tenant {tenant_id!r}: the checkpoint covers {size} events but the store holds only the first "
                f"{seen}: events were cut off"]
    if edge.root() != checkpoint.root:
        return [f"tenant {tenant_id!r}: its first {size} events do not give the checkpoint's root: the chain "
                "was changed or re-hashed since it was signed"]
    try:
        stored = store.tree_root(tenant_id, size)
    except (SealogError, LookupError) as exc:
        return [f"tenant {tenant_id!r}: the stored Merkle tree cannot give the root of {size} events: {exc}"]
    if stored != checkpoint.root:
        return [f"tenant {tenant_id!r}: the events match the checkpoint but the stored Merkle tree does not "
                "(its rows were changed): proofs would fail"]
    return []


_SEAL_FIELDS: Final = frozenset(("seq", "prev_hash", "hash", "recorded_at"))
_SCALARS: Final = frozenset(SCALAR_FIELDS)
_CONTENT: Final = _SCALARS | frozenset(JSON_FIELDS)
MAX_REPORTED: Final = 20


@dataclass
class ExportCheck:
    """The outcome of checking an export against a checkpoint."""

    tenant_id: str
    checkpoint: Checkpoint
    events: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def add(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(problem)


def content_canonical(event: dict[str, Any]) -> bytes:
    """The canonical bytes of an exported event object: every field but seq, prev_hash, hash, recorded_at."""
    content = {k: v for k, v in event.items() if k not in _SEAL_FIELDS}
    if content.keys() != _CONTENT:  # not sealog's shape: the reference encoder, as any auditor would
        return canonical_value(content)
    json = {name: canonical_value(content.pop(name)) for name in JSON_FIELDS}
    return canonical_event(content, json)


def check_export(lines: Iterable[bytes], tenant_id: str, checkpoint: Checkpoint,
                 progress: Callable[[int], None] | None = None) -> ExportCheck:
    """Check a JSONL export's chain and that its first ``size`` events give the checkpoint's root.

    Constant memory: one right edge (at most 64 hashes) and the previous hash.
    """
    result = ExportCheck(tenant_id, checkpoint)
    edge, prev, size = RightEdge(), bytes(32), checkpoint.size
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"tenant {tenant_id!r} line {number}"
        try:
            event = loads(line)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            canonical = content_canonical(event)
        except (ValueError, TypeError) as exc:
            result.add(f"{where}: not an exported event: {exc}")
            continue
        result.events += 1
        seq = event.get("seq")
        if event.get("tenant_id") != tenant_id:
            result.add(f"{where}: an event of tenant {event.get('tenant_id')!r}, not of the checkpoint's tenant")
        if seq != result.events:
            result.add(f"{where}: seq {seq!r}, expected {result.events} (an event is missing, added or moved)")
        digest = hashlib.sha256(prev + canonical).digest()
        if event.get("prev_hash") != prev.hex():
            result.add(f"{where} seq {seq}: prev_hash does not match the previous event's hash")
        if event.get("hash") != digest.hex():
            result.add(f"{where} seq {seq}: the content does not match its hash (the event was changed)")
        prev = bytes.fromhex(event["hash"]) if _is_hash(event.get("hash")) else digest
        if edge.size < size:
            edge.append(leaf_hash(canonical))
        if progress is not None and number % 1000 == 0:
            progress(number)
    if edge.size < size:
        result.add(f"tenant {tenant_id!r}: the checkpoint covers {size} events but the export holds only "
                   f"{edge.size}: it was cut short")
    elif edge.root() != checkpoint.root:
        result.add(f"tenant {tenant_id!r}: the export's first {size} events do not give the checkpoint's root: "
                   "events were changed, added, removed or re-hashed")
    return result


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
