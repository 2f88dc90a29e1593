"""The PostgreSQL store against a real server: sealing, append-only, roles, outages, plans."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from sealog import AuditLog
from sealog.stores import migrations
from sealog.stores.postgres import PostgresStore

from ..children import read_ids, start_emitter
from ..fixtures.pgserver import remove_server, start_server


def sealog_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealog", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def stored(url: str, tenant: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        return Counter(r[0] for r in conn.execute("SELECT event_id FROM sealog_events WHERE tenant_id = %s",
                                                  (tenant,)))


def seqs(url: str, tenant: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM sealog_events WHERE tenant_id = %s ORDER BY seq",
                                           (tenant,))]


def test_roundtrip_through_the_api(pg_url: str, tmp_path: Path) -> None:
    """Every field survives the trip (floats, nested JSON, unicode, IPv6); chains verify."""
    with AuditLog(pg_url, spool_dir=tmp_path / "spool") as log:
        event_id = log.emit(tenant_id="acme", action="settings.change", actor=("user", "u-1"),
                            ip_address="2001:db8::1", latency_ms=0.1, before={"ratio": 1e21, "é": "☃"},
                            after={"ratio": 2.5, "list": [1, None, True]}, proof={"type": "hash", "hash": "ab"},
                            metadata={"\ue000": 1, "😀": 2})
        for i in range(50):
            log.emit(tenant_id="globex" if i % 2 else "acme", action="test.rt", metadata={"i": i})
        assert log.flush(20)
        event = log.get("acme", event_id)
        assert event is not None
        assert event.before == {"ratio": 1e21, "é": "☃"}
        assert event.after == {"ratio": 2.5, "list": [1, None, True]}
        assert event.metadata == {"\ue000": 1, "😀": 2}
        assert (event.ip_address, event.latency_ms, event.seq) == ("2001:db8::1", 0.1, 1)
        assert event.occurred_at.endswith("Z")
        assert log.get("globex", event_id) is None
        report = log.verify()
        assert report.ok
        assert report.checked == 51


def test_roundtrip_through_the_cli(pg_url: str, tmp_path: Path) -> None:
    """sealog init, emit and query against a postgresql:// URL."""
    assert sealog_cli("init", "--url", pg_url, cwd=tmp_path).returncode == 0
    done = sealog_cli("emit", "--url", pg_url, "--tenant", "acme", "--action", "auth.login",
                      "--actor", "user:u-1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = sealog_cli("query", "--url", pg_url, "--tenant", "acme", "--action", "auth.#",
                       "--since", "1h", "--format", "jsonl", cwd=tmp_path)
    event = json.loads(found.stdout.splitlines()[0])
    assert event["event_id"] == done.stdout.strip()
    assert event["actor_id"] == "u-1"
    assert sealog_cli("verify", "--url", pg_url, cwd=tmp_path).returncode == 0


def test_replayed_batch_adds_no_row_and_consumes_no_seq(pg_url: str, tmp_path: Path) -> None:
    """A batch written twice (a lost commit acknowledgement) is stored once."""
    from sealog._event import Event

    store = PostgresStore(pg_url)
    try:
        store.migrate()
        batch = [Event(event_id=f"e-{i}", tenant_id="acme", action="test.replay",
                       occurred_at="2026-01-01T00:00:00.000000Z") for i in range(10)]
        assert store.write(batch) == 10
        newcomer = Event(event_id="e-new", tenant_id="acme", action="test.replay",
                         occurred_at="2026-01-01T00:00:00.000000Z")
        assert store.write([*batch[5:], newcomer]) == 1
        assert seqs(pg_url, "acme") == list(range(1, 12))
        assert store.verify().ok
    finally:
        store.close()


