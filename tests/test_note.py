"""_note.py: C2SP signed-note keys, signatures and checkpoints, checked against Go's sumdb/note vectors."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import pytest

from sealog._note import (
    Checkpoint,
    InvalidSignatureError,
    MalformedCheckpointError,
    MalformedNoteError,
    NoteError,
    Signer,
    UnknownKeyError,
    Verifier,
    format_checkpoint,
    generate_key,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    sign,
)

# golang.org/x/mod/sumdb/note note_test.go (TestNewVerifier, TestNewSigner, TestSign, TestOpen).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

# transparency-dev/formats log/note_test.go: a real sum.golang.org checkpoint and its key; a Go-made key pair.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = """go.sum database tree
6476701
mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=

— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=
"""
LOG_VKEY = "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs"
LOG_SKEY = "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ"

ROOT = bytes(range(32))


def peter() -> Verifier:
    return Verifier.from_text(PETER_VKEY)


# -- keys --------------------------------------------------------------------------------


def test_go_keys_parse_with_their_key_ids() -> None:
    """Go's PeterNeumann, EnochRoot and sum.golang.org keys parse; the ids are SHA-256(name, 0x0A, 0x01, key)[:4]."""
    v = peter()
    assert (v.name, v.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert v.key_id == key_id("PeterNeumann", v.public_key)
    assert v.to_text() == PETER_VKEY
    assert Verifier.from_text(ENOCH_VKEY).key_id == 0xAF0CFE78
    assert Verifier.from_text(SUMDB_VKEY).key_id == 0x033DE0AE
    s = Signer.from_text(PETER_SKEY)
    assert (s.name, s.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert s.to_text() == PETER_SKEY


def test_go_signer_keys_derive_their_go_verifier_keys() -> None:
    """The public key derived from a Go signer key (cryptography's Ed25519) gives exactly Go's verifier key text."""
    assert Signer.from_text(PETER_SKEY).verifier() == peter()
    assert Signer.from_text(LOG_SKEY).verifier().to_text() == LOG_VKEY


def test_every_mangled_verifier_key_is_refused() -> None:
    """As Go's TestNewVerifier: every proper substring and every one-byte change of the key fails to parse."""
    accepted = []
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)) and parses(Verifier.from_text, PETER_VKEY[i:j]):
                accepted.append(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        changed = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1:]
        if parses(Verifier.from_text, changed):
            accepted.append(changed)
    assert accepted == []
    with pytest.raises(MalformedNoteError, match="32 bytes"):  # wrong length key, with adjusted key hash
        Verifier.from_text("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(MalformedNoteError, match="unknown algorithm"):  # unknown algorithm, with adjusted key hash
        Verifier.from_text("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_every_mangled_signer_key_is_refused() -> None:
    """As Go's TestNewSigner: every proper substring and every one-byte change of the signer key fails to parse."""
    accepted = []
    for i in range(len(PETER_SKEY) + 1):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)) and parses(Signer.from_text, PETER_SKEY[i:j]):
                accepted.append(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        changed = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1:]
        if parses(Signer.from_text, changed):
            accepted.append(changed)
    assert accepted == []


def parses(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except MalformedNoteError:
        return False
    return True


def test_key_id_hex_must_be_exactly_eight_hex_digits() -> None:
    """Python's int(x, 16) would take '0x', '_' and spaces; a key id is 8 hex digits and nothing else."""
    name, _, key = PETER_VKEY.split("+", 2)
    for bad in ("0xc74f20a3", "c74f_20a3", " c74f20a3", "c74f20a", "c74f20a3 "):
        with pytest.raises(MalformedNoteError):
            Verifier.from_text(f"{name}+{bad}+{key}")
    assert Verifier.from_text(f"{name}+C74F20A3+{key}") == peter()  # Go's ParseUint takes upper case too


def test_generated_keys_have_the_signed_note_encodings() -> None:
    """generate_key gives PRIVATE+KEY+name+id+key and name+id+key, 0x01-prefixed, that parse and match each other."""
    skey, vkey = generate_key("audit.example.com/log")
    assert re.fullmatch(r"PRIVATE\+KEY\+audit\.example\.com/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", skey)
    assert re.fullmatch(r"audit\.example\.com/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", vkey)
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 1  # base64 itself may hold '+'
    assert base64.b64decode(skey.split("+", 4)[4])[0] == 1
    assert skey.split("+")[3] == vkey.split("+")[1]
    assert Signer.from_text(skey).verifier() == Verifier.from_text(vkey)
    assert generate_key("audit.example.com/log") != (skey, vkey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "new\nline", "nbsp\u00a0x"])
