"""RFC 6962 / RFC 9162 §2.1 Merkle tree: hashing, a right-edge accumulator, proofs and their verifiers.

Pure functions over hashes: no store, no I/O. The stores feed them through two callbacks.

Tree. Leaf ``i`` hashes as ``SHA-256(0x00 || data)``, an inner node as ``SHA-256(0x01 || left || right)``,
the empty tree as ``SHA-256()``; a tree of ``n`` leaves splits at the largest power of two below ``n``.
So every tree is a row of *perfect subtrees* (one per set bit of ``n``, biggest first), and a perfect
subtree is named by ``(level, index)``: it covers leaves ``[index * 2**level, (index + 1) * 2**level)``.
Its hash never changes once its last leaf exists, whatever the tree grows to: hashes can be kept.

Storage layout (the tlog-tiles idea, in rows). A writer keeps a :class:`RightEdge` (the perfect
subtrees of its current tree, at most 64 hashes): appending a leaf returns the subtrees it completed.
The store keeps, append-only, one row ``(level, index, hash)`` for each completed subtree whose level
is a positive multiple of ``TILE_HEIGHT`` (8): one row per 256 leaves at level 8, one per 65,536 at
level 16, ... (about ``n / 255`` rows in all), and no leaf hashes: those are recomputed from events.
A *tile* is the up-to-256 consecutive hashes of one stored level that one subtree 8 levels higher
covers (or, at level 0, the leaf hashes of 256 consecutive events). :class:`TiledHashes` answers
``hash_at(level, index)`` for any perfect subtree by reading one tile (one range query: at most 256
rows, or 256 events at level 0) and hashing at most 255 nodes of it; tiles and answers are cached
(they never change). A checkpoint or a proof therefore costs a handful of range reads per 8 levels
(logarithmic), never a scan; after a restart :meth:`RightEdge.rebuild` gets the edge back the same way.
Only the last, partial tile of a size costs up to 255 re-hashed events; storing the writer's edge
(:meth:`RightEdge.to_bytes`, at most 64 hashes) with each checkpoint and handing it to
:meth:`TiledHashes.add_edge` removes that too: the root is then free, and a proof re-hashes events only
for a leaf in that last tile or a consistency boundary inside a tile (at most 256 each).

Pruning keeps proofs when it cuts at a multiple of 256 leaves (no tile then straddles the cut); a
store that prunes elsewhere must keep that tile's leaf hashes and serve them from ``leaves``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

from ._errors import SealogError

_T = TypeVar("_T")

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
TILE_HEIGHT = 8
"""Stored subtree hashes sit at the levels that are positive multiples of this."""

HashAt = Callable[[int, int], bytes]
"""``hash_at(level, index)``: the hash of the perfect subtree over leaves ``[index << level, (index + 1) << level)``."""


class ProofError(SealogError, ValueError):
    """A Merkle proof does not prove what it claims; the message says which check failed."""


class InclusionProofError(ProofError):
    """An inclusion proof does not lead from the leaf to the root."""


class ConsistencyProofError(ProofError):
    """A consistency proof does not show the first tree to be a prefix of the second."""


class MissingHashError(SealogError, LookupError):
    """The store lacks a stored subtree hash (or leaf) that a tree of this size must have."""


# -- hashing -----------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash; the 0x00 prefix keeps a leaf from passing for an inner node."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 inner node hash."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over all the leaf hashes at once: the reference, for small inputs and tests."""
    edge = RightEdge()
    for h in leaf_hashes:
        edge.append(h)
    return edge.root()


def is_stored_level(level: int, height: int = TILE_HEIGHT) -> bool:
    """Whether the store keeps completed subtrees of this level (positive multiples of ``height``)."""
    return level > 0 and level % height == 0


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str, error: type[ProofError]) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise error(f"{what} is not a {HASH_SIZE}-byte hash")


# -- the right edge ----------------------------------------------------------------------


