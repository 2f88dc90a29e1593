"""Checkpoint and proof time at 10^4, 10^5 and 10^6 events in one tenant (pure, and through SQLite); writer throughput.

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

Then the same through a real SQLite store (SQLiteStore.write grows one tenant to 10^6 events, its
tree rows written in the events' transactions), at each size n: a checkpoint (the root of n events
from the stored rows, signed with Ed25519 and kept in the checkpoints table, as ``sealog checkpoint``
does), an inclusion proof of a random event against n, and a consistency proof from a random older
size, each from a fresh read (no cache but SQLite's pages). Same bars on the ratios.

Last, the writer's throughput (emit to stored, through the default writer process, four tenants)
with automatic checkpoints on (a signing key, checkpoint_every=2 s: several signing rounds per run,
30 times as often as the 60 s default) versus off, runs alternated. Bar: on / off >= 0.95.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Callable

from common import TENANTS, Bar, event_kwargs, header, median, parser, sqlite_url, table, temp_dir, verdict
from sealog import AuditLog, Event
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
from sealog._note import Signer, format_checkpoint, generate_key, sign


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


def store_event(i: int) -> Event:
    return Event(event_id=f"0190c0de-{i:012d}", tenant_id="acme", action="tool.call", actor_type="user",
                 actor_id=f"u-{i % 997}", occurred_at="2026-01-02T03:04:05.000000Z", metadata={"attempt": i % 5})


def store_level(sizes: list[int], rounds: int, rng: random.Random) -> list[Bar]:
    """Checkpoint and proofs through SQLiteStore at each size (prefixes of one tenant), alternated."""
    from sealog.stores.sqlite import SQLiteStore

    signer = Signer.from_text(generate_key("bench.example")[0])
    with temp_dir() as directory:
        store = SQLiteStore(sqlite_url(directory / "proofs.db"))
        store.migrate()
        started = time.perf_counter()
        for start in range(0, sizes[-1], 5000):
            store.write([store_event(i) for i in range(start, min(sizes[-1], start + 5000))])
        grown = time.perf_counter() - started
        nodes = store._read("SELECT count(*) FROM tree_nodes").fetchone()[0]
        print(f"   SQLite: wrote {sizes[-1]:,} events in {grown:.1f} s ({sizes[-1] / grown:,.0f}/s, tree rows "
              f"included); {nodes:,} tree rows\n")

        def checkpoint(n: int) -> None:
            root = store.tree_root("acme", n)
            store.add_checkpoint("acme", n, root, sign(format_checkpoint("bench/acme", n, root), signer))

        def inclusion(n: int) -> None:
            index = rng.randrange(n)
            root = store.tree_root("acme", n)
            proof = store.inclusion_proof("acme", f"0190c0de-{index:012d}", n)
            verify_inclusion(leaf_hash(store_canonical(index)), index, n, proof.hashes, root)

        def consistency(n: int) -> None:
            m = rng.randrange(1, n)
            verify_consistency(m, n, store.consistency_proof("acme", m, n), store.tree_root("acme", m),
                               store.tree_root("acme", n))

        ops: dict[str, Callable[[int], None]] = {"checkpoint (root + sign + store)": checkpoint,
                                                 "inclusion proof + verify": inclusion,
                                                 "consistency proof + verify": consistency}
        samples: dict[tuple[str, int], list[float]] = {}
        order = list(sizes)
        for _ in range(rounds):
            for n in order:
                for name, run in ops.items():
                    began = time.perf_counter()
                    run(n)
                    samples.setdefault((name, n), []).append((time.perf_counter() - began) * 1000)
            order = order[1:] + order[:1]
        store.close()
    ms = {key: median(values) for key, values in samples.items()}
    table(("operation (SQLite store)", "events in tree", "median ms"), [(op, n, ms[op, n]) for op in ops for n in sizes])
    ratio_rows, bars = [], []
    for op in ops:
        ratios = [ms[op, b] / ms[op, a] for a, b in itertools.pairwise(sizes)]
        ratio_rows.append((op, *ratios))
        bars += [Bar(f"SQLite {op}, {b:,} / {a:,}", r, 2.0, 1.5, higher_is_better=False)
                 for (a, b), r in zip(itertools.pairwise(sizes), ratios, strict=True)]
    table(("operation (SQLite store)", *(f"{b:,} / {a:,}" for a, b in itertools.pairwise(sizes))), ratio_rows)
    return bars


def store_canonical(i: int) -> bytes:
    from sealog.stores.base import event_canonical

    return event_canonical(store_event(i))


def writer_throughput(events: int, rounds: int, every: float) -> Bar:
    """Emit-to-stored events/s through the writer process, automatic checkpoints on vs off, alternated."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    signed = 0
    with temp_dir() as directory:
        key = directory / "signer.key"
        key.write_text(generate_key("bench.example")[0])
        for number in range(rounds * 2):
            auto = number % 2 == 1
            url = sqlite_url(directory / f"writer-{number}.db")
            log = AuditLog(url, spool_dir=directory / f"spool-{number}", signing_key=key if auto else None,
                           checkpoint_every=every)
            log.emit(**event_kwargs(0))  # start the writer process and migrate, untimed
            assert log.flush(30)
            started = time.perf_counter()
            for i in range(1, events + 1):
                log.emit(**event_kwargs(i))
            assert log.flush(120)
            rates[auto].append(events / (time.perf_counter() - started))
            if auto:
                store = log._tree()
                signed += sum(1 for t in TENANTS if store.latest_checkpoint(t) is not None)
            log.close()
    off, on = median(rates[False]), median(rates[True])
    table(("writer (process), SQLite", "events/s (median)", "runs"),
          [("automatic checkpoints off", off, rounds), (f"automatic checkpoints on (every {every:g} s)", on, rounds)])
    print(f"   tenants with an automatic checkpoint at the end of the 'on' runs: {signed} of {len(TENANTS) * rounds}\n")
    return Bar("writer throughput, checkpoints on / off", on / off, 0.95, 1.0, higher_is_better=True)


def main() -> int:
    args = parser(__doc__).parse_args()
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
    rounds = 50 if args.quick else 300
    bars = pure(args.quick, sizes, rounds)
    header("checkpoint and proof time vs tree size (SQLite store)", args.quick, sizes=sizes)
    bars += store_level(sizes, 10 if args.quick else 40, random.Random(12))
    events = 5000 if args.quick else 30_000
    header("writer throughput with automatic checkpoints", args.quick, events=events)
    bars.append(writer_throughput(events, 2 if args.quick else 4, 1.0 if args.quick else 2.0))
    return verdict(bars, args.check)


def pure(quick: bool, sizes: list[int], rounds: int) -> list[Bar]:
    header("checkpoint and proof time vs tree size (in-memory rows)", quick, sizes=sizes, rounds=rounds)
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
    return bars


if __name__ == "__main__":
    sys.exit(main())
