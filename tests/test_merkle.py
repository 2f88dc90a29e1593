"""_merkle.py: RFC 6962 hashing, roots, proofs and verifiers against published vectors and an independent reference."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealog._merkle import (
    EMPTY_ROOT,
    ConsistencyProofError,
    InclusionProofError,
    MissingHashError,
    RightEdge,
    TiledHashes,
    consistency_proof,
    inclusion_proof,
    is_stored_level,
    leaf_hash,
    node_hash,
    root,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

# -- published vectors -------------------------------------------------------------------

# transparency-dev/merkle proof/verify_test.go: the RFC 6962 reference tree of 8 leaves
# (the same as certificate-transparency's), its roots at sizes 1..8, and its proofs.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# (1-based leaf, tree size, proof), as in inclusionProofs.
INCLUSION = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (size1, size2, proof), as in consistencyProofs.
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

# transparency-dev/merkle testdata/inclusion/<n>/*.json (leafIdx, treeSize, root, leafHash, proof, wantErr).
TESTDATA_INCLUSION = [
    ("inclusion/0/happy-path", 0, 1, "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
     "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=", [], False),
    ("inclusion/1/happy-path", 0, 8, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
     ["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=", "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
      "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="], False),
    ("inclusion/1/wrong-leaf", 0, 8, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=", "V3JvbmdMZWFm",
     ["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=", "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
      "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="], True),
    ("inclusion/2/happy-path", 5, 8, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=",
     ["vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
      "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="], False),
    ("inclusion/2/treeSize-div-2", 5, 4, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=",
     ["vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
      "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="], True),
    ("inclusion/3/happy-path", 2, 3, "rra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=",
     "ApjRIpBtz8EIkstTpzmS/FufST6kybrbJ7eRtBJ6f+c=", ["+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU="], False),
    ("inclusion/4/happy-path", 1, 5, "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=",
     "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
     ["bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=", "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
      "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="], False),
]
# transparency-dev/merkle testdata/consistency/<n>/*.json (size1, size2, root1, root2, proof, wantErr).
TESTDATA_CONSISTENCY = [
    ("consistency/0/happy-path", 1, 1, "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
     "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=", [], False),
    ("consistency/1/happy-path", 1, 8, "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
     "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     ["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=", "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
      "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="], False),
    ("consistency/2/happy-path", 6, 8, "duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=",
     "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=", "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
      "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="], False),
    ("consistency/2/swapped-roots", 6, 8, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=",
     ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=", "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
      "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="], True),
    ("consistency/3/happy-path", 2, 5, "+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU=",
     "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=",
     ["Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=", "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="], False),
    ("consistency/3/truncated-proof", 2, 5, "+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU=",
     "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=", ["Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4="], True),
    ("consistency/4/happy-path", 6, 7, "duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=",
     "3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=",
     ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=", "sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=",
      "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="], False),
]


# -- an independent reference: RFC 6962 §2.1 MTH, PATH and SUBPROOF, word for word ----------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True) if 0 < m < len(d) else []


# -- helpers -----------------------------------------------------------------------------


def data(n: int) -> list[bytes]:
    return [f"event {i}".encode() for i in range(n)]


class Store:
    """What a store would keep: the rows a writer's RightEdge completed at stored levels, and the leaves."""

    def __init__(self, height: int = 8) -> None:
        self.height = height
        self.edge = RightEdge()
        self.rows: dict[int, list[bytes]] = {}
        self.leaf_hashes: list[bytes] = []
        self.all_nodes: dict[tuple[int, int], bytes] = {}
        self.leaves_read = 0

    def append(self, entry: bytes) -> list[tuple[int, int, bytes]]:
        h = leaf_hash(entry)
        self.leaf_hashes.append(h)
        completed = self.edge.append(h)
        for level, index, node in completed:
            self.all_nodes[level, index] = node
            if is_stored_level(level, self.height):
                row = self.rows.setdefault(level, [])
                assert len(row) == index
                row.append(node)
        return completed

    def stored(self, level: int, start: int, end: int) -> list[bytes]:
        return self.rows.get(level, [])[start:end]

    def leaves(self, start: int, end: int) -> list[bytes]:
        got = self.leaf_hashes[start:end]
        self.leaves_read += len(got)
        return got

    def tiles(self) -> TiledHashes:
        return TiledHashes(self.stored, self.leaves, height=self.height)

    def hash_at(self, level: int, index: int) -> bytes:
        return self.all_nodes[level, index]


