"""Each tenant's RFC 6962 tree in every store (memory, SQLite, PostgreSQL): the same roots and proofs
as an independent reference over the events' RFC 8785 bytes, kept in append-only rows written with
the events, rebuilt when another writer moved the chain, and refusing to grow over a cut-off chain.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import rfc8785

from sealog import Event, InvalidQuery, StoreUnavailable
from sealog._event import CONTENT_FIELDS
from sealog.stores import open_store
from sealog.stores.base import NotInLog, TreeStore
from sealog.testing import MemoryStore

KINDS = ["memory", "sqlite", "postgres"]
DATABASES = ["sqlite", "postgres"]
SAMPLE_SIZES = [0, 1, 2, 3, 7, 255, 256, 257, 511, 512, 513, 700]


# -- an independent reference: RFC 9162 §2.1 straight from its recursive definitions --------------


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def canonical(e: Event) -> bytes:
    """What an auditor computes from an exported event: RFC 8785 of every content field."""
    return rfc8785.dumps({name: getattr(e, name) for name in CONTENT_FIELDS})


# -- events and stores --------------------------------------------------------------------


def make_events(tenant: str, start: int, count: int) -> list[Event]:
    """Deterministic events (fixed ids and times), so every store must give the very same tree."""
    return [Event(event_id=f"{tenant}-{i:06d}", tenant_id=tenant, action="tool.call", actor_type="agent",
                  actor_id=f"a-{i % 7}", occurred_at=f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
                  latency_ms=i / 8, metadata={"i": i, "f": i / 3, "ü": "☃"}, before=None if i % 2 else {"v": i},
                  after=[i, 2.5]) for i in range(start, start + count)]


def url_of(kind: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if kind == "sqlite" else "pg_url"))


def new_store(kind: str, request: pytest.FixtureRequest) -> TreeStore:
    opened = MemoryStore() if kind == "memory" else open_store(url_of(kind, request))
    assert isinstance(opened, TreeStore)
    return opened


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest) -> Iterator[TreeStore]:
    opened = new_store(request.param, request)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, url_of(request.param, request)


Execute = Callable[[str, tuple[Any, ...]], object]


def attacker(kind: str, url: str) -> Iterator[Execute]:
    """A raw connection with the append-only triggers out of the way, as someone with the file or the owner's role."""
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        for trigger in ("events_no_delete", "tree_nodes_no_delete"):
            conn.execute(f"DROP TRIGGER {trigger}")
        yield conn.execute
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        for table in ("sealog_events", "sealog_tree_nodes"):
            pg.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield lambda sql, params: pg.execute(sql.replace("?", "%s").replace(" events", " sealog_events")
                                             .replace("chain_heads", "sealog_chain_heads")
                                             .replace("tree_nodes", "sealog_tree_nodes"), params)


def write_interleaved(store: TreeStore, count: int) -> list[Event]:
    """``count`` acme events in uneven batches, with globex's between them; returns acme's."""
    acme, done, step = make_events("acme", 0, count), 0, 1
    while done < count:
        store.write(acme[done: done + step] + make_events("globex", done, 2))
        done, step = done + step, step * 3 + 1
    return acme


# -- roots and proofs ----------------------------------------------------------------------


def test_roots_match_the_reference_at_every_tile_boundary(store: TreeStore) -> None:
    """Roots of sizes around 256 and 512 (where stored rows start) equal RFC 9162's MTH over the events."""
    acme = write_interleaved(store, 700)
    leaves = [leaf(canonical(e)) for e in acme]
    assert store.tree_size("acme") == 700
    for size in SAMPLE_SIZES:
        assert store.tree_root("acme", size) == mth(leaves[:size]), size
    assert store.tree_root("nobody", 0) == hashlib.sha256(b"").digest()
    assert [h for _, h in store.leaves("acme", 300)] == leaves[:300]


def test_inclusion_and_consistency_proofs_match_the_reference(store: TreeStore) -> None:
    """Proofs equal RFC 9162's PATH and PROOF (same hashes, same order) for leaves and sizes across tiles."""
    acme = write_interleaved(store, 600)
    leaves = [leaf(canonical(e)) for e in acme]
    for index, size in [(0, 1), (0, 600), (255, 256), (256, 257), (300, 513), (599, 600), (511, 600)]:
        proof = store.inclusion_proof("acme", acme[index].event_id, size)
        assert (proof.leaf_index, proof.tree_size) == (index, size)
        assert proof.hashes == path(index, leaves[:size]), (index, size)
    for first, second in [(1, 600), (255, 256), (256, 600), (257, 513), (300, 301), (600, 600), (0, 600)]:
        expected = [] if first in (0, second) else subproof(first, leaves[:second], True)
        assert store.consistency_proof("acme", first, second) == expected, (first, second)


