"""C2SP tlog-proof receipts: an event, its index, its inclusion proof and a signed checkpoint, checkable offline.

Format (c2sp.org/tlog-proof, as transparency-dev/formats' ``proof.TLogProof`` writes it)::

    c2sp.org/tlog-proof@v1
    extra <base64 of the event's canonical bytes>     (optional in the spec; sealog always writes it)
    index <0-based leaf index, decimal>
    <base64 proof hash>                                (zero or more, the leaf's sibling first)

    <the signed checkpoint, verbatim>

The spec leaves ``extra`` unauthenticated; sealog makes it the leaf itself (leaf hash =
SHA-256(0x00 || extra)), so the inclusion proof authenticates it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._errors import SealogError
from ._merkle import HASH_SIZE, ProofError, leaf_hash, verify_inclusion
from ._note import Checkpoint, NoteError, Verifier, open_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ReceiptError(SealogError, ValueError):
    """A receipt is malformed or does not prove its event; the message says which part failed."""


@dataclass(frozen=True)
class Receipt:
    """A parsed tlog-proof; nothing in it is checked yet (see :func:`verify_receipt`)."""

    extra: bytes | None
    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str


def _b64decode(text: str, what: str) -> bytes:
    try:
        if not _B64.fullmatch(text):
            raise ValueError
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise ReceiptError(f"malformed receipt: {what} is not base64") from None


def format_receipt(extra: bytes | None, index: int, proof_hashes: Sequence[bytes], signed_checkpoint: str) -> str:
    """The receipt text; ``signed_checkpoint`` is copied verbatim (it must end with a newline)."""
    if index < 0:
        raise ValueError("the leaf index is >= 0")
    if any(len(h) != HASH_SIZE for h in proof_hashes):
        raise ValueError(f"proof hashes have {HASH_SIZE} bytes")
    if not signed_checkpoint.endswith("\n") or signed_checkpoint.startswith("\n"):
        raise ValueError("the signed checkpoint is a note ending in a newline")
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode("ascii"))
    lines.append(f"index {index}")
    lines.extend(base64.b64encode(h).decode("ascii") for h in proof_hashes)
    return "\n".join(lines) + "\n\n" + signed_checkpoint


def parse_receipt(text: str) -> Receipt:
    """Split a receipt into its parts, checking only the syntax."""
    head, sep, checkpoint = text.partition("\n\n")
    if not sep or not checkpoint:
        raise ReceiptError("malformed receipt: no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ReceiptError(f"malformed receipt: the first line must be {HEADER}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64decode(rest.pop(0)[len("extra "):], "the extra data")
    if not rest or not rest[0].startswith("index "):
        raise ReceiptError("malformed receipt: missing the index line")
    index_text = rest.pop(0)[len("index "):]
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", index_text) or int(index_text) >= 1 << 64:
        raise ReceiptError(f"malformed receipt: index {index_text[:30]!r} is not a decimal uint64")
    hashes = []
    for i, line in enumerate(rest):
        h = _b64decode(line, f"proof hash {i}")
        if len(h) != HASH_SIZE:
            raise ReceiptError(f"malformed receipt: proof hash {i} has {len(h)} bytes, not {HASH_SIZE}")
        hashes.append(h)
    return Receipt(extra, int(index_text), tuple(hashes), checkpoint)


def verify_receipt(text: str, verifiers: Iterable[Verifier],
                   origin: str | None = None) -> tuple[bytes, int, Checkpoint]:
    """Check a receipt offline: the checkpoint's signature, then the event's inclusion under its root.

    Returns (event bytes, leaf index, checkpoint); raises :class:`ReceiptError` naming the failed part.
    """
    receipt = parse_receipt(text)
    if receipt.extra is None:
        raise ReceiptError("the receipt carries no event (no extra line)")
    try:
        checkpoint = open_checkpoint(receipt.checkpoint, verifiers, origin)
    except NoteError as exc:
        raise ReceiptError(f"checkpoint: {exc}") from exc
    try:
        verify_inclusion(leaf_hash(receipt.extra), receipt.index, checkpoint.size, receipt.hashes, checkpoint.root)
    except ProofError as exc:
        raise ReceiptError(f"the event is not in the checkpoint's tree: {exc}") from exc
    return receipt.extra, receipt.index, checkpoint