def build(n: int, height: int = 8) -> Store:
    store = Store(height)
    for entry in data(n):
        store.append(entry)
    return store


def reference_tree() -> Store:
    store = Store()
    for entry in LEAVES:
        store.append(entry)
    return store


def hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def b64s(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def refused(error: type[Exception], check: Callable[..., None], *args: object) -> Exception | None:
    """The error ``check`` raised (only ``error`` is expected), or None when it accepted."""
    try:
        check(*args)
    except error as exc:
        return exc
    return None


def flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    changed = list(proof)
    changed[i] = bytes([changed[i][0] ^ bit]) + changed[i][1:]
    return changed


def inclusion_probes(index: int, size: int, proof: list[bytes], root_hash: bytes,
                     leaf: bytes) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """transparency-dev/merkle's corruptInclusionProof: every probe must be refused."""
    probes = [
        ("index - 1", index - 1, size, proof, root_hash, leaf),
        ("index + 1", index + 1, size, proof, root_hash, leaf),
        ("index ^ 2", index ^ 2, size, proof, root_hash, leaf),
        ("size * 2", index, size * 2, proof, root_hash, leaf),
        ("size // 2", index, size // 2, proof, root_hash, leaf),
        ("wrong leaf", index, size, proof, root_hash, b"WrongLeaf"),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root_hash, leaf),
        ("trailing root", index, size, [*proof, root_hash], root_hash, leaf),
        ("preceding garbage", index, size, [b"", *proof], root_hash, leaf),
        ("preceding root", index, size, [root_hash, *proof], root_hash, leaf),
    ]
    probes += [(f"proof[{i}] bit 3", index, size, flip(proof, i, 8), root_hash, leaf) for i in range(len(proof))]
    if proof:
        probes.append(("removed component", index, size, proof[:-1], root_hash, leaf))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, [proof[0], SOME_HASH, *proof[1:]], root_hash, leaf))
    return probes