class RightEdge:
    """The perfect-subtree hashes along the right edge of a tree of ``size`` leaves (a compact range from 0).

    Enough to append and to give the root, in O(log n) memory; a writer keeps one per tenant.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []  # one per set bit of size, highest level first

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the perfect subtrees ``(level, index, hash)`` it completed, leaf first."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes, not {len(leaf)}")
        index, level, current = self._size, 0, bytes(leaf)
        completed = [(0, index, current)]
        while (self._size >> level) & 1:
            current = node_hash(self._hashes.pop(), current)
            level += 1
            completed.append((level, index >> level, current))
        self._hashes.append(current)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """The tree's root hash (MTH): the edge hashes folded from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            result = node_hash(h, result)
        return result

    def nodes(self) -> list[tuple[int, int, bytes]]:
        """The edge as ``(level, index, hash)``, biggest subtree first."""
        result, start = [], 0
        for level, h in zip(_levels(self._size), self._hashes, strict=True):
            result.append((level, start >> level, h))
            start += 1 << level
        return result

    def to_bytes(self) -> bytes:
        """8-byte big-endian size, then the edge hashes: what a writer may keep beside its rows."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> RightEdge:
        if len(data) < 8:
            raise ValueError("a right edge starts with an 8-byte size")
        size = int.from_bytes(data[:8], "big")
        count = size.bit_count()
        if len(data) != 8 + HASH_SIZE * count:
            raise ValueError(f"a right edge of size {size} holds {count} hashes, not {(len(data) - 8) / HASH_SIZE}")
        edge = cls()
        edge._size = size
        edge._hashes = [bytes(data[8 + HASH_SIZE * i: 8 + HASH_SIZE * (i + 1)]) for i in range(count)]
        return edge

    @classmethod
    def rebuild(cls, size: int, hash_at: HashAt) -> RightEdge:
        """The edge of a tree of ``size`` leaves from stored hashes (a writer restarting), one lookup per set bit."""
        if size < 0:
            raise ValueError("size must be >= 0")
        edge = cls()
        edge._size = size
        start = 0
        for level in _levels(size):
            edge._hashes.append(hash_at(level, start >> level))
            start += 1 << level
        return edge

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RightEdge) and (self._size, self._hashes) == (other._size, other._hashes)

    def __hash__(self) -> int:
        return hash((self._size, tuple(self._hashes)))

    def __repr__(self) -> str:
        return f"RightEdge(size={self._size})"


def _levels(size: int) -> list[int]:
    """Levels of the perfect subtrees that make up a tree of ``size`` leaves, biggest first."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if (size >> level) & 1]


def tree_root(size: int, hash_at: HashAt) -> bytes:
    """The root of the tree's first ``size`` leaves (e.g. for an older checkpoint), from stored hashes."""
    return RightEdge.rebuild(size, hash_at).root()


# -- proofs ------------------------------------------------------------------------------


def _subtree_root(start: int, end: int, hash_at: HashAt) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursion produces (start aligned to the split)."""
    width = end - start
    if width & (width - 1) == 0:
        level = width.bit_length() - 1
        return hash_at(level, start >> level)
    k = _split(width)
    return node_hash(_subtree_root(start, start + k, hash_at), _subtree_root(start + k, end, hash_at))


def inclusion_proof(index: int, size: int, hash_at: HashAt) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]): the leaf's sibling first, the root's child last."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # descend towards the leaf, collecting the other side of each split
        k = _split(end - start)
        if index < start + k:
            proof.append(_subtree_root(start + k, end, hash_at))
            end = start + k
        else:
            proof.append(_subtree_root(start, start + k, hash_at))
            start += k
    proof.reverse()
    return proof


def consistency_proof(m: int, n: int, hash_at: HashAt) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[0:n]): empty when m is 0 or m == n."""
    if not 0 <= m <= n:
        raise ValueError(f"no consistency proof from size {m} to size {n}")
    if m in (0, n):
        return []
    proof: list[bytes] = []
    start, end, whole = 0, n, True  # SUBPROOF(m - start, D[start:end], whole)
    while m != end:
        k = _split(end - start)
        if m - start <= k:
            proof.append(_subtree_root(start + k, end, hash_at))
            end = start + k
        else:
            proof.append(_subtree_root(start, start + k, hash_at))
            start, whole = start + k, False
    if not whole:
        proof.append(_subtree_root(start, end, hash_at))
    proof.reverse()
    return proof


