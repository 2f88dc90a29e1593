"""Retention that keeps the proofs (``sealog prune`` / ``AuditLog.prune``) in every store (memory, SQLite,
PostgreSQL): after a prune, ``verify`` passes from the recorded cut, inclusion and consistency proofs and
old checkpoints still verify, the prune is an event in the chain, tampering is still caught, a crash
midway changes nothing (the append-only trigger stays), and the command's edge cases exit as the contract says.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import rfc8785
from click.testing import CliRunner, Result

from sealog import AuditLog, Event, InvalidQuery, _prune
from sealog._checkpoints import Checkpoints, check_store
from sealog._cli import main
from sealog._event import CONTENT_FIELDS
from sealog._merkle import verify_consistency, verify_inclusion
from sealog._note import Signer, Verifier, generate_key, open_checkpoint
from sealog._prune import PRUNE_ACTION, PruneRefused, PruneTampered, prune
from sealog.stores import open_store
from sealog.stores.base import NotInLog, TreeStore
from sealog.testing import MemoryStore

OLD, NEW = 600, 100
"""Events that occurred in 2020 (pruned) and in 2027 (kept): the cut (600) is not a multiple of 256."""
BEFORE = "2021-01-01T00:00:00.000000Z"


def make_events(tenant: str, start: int, count: int, year: int) -> list[Event]:
    return [Event(event_id=f"{tenant}-{year}-{i:06d}", tenant_id=tenant, action="tool.call", actor_type="agent",
                  actor_id=f"a-{i % 7}", occurred_at=f"{year}-01-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:"
                  f"{i // 60 % 60:02d}:{i % 60:02d}.000000Z", metadata={"i": i, "ü": "☃"},
                  before=None if i % 2 else {"v": i}) for i in range(start, start + count)]


def leaf(e: Event) -> bytes:
    """An auditor's leaf hash: RFC 6962 over the RFC 8785 bytes of the content fields."""
    return hashlib.sha256(b"\x00" + rfc8785.dumps({name: getattr(e, name) for name in CONTENT_FIELDS})).digest()


def mth(leaves: list[bytes]) -> bytes:
    if len(leaves) <= 1:
        return leaves[0] if leaves else hashlib.sha256(b"").digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url_of(kind: str, request: pytest.FixtureRequest) -> str:
    return "memory://" if kind == "memory" else str(request.getfixturevalue("db_url" if kind == "sqlite" else "pg_url"))


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest) -> Iterator[TreeStore]:
    opened = MemoryStore() if kind == "memory" else open_store(url_of(kind, request))
    assert isinstance(opened, TreeStore)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def keys() -> tuple[Checkpoints, Verifier]:
    signer, verifier = generate_key("prune-test")
    return Checkpoints(signer=Signer.from_text(signer)), Verifier.from_text(verifier)


def fill(store: TreeStore) -> list[Event]:
    """700 acme events (600 old, 100 new) with globex's between them; returns acme's."""
    acme = make_events("acme", 0, OLD, 2020) + make_events("acme", OLD, NEW, 2027)
    for start in range(0, len(acme), 150):
        store.write(acme[start: start + 150] + make_events("globex", start, 3, 2020))
    return acme


def chain_of(store: TreeStore, tenant: str = "acme") -> list[Event]:
    return list(store.iter_events(tenant))


def trigger_blocks_delete(kind: str, url: str) -> bool:
    """Whether the database itself still refuses to delete an event (as the owner)."""
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute("DELETE FROM events WHERE seq = 1")
        except sqlite3.IntegrityError:
            return True
        finally:
            conn.close()
        return False
    with psycopg.connect(url) as pg:
        try:
            pg.execute("DELETE FROM sealog_events WHERE seq = 1")
        except psycopg.errors.InsufficientPrivilege:
            return True
        return False


# -- the prune itself ------------------------------------------------------------------------------


def test_prune_removes_the_old_prefix_records_the_event_and_verify_passes(store: TreeStore) -> None:
    """Events before WHEN go, globex is untouched, a sealog.prune event (range, count, before) ends the chain."""
    acme = fill(store)
    result = prune(store, "acme", BEFORE)
    assert (result.from_seq, result.to_seq, result.count) == (1, OLD, OLD)
    kept = chain_of(store)
    assert [e.event_id for e in kept[:-1]] == [e.event_id for e in acme[OLD:]]
    assert store.get("acme", acme[0].event_id) is None
    last = kept[-1]
    assert (last.action, last.event_id, last.seq) == (PRUNE_ACTION, result.event_id, OLD + NEW + 1)
    assert last.metadata == {"before": BEFORE, "from_seq": 1, "to_seq": OLD, "count": OLD,
                             "cut_hash": kept[0].prev_hash}
    report = store.verify()
    assert report.ok, report.problems
    assert report.checked == NEW + 1 + len(chain_of(store, "globex"))
    assert len(chain_of(store, "globex")) == 15
    assert [h for _, h in store.leaves("acme", OLD + NEW)] == [leaf(e) for e in acme]


