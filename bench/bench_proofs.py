"""Checkpoint and proof time at 10^4, 10^5 and 10^6 events in one tenant (the pure part: no database).

One tree grows to 10^6 synthetic events (canonical-looking JSON of ~190 bytes). As a writer
would, a RightEdge takes each leaf hash and the subtrees it completes at levels 8, 16, ... are
kept as rows in an in-memory dict; leaf hashes are not kept: the ``leaves`` callback re-encodes
and re-hashes the events it is asked for, as a store re-reads them. For each size n (the tree's
prefixes, measured alternately so the shared machine's noise hits all sizes alike), with a fresh
(cold) TiledHashes per operation, as a request would, it times:

- checkpoint (edge): the writer's ``RightEdge.root()`` (what signing a checkpoint costs);
- checkpoint (rows): a root from the stored rows alone (``tree_root``: a restarted writer, or
  the root at an older size) at a random size in (n - 4096, n], since its cost depends on the
  size's last partial tile (0..255 events), not on n;
- inclusion: ``inclusion_proof`` of a random event against size n, plus its verification, with
  the checkpoint's stored edge (``TiledHashes.add_edge``);
- consistency: ``consistency_proof`` from a random older size m to n (both checkpoints' edges
  known), plus its verification against the old root.

It reports the median time, the tile reads and events re-hashed per operation, and the
ratio between sizes. Bar: each ratio <= 2.0 (logarithmic growth is ~1.2 per 10x); goal <= 1.5.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Callable

from common import Bar, header, median, parser, table, verdict
from sealog._merkle import (
    RightEdge,
    TiledHashes,
    consistency_proof,
    inclusion_proof,
    is_stored_level,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)


def event(i: int) -> bytes:
    return (f'{{"action":"tool.call","actor_id":"u-{i % 997}","event_id":"0190c0de-{i:012d}",'
            f'"metadata":{{"attempt":{i % 5}}},"occurred_at":"2026-01-02T03:04:05.000000Z","tenant_id":"acme"}}'
            ).encode()


class Tree:
    """The writer's edge plus the stored rows, grown one event at a time."""

    def __init__(self) -> None:
        self.edge = RightEdge()
        self.rows: dict[int, list[bytes]] = {}
        self.events_read = 0

    def grow_to(self, size: int) -> None:
        append, rows = self.edge.append, self.rows
        for i in range(self.edge.size, size):
            for level, _, h in append(leaf_hash(event(i))):
                if is_stored_level(level):
                    rows.setdefault(level, []).append(h)

    def stored(self, level: int, start: int, end: int) -> list[bytes]:
        return self.rows.get(level, [])[start:end]

    def leaves(self, start: int, end: int) -> list[bytes]:
        end = min(end, self.edge.size)
        self.events_read += max(0, end - start)
        return [leaf_hash(event(i)) for i in range(start, end)]

    def tiles(self) -> TiledHashes:
        return TiledHashes(self.stored, self.leaves)


Op = Callable[[TiledHashes], None]


def operations(tree: Tree, n: int, edge: RightEdge, rng: random.Random) -> dict[str, tuple[Op, list[RightEdge]]]:
    """One sample of each operation against the tree's first n events (untimed set-up done here)."""
    root = edge.root()
    size = rng.randrange(max(1, n - 4096), n + 1)
    index = rng.randrange(n)
    leaf = leaf_hash(event(index))
    m = rng.randrange(1, n)
    old = RightEdge.rebuild(m, tree.tiles())  # the old checkpoint: its root and its stored edge

    def edge_root(_: TiledHashes) -> None:
        edge.root()

    def stored_root(tiles: TiledHashes) -> None:
        tree_root(size, tiles)

    def inclusion(tiles: TiledHashes) -> None:
        verify_inclusion(leaf, index, n, inclusion_proof(index, n, tiles), root)

    def consistency(tiles: TiledHashes) -> None:
        verify_consistency(m, n, consistency_proof(m, n, tiles), old.root(), root)

    return {"checkpoint (edge)": (edge_root, []), "checkpoint (rows)": (stored_root, []),
            "inclusion + verify": (inclusion, [edge]), "consistency + verify": (consistency, [edge, old])}


def measure(tree: Tree, sizes: list[int], rounds: int, rng: random.Random) -> dict[tuple[str, int], list[float]]:
    """Per (operation, size): samples of ms, tile reads and events re-hashed; sizes alternate every round."""
    edges = {n: RightEdge.rebuild(n, tree.tiles()) for n in sizes}
    samples: dict[tuple[str, int], list[float]] = {}
    order = list(sizes)
    for _ in range(rounds):
        for n in order:
            for name, (op, known) in operations(tree, n, edges[n], rng).items():
                tiles = tree.tiles()
                for edge in known:
                    tiles.add_edge(edge)
                tree.events_read = 0
                started = time.perf_counter()
                op(tiles)
                elapsed = (time.perf_counter() - started) * 1000
                samples.setdefault((name, n), []).extend((elapsed, tiles.reads, tree.events_read))
        order = order[1:] + order[:1]
    return samples


def main() -> int:
    args = parser(__doc__).parse_args()
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
    rounds = 50 if args.quick else 300
    header("checkpoint and proof time vs tree size (in-memory rows)", args.quick, sizes=sizes, rounds=rounds)
    tree = Tree()
    started = time.perf_counter()
    tree.grow_to(sizes[-1])
    print(f"   grew to {sizes[-1]:,} events in {time.perf_counter() - started:.1f} s; "
          f"{sum(len(r) for r in tree.rows.values()):,} stored rows; sizes measured alternately on its prefixes\n")
    samples = measure(tree, sizes, rounds, random.Random(11))
    ops = list(dict.fromkeys(name for name, _ in samples))
    ms = {key: median(values[0::3]) for key, values in samples.items()}
    rows = [(op, n, ms[op, n], sum(samples[op, n][1::3]) / rounds, sum(samples[op, n][2::3]) / rounds)
            for op in ops for n in sizes]
    table(("operation", "events in tree", "median ms", "tile reads", "events re-hashed"), rows)
    ratio_rows, bars = [], []
    for op in ops:
        ratios = [ms[op, b] / ms[op, a] for a, b in itertools.pairwise(sizes)]
        ratio_rows.append((op, *ratios))
        if op != "checkpoint (edge)":  # a few microseconds: timer noise, not growth
            bars += [Bar(f"{op}, {b:,} / {a:,}", r, 2.0, 1.5, higher_is_better=False)
                     for (a, b), r in zip(itertools.pairwise(sizes), ratios, strict=True)]
    table(("operation", *(f"{b:,} / {a:,}" for a, b in itertools.pairwise(sizes))), ratio_rows)
    return verdict(bars, args.check)


if __name__ == "__main__":
    sys.exit(main())
