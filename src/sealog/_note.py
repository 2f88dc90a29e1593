"""C2SP signed notes (as Go's ``golang.org/x/mod/sumdb/note``) with Ed25519 keys, and tlog checkpoint bodies.

Auditors check sealog's checkpoints with their own tools, so the encodings follow the specs byte
for byte: c2sp.org/signed-note (keys, signature lines, the rules for unknown keys) and
c2sp.org/tlog-checkpoint (the body). The Ed25519 arithmetic is ``cryptography``'s, not ours.

- verifier key ``<name>+<8 hex key id>+<base64(0x01 || 32-byte public key)>``;
- signer key ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>``;
- key id: the first 4 bytes, big-endian, of SHA-256(name || 0x0A || 0x01 || public key);
- signed note: the body (ending in a newline), an empty line, then per signature
  ``— <name> <base64(4-byte key id || 64-byte signature over the body)>\\n`` (U+2014).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ._errors import SealogError

ALG_ED25519 = 0x01
SIG_DASH = "\u2014 "
MAX_SIGNATURES = 100
"""Like Go's ``note.Open``: more signature lines than this make the note malformed."""

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class NoteError(SealogError, ValueError):
    """A signed note or key was refused; the subclass and message say why."""


class MalformedNoteError(NoteError):
    """The text is not a signed note (or a key is not a key) in the C2SP encoding."""


class UnknownKeyError(NoteError):
    """No signature on the note comes from a key the caller trusts."""


class InvalidSignatureError(NoteError):
    """A trusted key's signature does not match the note's body: the body or signature was changed."""


class MalformedCheckpointError(NoteError):
    """The note's body is not a C2SP tlog checkpoint."""


def valid_name(name: str) -> bool:
    """C2SP key names: non-empty, no Unicode spaces, no '+'; no control characters (a note cannot hold them)."""
    return (bool(name) and "+" not in name
            and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name))