def consistency_probes(m: int, n: int, root1: bytes, root2: bytes,
                       proof: list[bytes]) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """transparency-dev/merkle's corruptConsistencyProof: every probe must be refused."""
    probes = [
        ("size1 - 1", m - 1, n, root1, root2, proof),
        ("size1 + 1", m + 1, n, root1, root2, proof),
        ("size1 ^ 2", m ^ 2, n, root1, root2, proof),
        ("size2 * 2", m, n * 2, root1, root2, proof),
        ("size2 // 2", m, n // 2, root1, root2, proof),
        ("wrong root1", m, n, b"WrongRoot", root2, proof),
        ("wrong root2", m, n, root1, b"WrongRoot", proof),
        ("swapped roots", m, n, root2, root1, proof),
        ("empty proof", m, n, root1, root2, []),
        ("trailing garbage", m, n, root1, root2, [*proof, b""]),
        ("trailing root1", m, n, root1, root2, [*proof, root1]),
        ("trailing root2", m, n, root1, root2, [*proof, root2]),
        ("preceding garbage", m, n, root1, root2, [b"", *proof]),
        ("preceding root1", m, n, root1, root2, [root1, *proof]),
        ("preceding root2", m, n, root1, root2, [root2, *proof]),
        ("preceding proof[0]", m, n, root1, root2, [proof[0], *proof]),
        ("truncated proof", m, n, root1, root2, proof[:-1]),
    ]
    probes += [(f"proof[{i}] bit 4", m, n, root1, root2, flip(proof, i, 16)) for i in range(len(proof))]
    return probes


# -- published vectors -------------------------------------------------------------------


def test_hashes_match_rfc6962_vectors() -> None:
    """Empty root, empty leaf, a leaf and a node hash equal transparency-dev/merkle's rfc6962_test.go vectors."""
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


def test_roots_match_the_reference_tree_at_every_size() -> None:
    """root(), the RightEdge and a rebuild from stored hashes give RFC 6962's reference roots for sizes 1..8."""
    tree = reference_tree()
    edge = RightEdge()
    for size, entry in enumerate(LEAVES, start=1):
        edge.append(leaf_hash(entry))
        assert root([leaf_hash(e) for e in LEAVES[:size]]) == ROOTS[size - 1]
        assert edge.root() == ROOTS[size - 1]
        assert tree_root(size, tree.hash_at) == ROOTS[size - 1]
    assert root([]) == RightEdge().root() == EMPTY_ROOT


@pytest.mark.parametrize(("leaf", "size", "expected"), INCLUSION)
def test_inclusion_proofs_match_published_vectors(leaf: int, size: int, expected: list[str]) -> None:
    """inclusion_proof gives transparency-dev's vectors hash for hash, and verify_inclusion accepts them."""
    tree = reference_tree()
    proof = inclusion_proof(leaf - 1, size, tree.hash_at)
    assert proof == hexes(expected)
    verify_inclusion(leaf_hash(LEAVES[leaf - 1]), leaf - 1, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("leaf", "size", "expected"), INCLUSION)
def test_inclusion_verifier_refuses_every_corrupted_probe(leaf: int, size: int, expected: list[str]) -> None:
    """Each of transparency-dev's corruptions of a good inclusion proof (index, size, root, leaf, garbage, bits) fails."""
    probes = inclusion_probes(leaf - 1, size, hexes(expected), ROOTS[size - 1], leaf_hash(LEAVES[leaf - 1]))
    accepted = [desc for desc, index, tree_size, proof, root_hash, leaf_h in probes
                if refused(InclusionProofError, verify_inclusion, leaf_h, index, tree_size, proof, root_hash) is None]
    assert accepted == []


@pytest.mark.parametrize(("m", "n", "expected"), CONSISTENCY)
def test_consistency_proofs_match_published_vectors(m: int, n: int, expected: list[str]) -> None:
    """consistency_proof gives transparency-dev's vectors hash for hash, and verify_consistency accepts them."""
    tree = reference_tree()
    proof = consistency_proof(m, n, tree.hash_at)
    assert proof == hexes(expected)
    verify_consistency(m, n, proof, ROOTS[m - 1], ROOTS[n - 1])


@pytest.mark.parametrize(("m", "n", "expected"), [c for c in CONSISTENCY if c[2]])
def test_consistency_verifier_refuses_every_corrupted_probe(m: int, n: int, expected: list[str]) -> None:
    """Each of transparency-dev's corruptions of a good consistency proof (sizes, roots, garbage, bits) fails."""
    probes = consistency_probes(m, n, ROOTS[m - 1], ROOTS[n - 1], hexes(expected))
    accepted = [desc for desc, m2, n2, root1, root2, proof in probes
                if refused(ConsistencyProofError, verify_consistency, m2, n2, proof, root1, root2) is None]
    assert accepted == []


@pytest.mark.parametrize("case", TESTDATA_INCLUSION, ids=lambda c: c[0])
def test_transparency_dev_inclusion_testdata(case: tuple[str, int, int, str, str, list[str], bool]) -> None:
    """transparency-dev/merkle testdata/inclusion cases: accepted exactly when wantErr is false, and regenerated."""
    _, index, size, root64, leaf64, proof64, want_err = case
    proof = b64s(proof64)
    if want_err:
        with pytest.raises(InclusionProofError):
            verify_inclusion(base64.b64decode(leaf64), index, size, proof, base64.b64decode(root64))
    else:
        verify_inclusion(base64.b64decode(leaf64), index, size, proof, base64.b64decode(root64))
        assert inclusion_proof(index, size, reference_tree().hash_at) == proof


@pytest.mark.parametrize("case", TESTDATA_CONSISTENCY, ids=lambda c: c[0])
def test_transparency_dev_consistency_testdata(case: tuple[str, int, int, str, str, list[str], bool]) -> None:
    """transparency-dev/merkle testdata/consistency cases: accepted exactly when wantErr is false, and regenerated."""
    _, m, n, root1, root2, proof64, want_err = case
    proof = b64s(proof64)
    if want_err:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(m, n, proof, base64.b64decode(root1), base64.b64decode(root2))
    else:
        verify_consistency(m, n, proof, base64.b64decode(root1), base64.b64decode(root2))
        assert consistency_proof(m, n, reference_tree().hash_at) == proof


def test_single_entry_and_degenerate_inclusion_checks() -> None:
    """From verify_test.go: a 1-leaf tree proves itself with no hashes; extra hashes, wrong sizes, empty trees fail."""
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)
    with pytest.raises(InclusionProofError, match="too many"):  # RFC 9162 step 4a names the failure
        verify_inclusion(h, 0, 1, [SOME_HASH], h)
    for leaf, root_hash in ((h, b""), (b"", h), (b"", b"")):
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaf, 0, 1, [], root_hash)
    for index, size in ((0, 0), (0, 1), (1, 0), (2, 1)):
        with pytest.raises(InclusionProofError):
            verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