def test_key_names_with_spaces_or_plus_are_refused(name: str) -> None:
    """Key names are non-empty without Unicode spaces or '+' (else the key or signature line would not parse)."""
    with pytest.raises(MalformedNoteError):
        generate_key(name)


def test_the_private_key_never_shows_in_repr() -> None:
    """A Signer's repr names the key, never the seed (it may end up in a log line)."""
    assert "AYEKFALV" not in repr(Signer.from_text(PETER_SKEY))


# -- signing and opening notes -----------------------------------------------------------


def test_signature_equals_gos_byte_for_byte() -> None:
    """Ed25519 is deterministic: signing Go's text with Go's key gives Go's signed note exactly (TestSign)."""
    assert sign(TEXT, Signer.from_text(PETER_SKEY)) == TEXT + "\n" + PETER_SIG


def test_gos_signed_note_opens_with_gos_public_key() -> None:
    """Go's note opens with its verifier key; Enoch's signature is ignored when his key is not trusted (TestOpen)."""
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [peter()]) == TEXT
    assert open_note(note, [peter(), Verifier.from_text(ENOCH_VKEY)]) == TEXT
    assert open_note(note.encode(), [Verifier.from_text(ENOCH_VKEY)]) == TEXT


def test_a_real_sum_golang_org_checkpoint_opens_and_parses() -> None:
    """sum.golang.org's signed tree head verifies with its published key and parses as a C2SP checkpoint."""
    cp = open_checkpoint(SUMDB_CHECKPOINT, [Verifier.from_text(SUMDB_VKEY)])
    assert cp == Checkpoint("go.sum database tree", 6476701,
                            base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="))
    with pytest.raises(MalformedCheckpointError, match="not 'sealog/acme'"):
        open_checkpoint(SUMDB_CHECKPOINT, [Verifier.from_text(SUMDB_VKEY)], origin="sealog/acme")


def test_a_note_without_a_trusted_signature_is_refused_naming_the_signers() -> None:
    """No trusted key among the signers: UnknownKeyError names who did sign (Go: note has no verifiable signatures)."""
    with pytest.raises(UnknownKeyError, match=r"PeterNeumann\+c74f20a3.*EnochRoot\+af0cfe78"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


def test_a_note_signed_by_another_key_is_refused() -> None:
    """A note signed by a different key with the same name has a different id: it is not taken for Peter's."""
    impostor = Signer.from_text(generate_key("PeterNeumann")[0])
    with pytest.raises(UnknownKeyError):
        open_note(sign(TEXT, impostor), [peter()])


def test_a_changed_body_or_signature_is_refused() -> None:
    """Any changed character of the body, or of the signature bytes, makes a trusted key's signature invalid."""
    note = TEXT + "\n" + PETER_SIG
    with pytest.raises(InvalidSignatureError, match=r"PeterNeumann\+c74f20a3"):
        open_note(TEXT.replace("problem", "problems", 1) + "\n" + PETER_SIG, [peter()])
    with pytest.raises(InvalidSignatureError):  # Go's "invalid signature": ABCD inserted into the base64
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter()])
    raw = base64.b64decode(PETER_SIG.split()[2])
    accepted = []
    for i in range(4, len(raw)):  # every byte after the key id
        changed = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:]
        forged = f"{TEXT}\n— PeterNeumann {base64.b64encode(changed).decode()}\n"
        try:
            open_note(forged, [peter()])
            accepted.append(i)
        except InvalidSignatureError:
            pass
    assert accepted == []
    assert open_note(note, [peter()]) == TEXT


@pytest.mark.parametrize("note", [
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    TEXT + "\n" + PETER_SIG * 101,
])
def test_malformed_notes_are_refused(note: str) -> None:
    """Go's badMsgs (no signatures, no newline, control characters, bad names, stray lines) and 101 signatures."""
    with pytest.raises(MalformedNoteError):
        open_note(note, [peter()])


def test_invalid_utf8_bytes_are_malformed() -> None:
    """Go's "\\xff" + text case: a note given as bytes must be UTF-8."""
    with pytest.raises(MalformedNoteError, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [peter()])