def key_id(name: str, public_key: bytes) -> int:
    """The 32-bit key id: SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text):
        raise ValueError("not base64")
    return base64.b64decode(text, validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parse_key(name: str, hex_id: str, key64: str, what: str) -> tuple[int, bytes]:
    """Check the common part of both key encodings; return the key id and the 32 key bytes."""
    if not valid_name(name):
        raise MalformedNoteError(f"malformed {what} key: bad name {name!r}")
    if not _HEX8.fullmatch(hex_id):
        raise MalformedNoteError(f"malformed {what} key: the key id must be 8 hex digits")
    try:
        raw = _b64decode(key64)
    except (ValueError, binascii.Error):
        raise MalformedNoteError(f"malformed {what} key: the key is not base64") from None
    if not raw:
        raise MalformedNoteError(f"malformed {what} key: no key")
    if raw[0] != ALG_ED25519:
        raise MalformedNoteError(f"{what} key {name}: unknown algorithm {raw[0]} (only Ed25519, 1)")
    if len(raw) != 33:
        raise MalformedNoteError(f"malformed {what} key {name}: an Ed25519 key has 32 bytes, not {len(raw) - 1}")
    return int(hex_id, 16), raw[1:]


@dataclass(frozen=True, eq=False)
class Verifier:
    """A trusted public key: checks signatures by ``name`` with key id ``key_id``."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse ``<name>+<8 hex>+<base64(0x01 || public key)>``, checking that the id matches the key."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise MalformedNoteError("malformed verifier key: expected <name>+<key id>+<key>")
        kid, public = _parse_key(parts[0], parts[1], parts[2], "verifier")
        if kid != key_id(parts[0], public):
            raise MalformedNoteError(f"verifier key {parts[0]}: the key id does not match the key")
        try:
            Ed25519PublicKey.from_public_bytes(public)
        except ValueError:
            raise MalformedNoteError(f"verifier key {parts[0]}: not an Ed25519 public key") from None
        return cls(parts[0], kid, public)

    def to_text(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{_b64(bytes([ALG_ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verifier) and (self.name, self.key_id, self.public_key) == (
            other.name, other.key_id, other.public_key)

    def __hash__(self) -> int:
        return hash((self.name, self.key_id, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.to_text()!r})"


class Signer:
    """A private key that signs notes as ``name``; its text must be kept secret."""

    __slots__ = ("_private", "key_id", "name")

    def __init__(self, name: str, seed: bytes) -> None:
        if not valid_name(name):
            raise MalformedNoteError(f"bad key name {name!r}: non-empty, no spaces, no '+'")
        self.name = name
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.key_id = key_id(name, self.public_key)

    @property
    def public_key(self) -> bytes:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<8 hex>+<base64(0x01 || seed)>``; the id must match the derived public key."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise MalformedNoteError("malformed signer key: expected PRIVATE+KEY+<name>+<key id>+<key>")
        kid, seed = _parse_key(parts[2], parts[3], parts[4], "signer")
        signer = cls(parts[2], seed)
        if signer.key_id != kid:
            raise MalformedNoteError(f"signer key {parts[2]}: the key id does not match the key")
        return signer

    def to_text(self) -> str:
        seed = _seed(self._private)
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{_b64(bytes([ALG_ED25519]) + seed)}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key)

    def sign_bytes(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id:08x})"  # never the key itself


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def generate_key(name: str) -> tuple[str, str]:
    """A new Ed25519 key pair for ``name``: (signer key text, verifier key text)."""
    signer = Signer(name, _seed(Ed25519PrivateKey.generate()))
    return signer.to_text(), signer.verifier().to_text()


# -- notes -------------------------------------------------------------------------------


def _check_text(text: str) -> None:
    """Signed notes are valid UTF-8 with no ASCII control characters but newline."""
    for c in text:
        if c < " " and c != "\n":
            raise MalformedNoteError(f"malformed note: control character {ord(c):#04x}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedNoteError("malformed note: not valid UTF-8") from None


def sign(body: str, signer: Signer) -> str:
    """The signed note: ``body`` (which must end in a newline), an empty line, one signature line."""
    if not body.endswith("\n"):
        raise MalformedNoteError("malformed note: the body must end with a newline")
    _check_text(body)
    signature = signer.key_id.to_bytes(4, "big") + signer.sign_bytes(body.encode("utf-8"))
    return f"{body}\n{SIG_DASH}{signer.name} {_b64(signature)}\n"


def open_note(text: str | bytes, verifiers: Iterable[Verifier]) -> str:
    """The note's body, once a trusted key's signature on it checks out (Go's ``note.Open`` rules).

    Signatures by keys not in ``verifiers`` are ignored (C2SP: key rotation, witnesses); a trusted
    key's bad signature refuses the note (:class:`InvalidSignatureError`); so does a note with no
    signature by a trusted key (:class:`UnknownKeyError`) and one that is not a signed note
    (:class:`MalformedNoteError`).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNoteError("malformed note: not valid UTF-8") from None
    _check_text(text)
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        if known.setdefault((v.name, v.key_id), v) != v:
            raise NoteError(f"ambiguous key {v.name}+{v.key_id:08x}: two trusted keys share name and id")
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("malformed note: no empty line before the signatures")
    body, sigs = text[: split + 1], text[split + 2:]
    if not sigs.endswith("\n"):
        raise MalformedNoteError("malformed note: no signature line, or the last one lacks its newline")
    verified: set[tuple[str, int]] = set()
    unknown: list[str] = []
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    for line in lines:
        if not line.startswith(SIG_DASH):
            raise MalformedNoteError(f"malformed note: not a signature line: {line[:60]!r}")
        name, _, b64 = line[len(SIG_DASH):].partition(" ")
        try:
            raw = _b64decode(b64)
        except (ValueError, binascii.Error):
            raise MalformedNoteError(f"malformed note: the signature by {name!r} is not base64") from None
        if not valid_name(name) or len(raw) < 5:
            raise MalformedNoteError(f"malformed note: bad signature line for {name!r}")
        kid = int.from_bytes(raw[:4], "big")
        verifier = known.get((name, kid))
        if verifier is None:
            unknown.append(f"{name}+{kid:08x}")
            continue
        if (name, kid) in verified:
            continue
        if not verifier.verify(body.encode("utf-8"), raw[4:]):
            raise InvalidSignatureError(f"invalid signature for key {name}+{kid:08x}: the note was changed")
        verified.add((name, kid))
    if not verified:
        trusted = ", ".join(f"{n}+{k:08x}" for n, k in known) or "none"
        raise UnknownKeyError(f"no signature by a trusted key (signed by {', '.join(unknown)}; trusted: {trusted})")
    return body


# -- checkpoints -------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog checkpoint body: the log's origin, tree size and RFC 6962 root (plus extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """``<origin>\\n<size>\\n<base64 root>\\n``: the body to sign."""
    if not origin or "\n" in origin:
        raise ValueError("the origin is one non-empty line")
    if size < 0:
        raise ValueError("the tree size is >= 0")
    if len(root) != 32:
        raise ValueError("the root is a 32-byte SHA-256 hash")
    return f"{origin}\n{size}\n{_b64(root)}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (after :func:`open_note`); extension lines, if any, must be non-empty."""
    if not body.endswith("\n"):
        raise MalformedCheckpointError("malformed checkpoint: it must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpointError("malformed checkpoint: origin, tree size and root hash lines are required")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise MalformedCheckpointError("malformed checkpoint: empty origin")
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text) or len(size_text) > 20 or int(size_text) >= 1 << 64:
        raise MalformedCheckpointError(f"malformed checkpoint: tree size {size_text[:30]!r} is not a decimal uint64")
    try:
        root = _b64decode(root_text)
    except (ValueError, binascii.Error):
        raise MalformedCheckpointError("malformed checkpoint: the root hash is not base64") from None
    if len(root) != 32:
        raise MalformedCheckpointError(f"malformed checkpoint: the root hash has {len(root)} bytes, not 32")
    if any(not line for line in extensions):
        raise MalformedCheckpointError("malformed checkpoint: empty extension line")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def open_checkpoint(text: str | bytes, verifiers: Iterable[Verifier], origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and parse it; with ``origin``, also require that origin."""
    checkpoint = parse_checkpoint(open_note(text, verifiers))
    if origin is not None and checkpoint.origin != origin:
        raise MalformedCheckpointError(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
