"""_tlogproof.py: C2SP tlog-proof receipts, in transparency-dev/formats' encoding, verified offline end to end."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealog._merkle import RightEdge, inclusion_proof, leaf_hash
from sealog._note import Signer, Verifier, format_checkpoint, generate_key, sign
from sealog._tlogproof import Receipt, ReceiptError, format_receipt, parse_receipt, verify_receipt

# transparency-dev/formats proof/tlog_proof_test.go (TestMarshal, TestUnmarshalErrors).
H1 = hashlib.sha256(b"hash1").digest()
H2 = hashlib.sha256(b"hash2").digest()
H1B64, H2B64 = base64.b64encode(H1).decode(), base64.b64encode(H2).decode()

# The example in c2sp.org/tlog-proof (its signatures are elided there, so it only parses).
SPEC_EXAMPLE = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

— example.com/fancylog hI2DJw[...]1roloI=
— witness1.example mJirIklj[...]qY9v2B/5bg==
"""

ORIGIN = "sealog/acme"


class Log:
    """A small signed log: events, their tree, a signed checkpoint, and receipts for its events."""

    def __init__(self, count: int) -> None:
        self.events = [f'{{"action":"tool.call","seq":{i + 1}}}'.encode() for i in range(count)]
        self.nodes: dict[tuple[int, int], bytes] = {}
        edge = RightEdge()
        for event in self.events:
            for level, index, h in edge.append(leaf_hash(event)):
                self.nodes[level, index] = h
        skey, vkey = generate_key("sealog")
        self.signer, self.verifier = Signer.from_text(skey), Verifier.from_text(vkey)
        self.checkpoint = sign(format_checkpoint(ORIGIN, count, edge.root()), self.signer)

    def proof(self, index: int) -> list[bytes]:
        return inclusion_proof(index, len(self.events), lambda level, i: self.nodes[level, i])

    def receipt(self, index: int) -> str:
        return format_receipt(self.events[index], index, self.proof(index), self.checkpoint)


@pytest.fixture(scope="module")
def log() -> Log:
    return Log(37)


# -- the format --------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "index", "hashes", "checkpoint", "want"), [
    (None, 5, [H1, H2], "test checkpoint\n", f"c2sp.org/tlog-proof@v1\nindex 5\n{H1B64}\n{H2B64}\n\ntest checkpoint\n"),
    (b"extra information", 10, [H1], "checkpoint data\n",
     f"c2sp.org/tlog-proof@v1\nextra {base64.b64encode(b'extra information').decode()}\nindex 10\n{H1B64}\n\ncheckpoint data\n"),
    (None, 0, [], "checkpoint\n", "c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n"),
])
def test_format_matches_transparency_dev_marshal(extra: bytes | None, index: int, hashes: list[bytes],
                                                 checkpoint: str, want: str) -> None:
    """format_receipt writes exactly what transparency-dev/formats' TLogProof.Marshal writes; parse reads it back."""
    assert format_receipt(extra, index, hashes, checkpoint) == want
    assert parse_receipt(want) == Receipt(extra, index, tuple(hashes), checkpoint)


@pytest.mark.parametrize(("text", "reason"), [
    ("wrong-header\nindex 0\n\ncheckpoint\n", "first line"),
    ("c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n", "extra data is not base64"),
    ("c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n", "index"),
    ("c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n", "index"),
    ("c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n", "index"),
    ("c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n", "proof hash 0 is not base64"),
    ("c2sp.org/tlog-proof@v1\nindex 0\n" + base64.b64encode(bytes(64)).decode() + "\n\ncheckpoint\n", "64 bytes"),
    ("c2sp.org/tlog-proof@v1\nindex 0\n" + "a" * 65 * 1024 + "\n", "empty line"),
    # the spec: no leading zeros; the checkpoint follows an empty line
    ("c2sp.org/tlog-proof@v1\nindex 007\n\ncheckpoint\n", "index"),
    ("c2sp.org/tlog-proof@v1\nindex 0\n", "empty line"),
    ("c2sp.org/tlog-proof@v1\nindex 0\n\n", "empty line"),
])
def test_malformed_receipts_are_refused(text: str, reason: str) -> None:
    """transparency-dev's Unmarshal error cases, and the spec's leading-zero and missing-checkpoint rules, fail by name."""
    with pytest.raises(ReceiptError, match=reason):
        parse_receipt(text)