A, B = leaf_hash(b"a"), leaf_hash(b"b")


@pytest.mark.parametrize(("m", "n", "root1", "root2", "proof", "ok"), [
    # verify_test.go TestVerifyConsistency, with 32-byte stand-ins for its "don't care" roots.
    (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
    (1, 1, A, A, [], True),
    (1, 1, A, B, [], False),
    (1, 0, A, B, [], False),  # time travel to the past
    (2, 1, A, B, [], False),
    (1, 2, A, B, [], False),  # empty proof
    (0, 0, EMPTY_ROOT, B, [], False),  # roots differ
    (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),  # roots match but the proof is not empty
    (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (0, 1, EMPTY_ROOT, B, [], True),  # the empty tree is a prefix of every tree...
    (0, 1, A, B, [], False),  # ...but only with the empty root (stricter than transparency-dev, on purpose)
])
def test_consistency_edge_cases(m: int, n: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool) -> None:
    """Equal sizes, size 0 and backwards sizes follow transparency-dev's table; a size-0 tree must have the empty root."""
    if ok:
        verify_consistency(m, n, proof, root1, root2)
    else:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(m, n, proof, root1, root2)


def test_proof_requests_outside_the_tree_are_refused() -> None:
    """Asking for a leaf beyond the tree, or consistency backwards, is a ValueError, not a wrong proof."""
    tree = reference_tree()
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(8, 8, tree.hash_at)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(-1, 8, tree.hash_at)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(6, 5, tree.hash_at)
    assert consistency_proof(0, 8, tree.hash_at) == consistency_proof(8, 8, tree.hash_at) == []


# -- against the independent reference ---------------------------------------------------


def test_roots_match_the_reference_for_every_size_up_to_300() -> None:
    """For sizes 0..300 the RightEdge, root(), and roots from stored tiles of heights 1, 2, 3, 8 equal MTH."""
    entries = data(300)
    stores = {height: Store(height) for height in (1, 2, 3, 8)}
    tiles = {height: store.tiles() for height, store in stores.items()}  # one each, across growth
    for size in range(301):
        expected = ref_mth(entries[:size])
        for height, store in stores.items():
            assert store.edge.root() == expected
            assert tree_root(size, tiles[height]) == expected, (size, height)
            assert RightEdge.rebuild(size, tiles[height]) == store.edge
        assert root([leaf_hash(e) for e in entries[:size]]) == expected
        if size < 300:
            for store in stores.values():
                store.append(entries[size])


TREE_300 = build(300)
TILED_300 = {height: build(300, height) for height in (1, 3, 8)}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_proofs_match_the_reference_and_refuse_tampering(draw: st.DataObject) -> None:
    """Random (size <= 300, index): proofs equal RFC PATH (direct and tiled) and verify; a flipped bit, another index or size fails."""
    size = draw.draw(st.integers(1, 300), "size")
    index = draw.draw(st.integers(0, size - 1), "index")
    entries = data(size)
    expected = ref_path(index, entries)
    proof = inclusion_proof(index, size, TREE_300.hash_at)
    assert proof == expected
    height = draw.draw(st.sampled_from(sorted(TILED_300)), "height")
    assert inclusion_proof(index, size, TILED_300[height].tiles()) == expected
    root_hash, leaf = ref_mth(entries), leaf_hash(entries[index])
    verify_inclusion(leaf, index, size, proof, root_hash)
    if proof:
        i = draw.draw(st.integers(0, len(proof) - 1), "element")
        bit = draw.draw(st.integers(0, 255), "bit")
        changed = list(proof)
        changed[i] = changed[i][: bit // 8] + bytes([changed[i][bit // 8] ^ (1 << bit % 8)]) + changed[i][bit // 8 + 1:]
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaf, index, size, changed, root_hash)
    if size > 1:
        other = draw.draw(st.integers(0, size - 1).filter(lambda j: j != index), "other index")
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaf, other, size, proof, root_hash)
    sizes = [s for s in range(index + 1, 301) if s != size]
    if sizes:  # a checkpoint signs size and root together: refute "in the tree of that other size"
        other_size = draw.draw(st.sampled_from(sizes), "other size")
        with pytest.raises(InclusionProofError):
            verify_inclusion(leaf, index, other_size, proof, ref_mth(data(other_size)))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_proofs_match_the_reference_and_refuse_tampering(draw: st.DataObject) -> None:
    """Random m <= n <= 300: proofs equal RFC PROOF (direct and tiled) and verify; a flipped bit or other sizes fail."""
    n = draw.draw(st.integers(1, 300), "n")
    m = draw.draw(st.integers(0, n), "m")
    entries = data(n)
    expected = ref_proof(m, entries)
    proof = consistency_proof(m, n, TREE_300.hash_at)
    assert proof == expected
    height = draw.draw(st.sampled_from(sorted(TILED_300)), "height")
    assert consistency_proof(m, n, TILED_300[height].tiles()) == expected
    root1, root2 = ref_mth(entries[:m]), ref_mth(entries)
    verify_consistency(m, n, proof, root1, root2)
    if proof:
        i = draw.draw(st.integers(0, len(proof) - 1), "element")
        bit = draw.draw(st.integers(0, 255), "bit")
        changed = list(proof)
        changed[i] = changed[i][: bit // 8] + bytes([changed[i][bit // 8] ^ (1 << bit % 8)]) + changed[i][bit // 8 + 1:]
        with pytest.raises(ConsistencyProofError):
            verify_consistency(m, n, changed, root1, root2)
    other_m = draw.draw(st.sampled_from([x for x in range(n + 1) if x != m]), "other m")
    if ref_proof(other_m, entries) != proof:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(other_m, n, proof, ref_mth(entries[:other_m]), root2)
    sizes = [x for x in range(max(m, 1), 301) if x != n]
    other_n = draw.draw(st.sampled_from(sizes), "other n") if sizes else n
    if other_n != n and ref_proof(m, data(other_n)) != proof:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(m, other_n, proof, root1, ref_mth(data(other_n)))


# -- the right edge ----------------------------------------------------------------------


def test_append_reports_the_subtrees_it_completes() -> None:
    """The 4th leaf completes (0,3), (1,1) and (2,0) with their real hashes; the 5th completes only itself."""
    tree = reference_tree()
    edge = RightEdge()
    for entry in LEAVES[:3]:
        edge.append(leaf_hash(entry))
    completed = edge.append(leaf_hash(LEAVES[3]))
    assert [(lv, ix) for lv, ix, _ in completed] == [(0, 3), (1, 1), (2, 0)]
    assert all(h == tree.hash_at(lv, ix) for lv, ix, h in completed)
    assert completed[-1][2] == ROOTS[3]
    assert [(lv, ix) for lv, ix, _ in edge.append(leaf_hash(LEAVES[4]))] == [(0, 4)]
    assert [(lv, ix) for lv, ix, _ in edge.nodes()] == [(2, 0), (0, 4)]


def test_right_edge_round_trips_through_bytes() -> None:
    """to_bytes/from_bytes keeps size and hashes at every size 0..600; a cut or padded blob is refused."""
    edge = RightEdge()
    for i in range(601):
        blob = edge.to_bytes()
        again = RightEdge.from_bytes(blob)
        assert again == edge
        assert (again.size, again.root()) == (edge.size, edge.root())
        assert len(blob) == 8 + 32 * edge.size.bit_count()
        if edge.size:
            with pytest.raises(ValueError, match="holds"):
                RightEdge.from_bytes(blob[:-1])
            with pytest.raises(ValueError, match="holds"):
                RightEdge.from_bytes(blob + b"\x00" * 32)
        edge.append(leaf_hash(str(i).encode()))
    with pytest.raises(ValueError, match="8-byte size"):
        RightEdge.from_bytes(b"\x00")


def test_writer_restarted_from_stored_rows_continues_the_same_tree() -> None:
    """An edge rebuilt from stored rows (level-8 multiples, leaves from events) at any size then appends exactly as before."""
    entries = data(1300)
    full = build(1300)
    for restart_at in (0, 1, 255, 256, 257, 511, 512, 700, 1024, 1299):
        partial = build(restart_at)
        rebuilt = RightEdge.rebuild(restart_at, partial.tiles())
        assert rebuilt == partial.edge
        reference = build(restart_at)
        for entry in entries[restart_at:]:
            assert rebuilt.append(leaf_hash(entry)) == reference.append(entry)
        assert rebuilt.root() == full.edge.root()


# -- the tiled layout --------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> Store:
    return build(70_000)  # past 2**16: rows at levels 8 and 16


def test_stored_rows_are_one_per_256_leaves(big: Store) -> None:
    """The store keeps floor(n/256) level-8 rows and floor(n/65536) level-16 rows, and no leaf hashes."""
    assert sorted(big.rows) == [8, 16]
    assert len(big.rows[8]) == 70_000 // 256
    assert len(big.rows[16]) == 1


def test_tiled_proofs_on_a_large_tree_read_a_few_tiles_not_the_tree(big: Store) -> None:
    """At 70,000 leaves, root, inclusion and consistency proofs from tiles equal the full tree's and read <= 6 tiles."""
    n = 70_000
    assert tree_root(n, big.hash_at) == big.edge.root()
    for index in (0, 1, 255, 256, 40_000, 65_535, 65_536, 69_999):
        tiles = big.tiles()
        big.leaves_read = 0
        assert inclusion_proof(index, n, tiles) == inclusion_proof(index, n, big.hash_at)
        assert tiles.reads <= 6
        assert big.leaves_read <= 2 * 256
        verify_inclusion(big.leaf_hashes[index], index, n, inclusion_proof(index, n, tiles), big.edge.root())
    for m in (1, 256, 300, 65_536, 69_000):
        tiles = big.tiles()
        proof = consistency_proof(m, n, tiles)
        assert proof == consistency_proof(m, n, big.hash_at)
        assert tiles.reads <= 6
        verify_consistency(m, n, proof, tree_root(m, big.hash_at), big.edge.root())
    tiles = big.tiles()
    assert tree_root(n, tiles) == big.edge.root()
    assert tiles.reads <= 6


def test_a_missing_stored_row_is_reported_not_guessed() -> None:
    """When a row the tree must have is absent, hash_at raises MissingHashError naming level and index."""
    store = build(1000)
    del store.rows[8][2:]  # 1000 = 512 + 256 (row 2) + 232
    with pytest.raises(MissingHashError, match="level 8, index 2"):
        tree_root(1000, store.tiles())
    store.leaf_hashes = store.leaf_hashes[:990]
    with pytest.raises(MissingHashError, match="leaf 990"):
        store.tiles().hash_at(0, 995)


def test_a_checkpoints_stored_edge_spares_the_partial_tile(big: Store) -> None:
    """With the edge kept beside a checkpoint, its root costs no read and a proof for an old leaf re-hashes one tile."""
    n = 69_999  # 69,999 % 256 = 111 leaves in the last, partial tile
    edge = RightEdge.rebuild(n, big.tiles())
    tiles = big.tiles()
    tiles.add_edge(RightEdge.from_bytes(edge.to_bytes()))
    assert tree_root(n, tiles) == tree_root(n, big.hash_at)
    assert tiles.reads == 0
    big.leaves_read = 0
    proof = inclusion_proof(1000, n, tiles)
    assert proof == inclusion_proof(1000, n, big.hash_at)
    assert big.leaves_read == 256  # the leaf's own tile only, not the last one
    verify_inclusion(big.leaf_hashes[1000], 1000, n, proof, edge.root())


def test_tiny_caches_evict_without_changing_answers(big: Store) -> None:
    """With room for one tile and two answers, a long-lived TiledHashes still gives every proof right (and re-reads)."""
    tiles = TiledHashes(big.stored, big.leaves, cache_size=2, tile_cache=1)
    for index in (5, 70_000 - 1, 300, 5, 65_536):
        assert inclusion_proof(index, 70_000, tiles) == inclusion_proof(index, 70_000, big.hash_at)
    assert tiles.reads > 10