def test_duplicate_signatures_by_one_key_are_fine_two_keys_with_one_id_are_not() -> None:
    """A repeated signature line is accepted once (Go); two different trusted keys with one name and id are ambiguous."""
    assert open_note(TEXT + "\n" + PETER_SIG + PETER_SIG, [peter(), peter()]) == TEXT
    clash = Verifier("PeterNeumann", 0xC74F20A3, bytes(32))
    with pytest.raises(NoteError, match="ambiguous"):
        open_note(TEXT + "\n" + PETER_SIG, [peter(), clash])


def test_sign_requires_a_body_ending_in_newline_without_control_characters() -> None:
    """Like Go's Sign: a body without its final newline (or with a control character) is not a note text."""
    signer = Signer.from_text(PETER_SKEY)
    with pytest.raises(MalformedNoteError, match="newline"):
        sign("abc", signer)
    with pytest.raises(MalformedNoteError, match="control"):
        sign("a\rb\n", signer)


def test_round_trip_with_a_generated_key_and_unicode_body() -> None:
    """A generated key signs a non-ASCII body; it opens to the same text with the verifier key, and only with it."""
    skey, vkey = generate_key("example.com/log")
    body = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    note = sign(body, Signer.from_text(skey))
    assert note.endswith("\n")
    assert note.count("\n— example.com/log ") == 1
    assert open_note(note, [Verifier.from_text(vkey)]) == body
    with pytest.raises(UnknownKeyError):
        open_note(note, [peter()])


# -- checkpoints -------------------------------------------------------------------------


def test_checkpoint_body_has_the_c2sp_layout() -> None:
    """format_checkpoint writes origin, decimal size and base64 root, one per line; parse_checkpoint reads it back."""
    body = format_checkpoint("sealog/acme", 1234, ROOT)
    assert body == "sealog/acme\n1234\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    assert parse_checkpoint(body) == Checkpoint("sealog/acme", 1234, ROOT)
    assert parse_checkpoint(format_checkpoint("o", 0, ROOT)).size == 0


def test_checkpoint_extension_lines_are_kept() -> None:
    """Lines after the root are extension lines (transparency-dev 'valid with trailing data'), kept in order."""
    body = format_checkpoint("Log", 9944, ROOT) + "lots\nof\nlines\n"
    assert parse_checkpoint(body).extensions == ("lots", "of", "lines")


@pytest.mark.parametrize("body", [
    # transparency-dev/formats log/checkpoint_test.go invalid cases
    "Head\n9944\n",
    "\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n",
    "Log\n123\nYmFuYW5hcw==",
    "Log\nbananas\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n",
    "Log\n-34\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n",
    "Log\n3438945738945739845734895735\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n",
    "Log\n123\nThisIsn'tBase64\n",
    # C2SP tlog-checkpoint: no leading zeros, a SHA-256 root, no empty extension line
    "Log\n0123\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    "Log\n+123\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    "Log\n123\nYmFuYW5hcw==\n",
    "Log\n123\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\nx\n",
    "Log\n18446744073709551616\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
])
def test_malformed_checkpoints_are_refused(body: str) -> None:
    """Missing lines, empty origin, non-decimal, negative, huge or zero-padded sizes, bad or short roots fail."""
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(body)


def test_format_checkpoint_refuses_what_it_cannot_write() -> None:
    """An empty or multi-line origin, a negative size or a root that is not 32 bytes is the caller's error."""
    for origin, size, root in (("", 1, ROOT), ("a\nb", 1, ROOT), ("o", -1, ROOT), ("o", 1, ROOT[:31])):
        with pytest.raises(ValueError, match=r"origin|size|root"):
            format_checkpoint(origin, size, root)


def test_signed_checkpoint_round_trip_and_tampering() -> None:
    """A signed checkpoint opens to its fields; changing its size or root breaks the signature."""
    skey, vkey = generate_key("sealog")
    verifiers = [Verifier.from_text(vkey)]
    note = sign(format_checkpoint("sealog/acme", 42, ROOT), Signer.from_text(skey))
    assert open_checkpoint(note, verifiers, origin="sealog/acme") == Checkpoint("sealog/acme", 42, ROOT)
    with pytest.raises(InvalidSignatureError):
        open_checkpoint(note.replace("\n42\n", "\n41\n"), verifiers)
    other_root = base64.b64encode(bytes(31) + b"\x01").decode()
    with pytest.raises(InvalidSignatureError):
        open_checkpoint(note.replace(base64.b64encode(ROOT).decode(), other_root), verifiers)