def test_the_spec_example_parses() -> None:
    """The c2sp.org/tlog-proof example splits into its extra data, index 73894, five hashes and the checkpoint verbatim."""
    receipt = parse_receipt(SPEC_EXAMPLE)
    assert receipt.extra == base64.b64decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
    assert receipt.index == 73894
    assert len(receipt.hashes) == 5
    assert receipt.hashes[0] == base64.b64decode("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    assert receipt.checkpoint == SPEC_EXAMPLE[SPEC_EXAMPLE.index("example.com/fancylog\n109482"):]


@given(st.binary(max_size=300) | st.none(), st.integers(0, 2**64 - 1),
       st.lists(st.binary(min_size=32, max_size=32), max_size=64))
def test_format_and_parse_round_trip(extra: bytes | None, index: int, hashes: list[bytes]) -> None:
    """Any extra data (or none), any uint64 index and up to 64 hashes survive format then parse."""
    checkpoint = "sealog/acme\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n— sealog AAAA\n"
    text = format_receipt(extra, index, hashes, checkpoint)
    assert parse_receipt(text) == Receipt(extra, index, tuple(hashes), checkpoint)


# -- verification ------------------------------------------------------------------------


def test_a_receipt_has_the_contracts_layout(log: Log) -> None:
    """Header, extra = base64 of the event's bytes, index = seq - 1, one hash a line, empty line, checkpoint verbatim."""
    text = log.receipt(5)
    proof = "".join(base64.b64encode(h).decode() + "\n" for h in log.proof(5))
    assert text == (f"c2sp.org/tlog-proof@v1\nextra {base64.b64encode(log.events[5]).decode()}\nindex 5\n"
                    f"{proof}\n{log.checkpoint}")


def test_every_event_of_a_log_has_a_receipt_that_verifies(log: Log) -> None:
    """For each of 37 events the receipt verifies offline with only the verifier key, giving the event and its index."""
    for index, event in enumerate(log.events):
        got_event, got_index, checkpoint = verify_receipt(log.receipt(index), [log.verifier], origin=ORIGIN)
        assert (got_event, got_index) == (event, index)
        assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 37)


def test_a_changed_event_is_refused(log: Log) -> None:
    """Editing the event inside the receipt (one byte) makes its leaf hash leave the signed tree."""
    forged = format_receipt(log.events[3].replace(b"tool.call", b"tool.cell"), 3, log.proof(3), log.checkpoint)
    with pytest.raises(ReceiptError, match="not in the checkpoint's tree"):
        verify_receipt(forged, [log.verifier])


def test_a_wrong_index_or_proof_is_refused(log: Log) -> None:
    """Another index, a flipped bit in any proof hash, or a dropped hash fails the inclusion check."""
    proof = log.proof(3)
    texts = [format_receipt(log.events[3], 4, proof, log.checkpoint),
             format_receipt(log.events[3], 3, proof[:-1], log.checkpoint),
             format_receipt(log.events[3], 40, proof, log.checkpoint)]
    for i in range(len(proof)):
        flipped = [*proof[:i], bytes([proof[i][0] ^ 0x80]) + proof[i][1:], *proof[i + 1:]]
        texts.append(format_receipt(log.events[3], 3, flipped, log.checkpoint))
    for text in texts:
        with pytest.raises(ReceiptError, match="not in the checkpoint's tree"):
            verify_receipt(text, [log.verifier])


def test_a_checkpoint_not_signed_by_the_trusted_key_is_refused(log: Log) -> None:
    """A receipt whose checkpoint another key signed (even with the same name) is refused, naming the checkpoint."""
    impostor = Signer.from_text(generate_key("sealog")[0])
    body = log.checkpoint[: log.checkpoint.index("\n\n") + 1]
    text = format_receipt(log.events[0], 0, log.proof(0), sign(body, impostor))
    with pytest.raises(ReceiptError, match="checkpoint: no signature by a trusted key"):
        verify_receipt(text, [log.verifier])


def test_an_edited_checkpoint_is_refused(log: Log) -> None:
    """Changing the checkpoint's size inside the receipt breaks its signature."""
    text = log.receipt(0).replace(f"{ORIGIN}\n37\n", f"{ORIGIN}\n38\n")
    with pytest.raises(ReceiptError, match="checkpoint: invalid signature"):
        verify_receipt(text, [log.verifier])


def test_a_receipt_from_another_log_or_without_event_is_refused(log: Log) -> None:
    """With an expected origin, another log's checkpoint is refused; a receipt without extra data proves no event."""
    with pytest.raises(ReceiptError, match="not 'sealog/globex'"):
        verify_receipt(log.receipt(0), [log.verifier], origin="sealog/globex")
    with pytest.raises(ReceiptError, match="no extra line"):
        verify_receipt(format_receipt(None, 0, log.proof(0), log.checkpoint), [log.verifier])


def test_format_receipt_refuses_what_it_cannot_write() -> None:
    """A negative index, a hash that is not 32 bytes or a checkpoint without its final newline is the caller's error."""
    with pytest.raises(ValueError, match="index"):
        format_receipt(b"e", -1, [], "cp\n")
    with pytest.raises(ValueError, match="32 bytes"):
        format_receipt(b"e", 0, [b"short"], "cp\n")
    with pytest.raises(ValueError, match="newline"):
        format_receipt(b"e", 0, [], "cp")
