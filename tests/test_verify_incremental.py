"""Incremental verification (`sealog verify`): only what is new is re-hashed, linked to the remembered position;
`--full` and `--sample` find what an incremental run cannot see; remembered positions are signed with a key.

Every case runs on SQLite and on a real PostgreSQL (tests/fixtures).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rfc8785
from click.testing import CliRunner, Result
from uuid_utils import uuid7

from sealog import _timefmt as timefmt
from sealog._canonical import SORTED_FIELDS, canonical_row
from sealog._cli import main
from sealog._event import Event
from sealog.stores import open_store
from sealog.stores._verify import SQLiteSnapshot, SQLiteSource

Execute = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]
SEAL = ("seq", "prev_hash", "hash", "recorded_at")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    found = str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))
    store = open_store(found)
    store.migrate()
    store.close()
    return found


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def verify(url: str, *args: str) -> Result:
    return cli("verify", "--url", url, *args)


def write(url: str, tenant: str, count: int, start: int = 0) -> None:
    store = open_store(url)
    try:
        store.write([Event(event_id=str(uuid7()), tenant_id=tenant, action="test.verify", occurred_at=timefmt.now(),
                           actor_type="user", actor_id=f"u-{i}", latency_ms=i / 4 if i % 3 else None,
                           metadata={"i": i, "ratio": i / 3}) for i in range(start, start + count)])
    finally:
        store.close()


def raw(url: str) -> Execute:
    """The attacker: one statement a call, append-only triggers out of the way, in SQLite's table names."""
    def run(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if url.startswith("sqlite"):
            conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                for trigger in ("events_no_update", "events_no_delete", "verified_no_update", "verified_no_delete"):
                    conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        with psycopg.connect(url, autocommit=True) as pg:
            for table in ("sealog_events", "sealog_verified"):
                pg.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            sql = re.sub(r"\b(events|chain_heads|tree_nodes|verified)\b", r"sealog_\1", sql.replace("?", "%s"))
            cursor = pg.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    return run


def tamper(url: str, tenant: str, seq: int) -> None:
    """Change one event's content, leaving its hash: the chain no longer verifies at that seq."""
    raw(url)("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ? AND seq = ?", (tenant, seq))


def rehash(url: str, tenant: str, changed_seq: int) -> None:
    """Change one old event and re-hash it and every later one, heads included (the tree rows stay)."""
    store = open_store(url)
    events = [e.to_dict() for e in store.iter_events(tenant)]
    store.close()
    events[changed_seq - 1]["metadata"] = {"rewritten": True}
    execute, prev = raw(url), bytes(32)
    for event in events:
        digest = hashlib.sha256(prev + rfc8785.dumps({k: v for k, v in event.items() if k not in SEAL})).digest()
        execute("UPDATE events SET metadata = ?, prev_hash = ?, hash = ? WHERE tenant_id = ? AND seq = ?",
                (json.dumps(event["metadata"], separators=(",", ":"), sort_keys=True), prev.hex(), digest.hex(),
                 tenant, event["seq"]))
        prev = digest
    execute("UPDATE chain_heads SET hash = ? WHERE tenant_id = ?", (prev.hex(), tenant))


def incremental(url: str, **kw: Any) -> Any:
    store = open_store(url)
    try:
        return store.verify(incremental=True, **kw)
    finally:
        store.close()


def problems(result: Result) -> set[str]:
    return {line for line in result.stdout.splitlines() if line.startswith("tenant ")}


# -- a healthy growing log ---------------------------------------------------------------------------


def test_healthy_growing_log_reports_nothing_and_rereads_only_new_events(url: str) -> None:
    write(url, "acme", 300)
    write(url, "globex", 20)
    first = verify(url)
    assert first.exit_code == 0, first.output
    assert "320 events in 2 chains: ok" in first.stdout
    write(url, "acme", 30, start=300)
    write(url, "globex", 5, start=20)
    second = verify(url)
    assert second.exit_code == 0, second.output
    assert "35 events in 2 chains: ok (320 verified earlier, not re-read)" in second.stdout
    third = verify(url)
    assert third.exit_code == 0, third.output
    assert "0 events in 2 chains: ok (355 verified earlier, not re-read)" in third.stdout
    full = verify(url, "--full")
    assert full.exit_code == 0, full.output
    assert "355 events in 2 chains: ok" in full.stdout


def test_python_api_keeps_a_full_verify_and_offers_incremental(url: str) -> None:
    write(url, "acme", 50)
    store = open_store(url)
    try:
        assert store.verify().checked == 50
        assert store.verify().checked == 50  # plain verify() is full and remembers nothing
        first = store.verify(incremental=True)
        assert (first.ok, first.checked, first.earlier) == (True, 50, 0)
    finally:
        store.close()
    write(url, "acme", 7, start=50)
    again = incremental(url)
    assert (again.ok, again.checked, again.earlier) == (True, 7, 50)


# -- what the incremental run sees, and what it needs --full and --sample for -------------------------


def test_incremental_run_finds_a_modification_after_the_last_verified_position(url: str) -> None:
    write(url, "acme", 40)
    assert verify(url).exit_code == 0
    write(url, "acme", 10, start=40)
    tamper(url, "acme", 45)
    result = verify(url)
    assert result.exit_code == 1, result.output
    assert problems(result) == {"tenant 'acme' seq 45: hash: content does not match its hash"}
    assert "10 events in 1 chains: FAILED (1 problems) (40 verified earlier, not re-read)" in result.stdout
    # nothing was remembered past the problem: the next run still starts at 40 and still finds it
    assert verify(url).exit_code == 1


def test_full_and_sample_find_an_old_modification_the_incremental_run_cannot_see(url: str) -> None:
    write(url, "acme", 300)  # seq 5 lies in a stored level-8 subtree: only a re-hash of it can tell
    write(url, "globex", 10)
    assert verify(url).exit_code == 0
    tamper(url, "acme", 5)
    assert verify(url).exit_code == 0  # the incremental run re-reads nothing older than what it verified
    full = verify(url, "--full")
    assert full.exit_code == 1, full.output
    assert problems(full) == {"tenant 'acme' seq 5: hash: content does not match its hash"}
    sampled = verify(url, "--sample", "300")
    assert sampled.exit_code == 1, sampled.output
    assert problems(sampled) == {"tenant 'acme' seq 5: hash: content does not match its hash"}
    assert "310 earlier events sampled" in sampled.stdout


def test_a_rehashed_chain_is_caught_at_the_remembered_position_and_by_samples(url: str) -> None:
    write(url, "acme", 300)
    assert verify(url).exit_code == 0
    rehash(url, "acme", changed_seq=5)
    for result in (verify(url), verify(url, "--full")):  # the chain alone is consistent again
        assert result.exit_code == 1, result.output
        assert any(re.fullmatch(r"tenant 'acme' seq 300: verified: its hash is not the one verified \S+: the chain "
                                r"was re-hashed", p) for p in problems(result)), result.output
    sampled = verify(url, "--full", "--sample", "300")
    assert problems(sampled) >= {"tenant 'acme' seq 1: sample: events 1..256 no longer give the Merkle tree of 300 "
                                 "events: one was changed and the chain re-hashed"}, sampled.output


def test_a_tail_cut_after_verification_is_found(url: str) -> None:
    write(url, "acme", 30)
    assert verify(url).exit_code == 0
    execute = raw(url)
    execute("DELETE FROM events WHERE tenant_id = ? AND seq > ?", ("acme", 25))
    [(digest,)] = execute("SELECT hash FROM events WHERE tenant_id = ? AND seq = ?", ("acme", 25))
    execute("UPDATE chain_heads SET seq = ?, hash = ? WHERE tenant_id = ?", (25, digest, "acme"))
    for result in (verify(url), verify(url, "--full")):  # the chain alone could not see it
        assert result.exit_code == 1, result.output
        assert "tenant 'acme' seq 30: verified: the event verified" in result.stdout
        assert "is gone: events were cut off" in result.stdout


# -- signed positions ------------------------------------------------------------------------------------


def test_with_a_key_only_signed_positions_are_trusted(url: str, tmp_path: Path) -> None:
    made = cli("keygen", "--name", "audit.example.com", "-o", str(tmp_path / "signer.key"))
    assert made.exit_code == 0, made.output
    key = str(tmp_path / "signer.key")
    write(url, "acme", 20)
    assert verify(url, "--signing-key", key).exit_code == 0
    write(url, "acme", 10, start=20)
    tamper(url, "acme", 25)
    # the attacker also forges a remembered position past the change, unsigned
    [(digest,)] = raw(url)("SELECT hash FROM events WHERE tenant_id = ? AND seq = 30", ("acme",))
    store = open_store(url)
    root = store.tree_root("acme", 30)  # type: ignore[attr-defined]
    store.close()
    raw(url)("INSERT INTO verified (tenant_id, seq, hash, tree_size, root, cut_seq, verified_at, note) "
             "VALUES (?, 30, ?, 30, ?, 0, '2099-01-01T00:00:00.000000Z', NULL)", ("acme", digest, root))
    assert verify(url).exit_code == 0  # without the key, a forged position is as good as a real one
    signed = verify(url, "--signing-key", key)
    assert signed.exit_code == 1, signed.output
    assert "tenant 'acme' seq 25: hash: content does not match its hash" in signed.stdout
    # a signed position whose row was changed is reported, not used
    raw(url)("UPDATE verified SET seq = 30 WHERE tenant_id = ? AND seq = 20", ("acme",))
    changed = verify(url, "--signing-key", key)
    assert changed.exit_code == 1
    assert "tenant 'acme' seq 30: verified: the position remembered" in changed.stdout


def test_bad_options_exit_2(url: str) -> None:
    assert verify(url, "--sample", "-1").exit_code == 2
    assert verify(url, "--jobs", "0").exit_code == 2


# -- the SQL-built canonical bytes (SQLite) ----------------------------------------------------------------


STRINGS = ['say "hi"', "back\\slash", "tab\there\nnew", "\x00\x01\x1f\x7f", "é€\u2028\U0001f600", "", "</script>"]


def test_sqlite_fast_path_gives_the_python_bytes_for_awkward_values(db_url: str) -> None:
    store = open_store(db_url)
    store.migrate()
    latencies = [0.1 + 0.2, 1e-7, 1e21, 5.0, 123456.789, 2**53 + 2.0, None]
    store.write([Event(event_id=f"e-{i}", tenant_id="acme", action="test.odd", occurred_at=timefmt.now(),
                       actor_id=text, user_agent=text[::-1], error_message=text * 3, latency_ms=latencies[i % 7],
                       metadata={text: text, "n": [1, 2.5, None]}, before={"x": text}, after=text)
                 for i, text in enumerate(STRINGS * 3)])
    assert store.verify().ok
    store.close()
    snap = SQLiteSource(db_url.removeprefix("sqlite:///")).snapshot()
    assert isinstance(snap, SQLiteSnapshot)
    try:
        fast = list(snap.rows("acme", 0))
        assert len(fast) == 21
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        columns = ", ".join(f'"{n}"' for n in SORTED_FIELDS)
        for seq, head, latency, tail, _, _ in fast:
            row = conn.execute(f"SELECT {columns} FROM events WHERE tenant_id = 'acme' AND seq = ?", (seq,)).fetchone()
            from sealog._canonical import number

            assert head + (b"null" if latency is None else number(latency)) + tail == canonical_row(row)
        conn.close()
    finally:
        snap.close()


def test_sqlite_blob_planted_in_a_text_column_is_reported_not_a_crash(db_url: str) -> None:
    open_store(db_url).migrate()
    write(db_url, "acme", 5)
    execute = raw(db_url)
    execute("UPDATE events SET actor_id = CAST('u-2' AS BLOB) WHERE tenant_id = 'acme' AND seq = 3", ())
    result = verify(db_url, "--full")
    assert result.exit_code == 1, result.output
    assert problems(result) == {"tenant 'acme' seq 3: hash: content does not match its hash"}


# -- verify-export: the fast checker judges every line as the reference does ------------------------------


def test_fast_export_check_matches_the_reference_on_good_and_bad_exports(db_url: str) -> None:
    from sealog import _output as output
    from sealog._checkpoints import check_export as reference
    from sealog._note import Checkpoint
    from sealog._verify_export import check_export as fast

    store = open_store(db_url)
    store.migrate()
    store.write([Event(event_id=f"e-{i}", tenant_id="acme", action="test.export", occurred_at=timefmt.now(),
                       actor_id=text, latency_ms=[None, 12.0, 0.1 + 0.2][i % 3], metadata={text: i, "f": i / 7},
                       before={"x": [text, None]} if i % 2 else None) for i, text in enumerate(STRINGS * 40)])
    lines = [output.jsonl_line(e) for e in store.iter_events("acme")]
    checkpoint = Checkpoint("sealog/acme", 200, store.tree_root("acme", 200))  # type: ignore[attr-defined]
    store.close()

    def edited(index: int, change: Callable[[dict[str, Any]], object]) -> list[bytes]:
        event = json.loads(lines[index])
        change(event)
        return [*lines[:index], json.dumps(event).encode() + b"\n", *lines[index + 1:]]

    variants = {
        "untouched": lines,
        "content changed": edited(5, lambda e: e.update(actor_id="mallory")),
        "latency as an integer": edited(1, lambda e: e.update(latency_ms=12)),
        "a string where null was": edited(4, lambda e: e.update(source="x")),
        "a number where a string was": edited(7, lambda e: e.update(actor_id=7)),
        "an extra field": edited(9, lambda e: e.update(extra=1)),
        "a field missing": edited(11, lambda e: e.pop("target_id")),
        "metadata keys reordered": edited(13, lambda e: e.update(metadata=dict(reversed(e["metadata"].items())))),
        "not JSON": [*lines[:3], b"{oops\n", *lines[4:]],
        "a line removed": lines[:50] + lines[51:],
        "cut short": lines[:150],
        "blank lines": [b"\n", *lines, b"  \n"],
        "hash not hex": edited(20, lambda e: e.update(hash="zz" * 32)),
        "hash in upper case": edited(21, lambda e: e.update(hash=e["hash"].upper())),
        "hash of another event": edited(22, lambda e: e.update(hash=json.loads(lines[30])["hash"])),
        "prev_hash changed": edited(23, lambda e: e.update(prev_hash="0" * 64)),
        "another tenant": edited(24, lambda e: e.update(tenant_id="globex")),
        "seq changed": edited(25, lambda e: e.update(seq=99)),
    }
    for name, variant in variants.items():
        want, got = reference(iter(variant), "acme", checkpoint), fast(iter(variant), "acme", checkpoint)
        assert (got.events, got.problem_count, got.problems) == (want.events, want.problem_count, want.problems), name
    assert not fast(iter(lines), "acme", checkpoint).problem_count
    assert fast(iter(variants["content changed"]), "acme", checkpoint).problem_count


# -- prunes ------------------------------------------------------------------------------------------------


def test_incremental_runs_across_prunes(url: str) -> None:
    from sealog._prune import prune

    store = open_store(url)
    try:
        store.write([Event(event_id=str(uuid7()), tenant_id="acme", action="test.prune",
                           occurred_at=f"2020-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z", metadata={"i": i})
                     for i in range(400)])
        first = store.verify(incremental=True)
        assert (first.ok, first.checked) == (True, 400)
        prune(store, "acme", "2020-01-01T00:05:00Z")  # seq 1..300 removed, a prune event appended: seq 401
        after = store.verify(incremental=True)
        assert (after.ok, after.checked, after.earlier) == (True, 1, 100), after.problems
        write(url, "acme", 20)
        assert store.verify(incremental=True, sample=50).ok
        prune(store, "acme", "2020-01-01T00:06:00Z")  # a second cut, below the remembered position
        again = store.verify(incremental=True)
        assert (again.ok, again.checked) == (True, 1), again.problems
        write(url, "acme", 20, start=500)
        prune(store, "acme", "2999-01-01T00:00:00Z")  # past the remembered position: it resumes at the cut
        past = store.verify(incremental=True)
        assert (past.ok, past.checked, past.earlier) == (True, 2, 0), past.problems
        assert store.verify().ok
    finally:
        store.close()
    assert verify(url, "--full").exit_code == 0