def test_log_prune_signs_so_every_pruned_event_is_under_a_checkpoint(tmp_path: Path) -> None:
    """AuditLog.prune with a signing key: a checkpoint covering the range first, one covering the prune event after."""
    signer, _ = generate_key("prune-test")
    (tmp_path / "key").write_text(signer)
    store = MemoryStore()
    fill(store)
    with AuditLog(store=store, spool_dir=tmp_path / "spool", signing_key=tmp_path / "key",
                  checkpoint_every=3600) as log:
        result = log.prune("acme", BEFORE)
        assert result.count == OLD
        latest = store.latest_checkpoint("acme")
        assert latest is not None
        assert latest.tree_size == OLD + NEW + 1
        assert log.verify("acme").ok


def test_proofs_and_old_checkpoints_hold_after_prunes(store: TreeStore, keys: tuple[Checkpoints, Verifier]) -> None:
    """Checkpoints signed before (sizes 100, 700) and after two prunes: roots, inclusion of kept events,
    consistency old -> new, and verify --checkpoint's check all still hold."""
    policy, verifier = keys
    acme = fill(store)
    early = store.tree_root("acme", 100)
    policy.sign(store, "acme")
    before = open_checkpoint(policy.checkpoint(store, "acme"), [verifier])
    prune(store, "acme", "2020-01-01T00:05:00Z", policy)  # 300 events: the first cut, inside a tile
    prune(store, "acme", BEFORE, policy)  # the rest of 2020: anchored on the first cut
    after = open_checkpoint(policy.checkpoint(store, "acme"), [verifier])
    assert (before.size, after.size) == (OLD + NEW, OLD + NEW + 2)
    assert store.verify("acme").ok
    leaves = [h for _, h in store.leaves("acme", after.size)]
    assert leaves[:OLD + NEW] == [leaf(e) for e in acme]
    assert store.tree_root("acme", 100) == early == mth(leaves[:100])
    assert after.root == mth(leaves)
    for checkpoint in (before, after):
        assert check_store(store, "acme", checkpoint) == []
        for event in (acme[OLD], acme[-1]):
            proof = store.inclusion_proof("acme", event.event_id, checkpoint.size)
            verify_inclusion(leaf(event), proof.leaf_index, checkpoint.size, proof.hashes, checkpoint.root)
    for first, root in ((100, early), (300, mth(leaves[:300])), (before.size, before.root)):
        verify_consistency(first, after.size, store.consistency_proof("acme", first, after.size), root, after.root)
    with pytest.raises(NotInLog):
        store.inclusion_proof("acme", acme[0].event_id, after.size)


def test_pruning_nothing_changes_nothing(store: TreeStore) -> None:
    """A WHEN older than every event: count 0, no prune event, the tree as it was."""
    fill(store)
    result = prune(store, "acme", "2019-01-01T00:00:00Z")
    assert result.count == 0
    assert result.event_id is None
    assert store.tree_size("acme") == OLD + NEW
    assert "nothing to prune" in str(result)


def test_pruning_everything_but_the_head(store: TreeStore) -> None:
    """A WHEN in the future removes all but the head, which anchors the chain and still proves."""
    acme = fill(store)
    result = prune(store, "acme", "2999-01-01T00:00:00Z")
    assert (result.from_seq, result.to_seq) == (1, OLD + NEW - 1)
    assert [e.event_id for e in chain_of(store)][:1] == [acme[-1].event_id]
    assert store.verify("acme").ok
    size = store.tree_size("acme")
    proof = store.inclusion_proof("acme", acme[-1].event_id, size)
    verify_inclusion(leaf(acme[-1]), OLD + NEW - 1, size, proof.hashes, store.tree_root("acme", size))
    assert prune(store, "acme", "2999-01-01T00:00:00Z").count == 1  # the old head; the prune event stays


def test_bad_when_and_tenant_are_input_errors(store: TreeStore) -> None:
    """A WHEN that is neither RFC 3339 nor a span, an empty tenant: InvalidQuery, nothing pruned."""
    fill(store)
    for tenant, when in (("acme", "yesterday"), ("acme", "2021-01-01"), ("", BEFORE)):
        with pytest.raises(InvalidQuery):
            prune(store, tenant, when)
    assert store.tree_size("acme") == OLD + NEW