def test_writer_role_cannot_update_delete_or_truncate(pg_url: str, tmp_path: Path) -> None:
    """init --create-roles: the application's role inserts and reads, and nothing more."""
    done = sealog_cli("init", "--url", pg_url, "--create-roles", "--writer-password", "w-pass",
                      "--reader-password", "r-pass", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    writer_url = pg_url.replace("sealog_admin@", "sealog_writer:w-pass@")
    with AuditLog(writer_url, spool_dir=tmp_path / "spool") as log:
        log.emit(tenant_id="acme", action="test.role")
        assert log.flush(20)
    with psycopg.connect(writer_url, autocommit=True) as conn:
        for statement in ("UPDATE sealog_events SET actor_id = 'x'", "DELETE FROM sealog_events",
                          "TRUNCATE sealog_events", "DROP TABLE sealog_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM sealog_api_keys").fetchone() == (0,)  # serve checks keys
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO sealog_api_keys VALUES ('k', 'h', NULL, 'n', 't', NULL)")
    reader_url = pg_url.replace("sealog_admin@", "sealog_reader:r-pass@")
    with psycopg.connect(reader_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sealog_events").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO sealog_chain_heads VALUES ('x', 1, 'y')")


def test_trigger_stops_even_the_owner(pg_url: str, tmp_path: Path) -> None:
    """The superuser that owns the tables still cannot UPDATE, DELETE or TRUNCATE events."""
    with AuditLog(pg_url, spool_dir=tmp_path / "spool") as log:
        log.emit(tenant_id="acme", action="test.owner")
        assert log.flush(20)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        partition = conn.execute("SELECT tableoid::regclass::text FROM sealog_events").fetchone()
        assert partition is not None
        for statement in ("UPDATE sealog_events SET actor_id = 'x'", "DELETE FROM sealog_events",
                          "TRUNCATE sealog_events", f"TRUNCATE {partition[0]}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


def test_tampering_is_found_after_the_attacker_drops_the_trigger(pg_url: str, tmp_path: Path) -> None:
    """Verification re-hashes what PostgreSQL holds: an edited jsonb value is reported by seq."""
    with AuditLog(pg_url, spool_dir=tmp_path / "spool") as log:
        for i in range(5):
            log.emit(tenant_id="acme", action="test.tamper", metadata={"amount": i})
        assert log.flush(20)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE sealog_events DISABLE TRIGGER USER")
            conn.execute("UPDATE sealog_events SET metadata = '{\"amount\": 1000}' WHERE seq = 3")
        report = log.verify("acme")
        assert [(p.seq, p.kind) for p in report.problems] == [(3, "hash")]


def test_four_processes_extend_one_gap_free_chain(pg_url: str, tmp_path: Path) -> None:
    """Four emitting processes, one tenant: exact count, seq 1..N, verify ok."""
    PostgresStore(pg_url).migrate()
    children = [start_emitter(pg_url, tmp_path / "spool", "acme", count=250, threads=2) for _ in range(4)]
    returned: list[str] = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        returned += out.split()
    assert len(returned) == 2000
    assert set(stored(pg_url, "acme")) == set(returned)
    assert seqs(pg_url, "acme") == list(range(1, 2001))
    store = PostgresStore(pg_url)
    try:
        assert store.verify().ok
    finally:
        store.close()


def test_concurrent_init_from_two_processes(pg_url: str, tmp_path: Path) -> None:
    """Two `sealog init` at once: both succeed, each migration is applied once."""
    runs = [subprocess.Popen([sys.executable, "-m", "sealog", "init", "--url", pg_url], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
    with psycopg.connect(pg_url) as conn:
        steps = len(migrations.load("postgres"))
        assert conn.execute("SELECT count(*), count(DISTINCT version) FROM sealog_migrations").fetchone() == (steps, steps)


def test_tenant_action_time_query_uses_the_indexes(pg_url: str, tmp_path: Path) -> None:
    """EXPLAIN shows no sequential scan of the events for a tenant+action+time query."""
    from sealog._event import Event

    store = PostgresStore(pg_url)
    try:
        store.migrate()
        now = time.time()
        for batch in range(10):
            store.write([Event(event_id=f"{batch}-{i}", tenant_id=f"t{i % 20}", action=f"a.x{i % 7}",
                               occurred_at=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now - i)))
                         for i in range(2000)])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE sealog_events")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT * FROM sealog_events WHERE tenant_id = 't3' AND action = 'a.x3' "
                "AND occurred_at >= now() - interval '1 day' ORDER BY occurred_at DESC, seq DESC LIMIT 100"))
            # Empty partitions (months ahead) may show a zero-cost scan; no partition with rows may.
            scanned = re.findall(r"Seq Scan on (\S+)", plan)
            for partition in scanned:
                rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition)))
                assert rows.fetchone() == (0,), plan
        assert "Index Scan" in plan
    finally:
        store.close()


def test_the_store_never_jit_compiles_its_statements(pg_url: str) -> None:
    """JIT stays on for the server (its default), off on the store's connections: an export's first page
    over a big tenant paid ~45 ms of compiling for ~4 ms of index scan (bench_queries.py)."""
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("on",)
    store = PostgresStore(pg_url)
    try:
        store.migrate()
        assert store._fetch(sql.SQL("SHOW jit"), (), tuple) == [("off",)]
        assert store._fetch(sql.SQL("SHOW jit"), (), tuple) == [("off",)]  # and on a connection back from the pool
    finally:
        store.close()


@pytest.mark.allow_sealog_errors
def test_outage_while_a_child_emits_every_event_lands_once(tmp_path: Path) -> None:
    """Stop PostgreSQL for seconds under a steady stream, start it: each returned id stored once."""
    server = start_server()
    try:
        url = server.create_database("outage")
        PostgresStore(url).migrate()
        child = start_emitter(url, tmp_path / "spool", "acme", count=-1)
        returned = read_ids(child, 300)
        server.stop()
        returned += read_ids(child, 2000)  # emits go on while the store is down
        time.sleep(2)
        server.start()
        returned += read_ids(child, 300)
        child.terminate()  # SIGTERM: the child's atexit drains what it can
        assert child.stdout is not None
        rest = child.stdout.read()
        child.wait(timeout=60)
        returned += [line for line in rest.split("\n")[:-1] if line]
        with AuditLog(url, spool_dir=tmp_path / "spool") as log:  # delivers anything left behind
            assert log.flush(30)
        counts = stored(url, "acme")
        assert all(counts[eid] == 1 for eid in returned)
        assert seqs(url, "acme") == list(range(1, sum(counts.values()) + 1))
    finally:
        remove_server(server)