def test_proofs_refuse_what_the_log_does_not_hold(store: TreeStore) -> None:
    """An unknown event, an event newer than the tree, sizes beyond the chain: NotInLog or InvalidQuery."""
    acme = write_interleaved(store, 10)
    with pytest.raises(NotInLog):
        store.inclusion_proof("acme", "no-such-event", 10)
    with pytest.raises(NotInLog):
        store.inclusion_proof("acme", acme[9].event_id, 9)
    with pytest.raises(InvalidQuery):
        store.inclusion_proof("acme", acme[0].event_id, 11)
    with pytest.raises(InvalidQuery):
        store.tree_root("acme", 11)
    with pytest.raises(InvalidQuery):
        store.consistency_proof("acme", 5, 4)


def test_checkpoints_are_kept_and_the_largest_is_latest(store: TreeStore) -> None:
    """add_checkpoint keeps each note once; latest_checkpoint gives the biggest tree, per tenant."""
    root = b"\x01" * 32
    assert store.latest_checkpoint("acme") is None
    store.add_checkpoint("acme", 5, root, "note 5\n")
    store.add_checkpoint("acme", 9, root, "note 9\n")
    store.add_checkpoint("acme", 9, root, "note 9\n")
    store.add_checkpoint("acme", 7, root, "note 7\n")
    store.add_checkpoint("globex", 1, root, "note g\n")
    latest = store.latest_checkpoint("acme")
    assert latest is not None
    assert (latest.tenant_id, latest.tree_size, latest.root, latest.note) == ("acme", 9, root, "note 9\n")
    assert latest.created_at.endswith("Z")


# -- several writers, upgrades, tampering ----------------------------------------------------------


def test_two_writers_extend_one_tree(database: tuple[str, str], request: pytest.FixtureRequest) -> None:
    """Two store objects (two processes) write in turn: each rebuilds its cached edge from the rows."""
    kind, _ = database
    first, second = new_store(kind, request), new_store(kind, request)
    first.migrate()
    acme = make_events("acme", 0, 900)
    for number, start in enumerate(range(0, 900, 150)):
        (first if number % 2 else second).write(acme[start: start + 150])
    leaves = [leaf(canonical(e)) for e in acme]
    for size in (256, 512, 768, 900):
        assert first.tree_root("acme", size) == mth(leaves[:size])
        assert second.tree_root("acme", size) == mth(leaves[:size])
    first.close()
    second.close()


def test_a_chain_from_before_the_tree_gets_its_rows(database: tuple[str, str], request: pytest.FixtureRequest) -> None:
    """A store upgraded from a version without the tree (no rows) builds them on its next write."""
    kind, url = database
    store = new_store(kind, request)
    store.migrate()
    acme = make_events("acme", 0, 601)
    store.write(acme[:600])
    for execute in attacker(kind, url):
        execute("DELETE FROM tree_nodes WHERE tenant_id = ?", ("acme",))
    store.close()
    upgraded = new_store(kind, request)
    upgraded.write(acme[600:])
    leaves = [leaf(canonical(e)) for e in acme]
    assert upgraded.tree_root("acme", 601) == mth(leaves)
    assert upgraded.tree_root("acme", 512) == mth(leaves[:512])
    upgraded.close()


@pytest.mark.allow_sealog_errors
@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_a_cut_off_chain_is_not_extended(database: tuple[str, str], request: pytest.FixtureRequest,
                                         cache: str) -> None:
    """Events cut off and the head row fixed to match: the tree's rows still cover them, so writes stop."""
    kind, url = database
    store = new_store(kind, request)
    store.migrate()
    acme = make_events("acme", 0, 600)
    store.write(acme)
    for execute in attacker(kind, url):
        execute("DELETE FROM events WHERE tenant_id = ? AND seq > ?", ("acme", 300))
        last = acme[299]
        stored = store.get("acme", last.event_id)
        assert stored is not None
        execute("UPDATE chain_heads SET seq = ?, hash = ? WHERE tenant_id = ?", (300, stored.hash, "acme"))
    if cache == "cold":
        store.close()
        store = new_store(kind, request)
    with pytest.raises(StoreUnavailable, match=r"'acme'.*events were removed"):
        store.write(make_events("acme", 600, 1))
    assert store.write(make_events("globex", 0, 3)) == 3  # other tenants go on
    store.close()


def test_tree_rows_and_checkpoints_are_append_only(database: tuple[str, str], request: pytest.FixtureRequest) -> None:
    """UPDATE and DELETE of tree rows and checkpoints are refused by the database itself."""
    kind, url = database
    store = new_store(kind, request)
    store.migrate()
    store.write(make_events("acme", 0, 256))
    store.add_checkpoint("acme", 256, store.tree_root("acme", 256), "note\n")
    store.close()
    prefix = "" if kind == "sqlite" else "sealog_"
    statements = [f"UPDATE {prefix}tree_nodes SET idx = 7", f"DELETE FROM {prefix}tree_nodes",
                  f"UPDATE {prefix}checkpoints SET tree_size = 1", f"DELETE FROM {prefix}checkpoints"]
    for statement in statements:
        if kind == "sqlite":
            conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
            conn.close()
        else:
            with psycopg.connect(url) as pg, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                pg.execute(statement)