def test_refuses_to_prune_past_the_latest_checkpoint_without_a_key(store: TreeStore,
                                                                  keys: tuple[Checkpoints, Verifier]) -> None:
    """With checkpoints but no key, events newer than the latest checkpoint are not pruned."""
    policy, _ = keys
    acme = fill(store)
    store.add_checkpoint("acme", 10, store.tree_root("acme", 10), "stand-in note\n")
    with pytest.raises(PruneRefused, match="covers 10 events"):
        prune(store, "acme", BEFORE)
    assert store.get("acme", acme[0].event_id) is not None
    assert prune(store, "acme", BEFORE, policy).count == OLD  # with the key: signs first, then prunes


# -- tampering and crashes -------------------------------------------------------------------------


def tamper(kind: str, store: TreeStore, url: str, statements: list[tuple[str, tuple[object, ...]]]) -> None:
    """Run statements as an attacker with the file or the owner's role, triggers out of the way."""
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("ALTER TABLE sealog_events DISABLE TRIGGER USER")
        for sql, params in statements:
            pg.execute(sql.replace("?", "%s").replace(" events", " sealog_events")
                       .replace("prune_cuts", "sealog_prune_cuts"), params)


@pytest.mark.parametrize("attack", ["edit", "drop-first-kept", "fake-cut"])
def test_tampering_after_a_prune_is_still_caught(kind: str, attack: str, request: pytest.FixtureRequest) -> None:
    """An edited kept event, a deleted first kept event, a forged cut hiding an edit: verify fails."""
    if kind == "memory":
        pytest.skip("an attacker edits a database")
    url = url_of(kind, request)
    store = open_store(url)
    assert isinstance(store, TreeStore)
    store.migrate()
    fill(store)
    prune(store, "acme", "2020-01-01T00:05:00Z")  # seq 1..300
    kept = chain_of(store)
    attacks: dict[str, list[tuple[str, tuple[object, ...]]]] = {
        "edit": [("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ? AND seq = ?", ("acme", 400))],
        "drop-first-kept": [("DELETE FROM events WHERE tenant_id = ? AND seq = ?", ("acme", 301))],
        "fake-cut": [("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ? AND seq = ?", ("acme", 350)),
                     ("INSERT INTO prune_cuts (tenant_id, seq, hash, first_seq, \"before\", pruned_at) "
                      "VALUES (?, ?, ?, ?, ?, ?)", ("acme", 360, kept[59].hash, 301, BEFORE, BEFORE))],
    }
    tamper(kind, store, url, attacks[attack])
    report = store.verify("acme")
    store.close()
    assert not report.ok
    kinds = {p.kind for p in report.problems}
    assert kinds == {"edit": {"hash"}, "drop-first-kept": {"seq", "prev_hash"}, "fake-cut": {"prune"}}[attack], \
        report.problems