# -- verification ------------------------------------------------------------------------


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise InclusionProofError (naming the failed check) unless the proof holds."""
    err = InclusionProofError
    if not 0 <= index < size:
        raise err(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf, "the leaf hash", err)
    _check_hash(root_hash, "the root hash", err)
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]", err)
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise err(f"the proof has {len(proof)} hashes, too many for leaf {index} of {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise err(f"the proof has {len(proof)} hashes, too few for leaf {index} of {size}")
    if r != root_hash:
        raise err(f"leaf {index} with this proof gives root {r.hex()}, not {bytes(root_hash).hex()}")


def verify_consistency(m: int, n: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ConsistencyProofError` unless tree size m is a prefix of tree size n.

    Stricter than the RFC's edge cases on purpose: size 0 must carry the empty root.
    """
    err = ConsistencyProofError
    _check_hash(first_root, "the first root", err)
    _check_hash(second_root, "the second root", err)
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]", err)
    if not 0 <= m <= n:
        raise err(f"a tree of size {m} cannot be a prefix of one of size {n}")
    if m in (0, n):
        if proof:
            raise err(f"the proof from size {m} to {n} must be empty")
        if m == 0 and first_root != EMPTY_ROOT:
            raise err("the first root is not the empty tree's root")
        if m == n and first_root != second_root:
            raise err(f"two trees of size {m} with different roots")
        return
    path = list(proof)
    if m & (m - 1) == 0:  # the first tree is a perfect subtree of the second: its root starts the path
        path.insert(0, bytes(first_root))
    if not path:
        raise err(f"the proof from size {m} to {n} is empty")
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise err(f"the proof has {len(proof)} hashes, too many for sizes {m} to {n}")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise err(f"the proof has {len(proof)} hashes, too few for sizes {m} to {n}")
    if fr != first_root:
        raise err(f"the proof does not give the first root (size {m})")
    if sr != second_root:
        raise err(f"the proof does not give the second root (size {n})")


# -- tiled storage -----------------------------------------------------------------------


StoredRange = Callable[[int, int, int], Sequence[bytes]]
"""``stored(level, start, end)``: the stored hashes of that level for indices ``[start, end)`` that exist, in order."""
LeafRange = Callable[[int, int], Sequence[bytes]]
"""``leaves(start, end)``: the leaf hashes of the events ``[start, end)`` that exist, in order."""


class TiledHashes:
    """``hash_at`` over stored rows: any perfect subtree from one tile read and at most 255 node hashes.

    ``stored`` and ``leaves`` may return fewer items than asked near the end of the tree, never a gap.
    Tiles and answers are cached (a complete subtree's hash never changes): keep one instance per tenant,
    or make one per request; ``cache_size`` bounds the answers, ``tile_cache`` the tiles (8 KiB each).
    """

    def __init__(self, stored: StoredRange, leaves: LeafRange, *, height: int = TILE_HEIGHT,
                 cache_size: int = 4096, tile_cache: int = 64) -> None:
        if height < 1:
            raise ValueError("tile height must be >= 1")
        self._stored = stored
        self._leaves = leaves
        self._height = height
        self._width = 1 << height
        self._limits = {"hashes": cache_size, "tiles": tile_cache}
        self._tiles: OrderedDict[tuple[int, int], Sequence[bytes]] = OrderedDict()
        self._hashes: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._known: dict[tuple[int, int], bytes] = {}
        self.reads = 0
        """How many times ``stored`` or ``leaves`` was called (for tests and benches)."""

    def __call__(self, level: int, index: int) -> bytes:
        return self.hash_at(level, index)

    def add_edge(self, edge: RightEdge) -> None:
        """Take a size's edge hashes as known (e.g. kept with its checkpoint): that size's root costs no read."""
        for level, index, h in edge.nodes():
            self._known[level, index] = h

    def hash_at(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0:
            raise ValueError(f"no subtree at level {level}, index {index}")
        key = (level, index)
        found = self._known.get(key) or self._hashes.get(key)
        if found is not None:
            if key in self._hashes:
                self._hashes.move_to_end(key)
            return found
        base = level - level % self._height
        first = index << (level - base)
        count = 1 << (level - base)
        tile_index, offset = divmod(first, self._width)
        tile = self._tile(base, tile_index, offset + count)
        row = list(tile[offset: offset + count])
        while len(row) > 1:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        self._remember(self._hashes, key, row[0], self._limits["hashes"])
        return row[0]

    def _tile(self, base: int, tile_index: int, need: int) -> Sequence[bytes]:
        key = (base, tile_index)
        tile = self._tiles.get(key)
        if tile is None or len(tile) < need:  # a partial tile at the right edge may have grown since
            start = tile_index * self._width
            self.reads += 1
            tile = (self._leaves(start, start + self._width) if base == 0
                    else self._stored(base, start, start + self._width))
            if len(tile) < need:
                what = "leaf" if base == 0 else f"stored hash at level {base}, index"
                raise MissingHashError(f"no {what} {start + len(tile)} (the tree must have it)")
            self._remember(self._tiles, key, tile, self._limits["tiles"])
        else:
            self._tiles.move_to_end(key)
        return tile

    @staticmethod
    def _remember(cache: OrderedDict[tuple[int, int], _T], key: tuple[int, int], value: _T, limit: int) -> None:
        cache[key] = value
        if len(cache) > limit:
            cache.popitem(last=False)
