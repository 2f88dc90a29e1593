"""The verifiable log as the viewer shows it, checked on the server: an event's inclusion in the latest
signed checkpoint, and whether the stored tree still matches that checkpoint.

The checkpoint's root is taken from the signed note itself (not from the row beside it), and its
signature is checked when the server knows the log's verifier key, so a page saying "ok" means what
an auditor's own check would say. Every function here blocks on the store: call them in a worker pool.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Final, Literal

from .. import _checkpoints as ckpt
from .._errors import InvalidQuery
from .._event import Event
from .._log import AuditLog
from .._merkle import InclusionProofError, MissingHashError, leaf_hash, verify_inclusion
from .._note import Checkpoint, NoteError, Verifier, open_checkpoint, parse_checkpoint
from ..stores.base import NotInLog, StoredCheckpoint, TreeStore, event_canonical

VERIFIER_ENV: Final = "SEALOG_VERIFIER_KEY"
Signature = Literal["verified", "unchecked", "invalid"]


def server_verifier(log: AuditLog, verifier_key: str | None = None) -> Verifier | None:
    """The key the server checks signatures with: ``verifier_key`` (text or file), else ``SEALOG_VERIFIER_KEY``,
    else the verifier of the log's own signing key; None when it has none of them."""
    text = verifier_key or os.environ.get(VERIFIER_ENV)
    if text:
        return ckpt.load_verifier(text)
    signer = log._checkpoints.signer
    return signer.verifier() if signer is not None else None


@dataclass(frozen=True)
class SignedNote:
    """A stored checkpoint read back: its body, and what its signature is worth."""

    stored: StoredCheckpoint
    checkpoint: Checkpoint | None
    """None when the note is not a checkpoint at all."""
    signature: Signature
    detail: str

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.checkpoint.root).decode() if self.checkpoint else ""


def read_note(stored: StoredCheckpoint, verifier: Verifier | None, origin: str) -> SignedNote:
    """Parse a stored note; check its signature with ``verifier`` and that it names ``origin``."""
    checkpoint: Checkpoint | None
    if verifier is not None:
        try:
            checkpoint = open_checkpoint(stored.note, [verifier])
        except NoteError as exc:
            return SignedNote(stored, _unverified(stored.note), "invalid", f"the signature does not verify: {exc}")
        detail = f"signed by {verifier.name}+{verifier.key_id:08x}"
        signature: Signature = "verified"
    else:
        checkpoint = _unverified(stored.note)
        signature, detail = "unchecked", (f"not checked: the server has no verifier key ({VERIFIER_ENV}, "
                                          "or a signing key of its own)")
    if checkpoint is not None and checkpoint.origin != origin:
        return SignedNote(stored, checkpoint, "invalid", f"the note is for log {checkpoint.origin!r}, not {origin!r}")
    return SignedNote(stored, checkpoint, signature, detail)


def _unverified(note: str) -> Checkpoint | None:
    body = note[: note.rfind("\n\n") + 1] if "\n\n" in note else note
    try:
        return parse_checkpoint(body)
    except NoteError:
        return None


@dataclass(frozen=True)
class TreeStatus:
    """The tenant's latest checkpoint against its stored tree now."""

    note: SignedNote
    tree_size: int
    """The tenant's event count now."""
    matches: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.matches and self.note.signature != "invalid"


def tree_status(store: TreeStore, tenant_id: str, verifier: Verifier | None, log_name: str) -> TreeStatus | None:
    """Whether the stored tree still has the latest checkpoint's root at its size; None without a checkpoint.

    Reads the stored subtree hashes (a few range reads), not every event: :func:`rehash_status` does that.
    """
    stored = store.latest_checkpoint(tenant_id)
    if stored is None:
        return None
    note = read_note(stored, verifier, ckpt.origin(log_name, tenant_id))
    head = store.tree_size(tenant_id)
    checkpoint = note.checkpoint
    if checkpoint is None:
        return TreeStatus(note, head, False, "the stored note is not a checkpoint")
    if head < checkpoint.size:
        return TreeStatus(note, head, False, f"the store holds {head} events, fewer than the {checkpoint.size} "
                                             "the checkpoint covers: events were cut off")
    try:
        root = store.tree_root(tenant_id, checkpoint.size)
    except (MissingHashError, InvalidQuery) as exc:
        return TreeStatus(note, head, False, f"the stored tree cannot give the root of {checkpoint.size} events: {exc}")
    if root != checkpoint.root:
        return TreeStatus(note, head, False, f"the stored tree's root at size {checkpoint.size} is "
                                             f"{base64.b64encode(root).decode()}, not the checkpoint's: the log "
                                             "was changed since it was signed")
    return TreeStatus(note, head, True, f"the stored tree's first {checkpoint.size} events give the checkpoint's root")


def rehash_status(store: TreeStore, tenant_id: str, checkpoint: Checkpoint) -> list[str]:
    """The thorough check, as `sealog verify --checkpoint` does it: every event it covers, re-hashed."""
    return ckpt.check_store(store, tenant_id, checkpoint)


@dataclass(frozen=True)
class Inclusion:
    """An event's place in the latest checkpoint's tree."""

    state: Literal["ok", "pending", "failed", "none"]
    detail: str
    note: SignedNote | None = None
    leaf_index: int | None = None
    proof_length: int = 0


def inclusion_status(store: TreeStore, event: Event, verifier: Verifier | None, log_name: str) -> Inclusion:
    """Prove the event's leaf (re-hashed from its content) into the latest checkpoint's signed root."""
    stored = store.latest_checkpoint(event.tenant_id)
    if stored is None:
        return Inclusion("none", "the tenant has no signed checkpoint yet")
    note = read_note(stored, verifier, ckpt.origin(log_name, event.tenant_id))
    checkpoint = note.checkpoint
    if checkpoint is None or note.signature == "invalid":
        return Inclusion("failed", note.detail if checkpoint else "the stored note is not a checkpoint", note)
    seq = event.seq or 0
    if seq > checkpoint.size:
        return Inclusion("pending", f"the latest checkpoint covers events 1 to {checkpoint.size}; this one (seq {seq}) "
                                    "will be in the next", note)
    try:
        proof = store.inclusion_proof(event.tenant_id, event.event_id, checkpoint.size)
        if proof.leaf_index != seq - 1:
            raise InclusionProofError(f"the store places the event at leaf {proof.leaf_index}, not {seq - 1}")
        verify_inclusion(leaf_hash(event_canonical(event)), proof.leaf_index, checkpoint.size, proof.hashes,
                         checkpoint.root)
    except (InclusionProofError, MissingHashError, InvalidQuery, NotInLog) as exc:
        return Inclusion("failed", f"not proven: {exc}", note)
    return Inclusion("ok", f"leaf {seq - 1} of {checkpoint.size}: its content re-hashed and {len(proof.hashes)} proof "
                           "hashes give the signed root", note, seq - 1, len(proof.hashes))