@pytest.mark.parametrize("step", ["recorded", "deleted"])
def test_an_exception_midway_leaves_the_store_as_it_was(kind: str, step: str, store: TreeStore,
                                                        request: pytest.FixtureRequest,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the cut was written, or after the rows were deleted: all rolled back, trigger in place."""
    acme = fill(store)

    def crash(at: str) -> None:
        if at == step:
            raise RuntimeError(f"crash at {at}")

    monkeypatch.setattr(_prune, "on_step", crash)
    with pytest.raises(RuntimeError):
        prune(store, "acme", BEFORE)
    monkeypatch.setattr(_prune, "on_step", None)
    assert [e.event_id for e in chain_of(store)] == [e.event_id for e in acme]
    assert store.verify().ok
    if kind != "memory":
        assert trigger_blocks_delete(kind, url_of(kind, request))
    assert prune(store, "acme", BEFORE).count == OLD  # and it can be done again


def test_a_killed_prune_leaves_the_trigger_and_the_events(kind: str, store: TreeStore,
                                                          request: pytest.FixtureRequest) -> None:
    """A process killed (os._exit) with the rows deleted and the trigger off: the database rolls it all back."""
    if kind == "memory":
        pytest.skip("a killed process takes its memory store along")
    url = url_of(kind, request)
    acme = fill(store)
    script = textwrap.dedent(f"""
        import os
        from sealog import _prune
        from sealog.stores import open_store
        _prune.on_step = lambda step: os._exit(9) if step == "deleted" else None
        _prune.prune(open_store({url!r}), "acme", {BEFORE!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert trigger_blocks_delete(kind, url)
    assert [e.event_id for e in chain_of(store)] == [e.event_id for e in acme]
    assert store.verify().ok


def test_a_tampered_range_is_not_pruned(kind: str, request: pytest.FixtureRequest) -> None:
    """Pruning must not erase evidence: an edited event in the range stops the prune, nothing removed."""
    if kind == "memory":
        pytest.skip("an attacker edits a database")
    url = url_of(kind, request)
    store = open_store(url)
    assert isinstance(store, TreeStore)
    store.migrate()
    fill(store)
    tamper(kind, store, url, [("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ? AND seq = ?",
                               ("acme", 42))])
    with pytest.raises(PruneTampered, match="seq 42"):
        prune(store, "acme", BEFORE)
    assert store.tree_size("acme") == OLD + NEW
    assert len(chain_of(store)) == OLD + NEW
    store.close()


# -- PostgreSQL: the owner, partitions ---------------------------------------------------------------


def test_postgres_drops_the_monthly_partitions_a_prune_emptied(pg_url: str) -> None:
    """A month wholly before WHEN that no tenant has events in any more is dropped; later ones stay."""
    store = open_store(pg_url)
    assert isinstance(store, TreeStore)
    store.migrate()
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("CREATE TABLE sealog_events_2020_01 PARTITION OF sealog_events "
                   "FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00')")
    acme = make_events("acme", 0, 50, 2020) + make_events("acme", 50, 10, 2027)
    store.write(acme)
    result = prune(store, "acme", "2020-03-01T00:00:00Z")
    assert result.count == 50
    assert result.dropped_partitions == ("sealog_events_2020_01",)
    with psycopg.connect(pg_url) as pg:
        assert pg.execute("SELECT to_regclass('sealog_events_2020_01')").fetchone() == (None,)
    assert store.verify().ok
    store.close()


def test_postgres_prune_must_run_as_the_owner(pg_url: str, tmp_path: Path) -> None:
    """The writer role cannot prune: exit 2 and a message naming the owner; nothing removed."""
    assert run_cli("init", "--url", pg_url, "--create-roles", "--writer-password", "w-pass",
                   "--reader-password", "r-pass").exit_code == 0
    store = open_store(pg_url)
    assert isinstance(store, TreeStore)
    fill(store)
    writer_url = pg_url.replace("sealog_admin@", "sealog_writer:w-pass@")
    done = run_cli("prune", "--tenant", "acme", "--before", BEFORE, "--url", writer_url)
    assert done.exit_code == 2
    assert "owner" in done.output
    assert store.tree_size("acme") == OLD + NEW
    store.close()


# -- the command -------------------------------------------------------------------------------------


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_prune_then_verify_against_an_old_checkpoint(db_url: str, tmp_path: Path) -> None:
    """sealog prune prints what it did; sealog verify --checkpoint with a pre-prune checkpoint exits 0."""
    signer, verifier = generate_key("prune-test")
    (tmp_path / "key").write_text(signer)
    store = open_store(db_url)
    assert isinstance(store, TreeStore)
    store.migrate()
    fill(store)
    store.close()
    signed = run_cli("checkpoint", "--tenant", "acme", "--url", db_url, "--signing-key", str(tmp_path / "key"))
    assert signed.exit_code == 0, signed.output
    (tmp_path / "cp").write_text(signed.output)
    done = run_cli("prune", "--tenant", "acme", "--before", BEFORE, "--url", db_url)
    assert done.exit_code == 0, done.output
    assert "pruned 600 events (seq 1..600)" in done.output
    checked = run_cli("verify", "--url", db_url, "--checkpoint", str(tmp_path / "cp"), "--verifier-key", verifier)
    assert checked.exit_code == 0, checked.output
    assert "checkpoint sealog/acme (size 700): ok" in checked.output
    again = run_cli("prune", "--tenant", "acme", "--before", BEFORE, "--url", db_url)
    assert again.exit_code == 0
    assert "nothing to prune" in again.output


@pytest.mark.parametrize("when", ["yesterday", "12x", "2021-13-01T00:00:00Z"])
def test_cli_bad_when_exits_2(db_url: str, when: str) -> None:
    """A WHEN that is not RFC 3339 or a span: exit 2 with a one-line message."""
    assert run_cli("init", "--url", db_url).exit_code == 0
    done = run_cli("prune", "--tenant", "acme", "--before", when, "--url", db_url)
    assert done.exit_code == 2
    assert done.output.startswith("sealog: before:")
    assert done.output.count("\n") == 1


def test_cli_refusal_exits_2(db_url: str) -> None:
    """Checkpoints exist but the latest does not cover the range and no key is given: exit 2, nothing pruned."""
    store = open_store(db_url)
    assert isinstance(store, TreeStore)
    store.migrate()
    fill(store)
    store.add_checkpoint("acme", 10, store.tree_root("acme", 10), "stand-in note\n")
    store.close()
    done = run_cli("prune", "--tenant", "acme", "--before", BEFORE, "--url", db_url)
    assert done.exit_code == 2
    assert "sign one first" in done.output
