"""Outage or bad row, end to end: a store that cannot take writes keeps every event in the spool.

An unmigrated database, a read-only PostgreSQL (what a failover looks like), a role without
INSERT and a wrong password are outages: nothing quarantined, ``flush()`` False, the cause in
``stats()``, and after the fix each event stored once. Only an event the store refused while
its siblings were stored goes to quarantine, and ``sealog requeue`` delivers it later.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Literal

import psycopg
import pytest
from psycopg import sql

from sealog import AuditLog, Event, StoreUnavailable
from sealog.stores import open_store

from ..fixtures.pgserver import PgServer

pytestmark = pytest.mark.allow_sealog_errors  # an outage is logged (once per cause) by design

TRIGGER = ("CREATE TRIGGER reject_bad BEFORE INSERT ON events WHEN NEW.action = 'bad.event' "
           "BEGIN SELECT RAISE(ABORT, 'rejected by test'); END;")


def sealog_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealog", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def stored(url: str, tenant: str = "acme") -> Counter[str]:
    store = open_store(url)
    try:
        return Counter(e.event_id for e in store.iter_events(tenant))
    finally:
        store.close()


def emit(log: AuditLog, count: int = 100, action: str = "test.outage") -> list[str]:
    return [log.emit(tenant_id="acme", action=action, actor=("user", f"u-{i}"), metadata={"i": i})
            for i in range(count)]


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """The superuser's session, writable even while the database defaults to read-only."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET default_transaction_read_only = off")
    return conn


def event() -> Event:
    return Event(event_id=str(uuid.uuid4()), tenant_id="acme", action="auth.login",
                 occurred_at="2026-12-01T10:00:00.000000Z")


def assert_kept_in_spool(log: AuditLog, spool: Path, *causes: str) -> None:
    """The outage contract while the store is down: not flushed, nothing quarantined, the cause shown."""
    assert not log.flush(timeout=3)
    deadline = time.monotonic() + 20  # a connection attempt may take its own timeout to fail
    while log.stats()["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = log.stats()
    assert stats["quarantined"] == 0, stats
    assert not (spool / "quarantine.jsonl").exists() or (spool / "quarantine.jsonl").stat().st_size == 0
    assert stats["last_error"], stats
    assert any(cause in stats["last_error"].lower() for cause in causes), stats["last_error"]


def assert_all_stored_once(log: AuditLog, url: str, ids: list[str]) -> None:
    assert log.flush(timeout=30), log.stats()
    assert stored(url) == Counter(ids)
    assert max(stored(url).values()) == 1
    assert log.stats()["quarantined"] == 0


def unmigrated_url(kind: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if kind == "sqlite" else "pg_url"))


# -- unmigrated ----------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["thread", "process"])
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_unmigrated_store_keeps_events_until_init(kind: str, writer: Literal["thread", "process"],
                                                  request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    """migrate=False on an empty database: 100 emits stay in the spool; after `sealog init` each is stored once."""
    url = unmigrated_url(kind, request)
    spool = tmp_path / "spool"
    with AuditLog(url, spool_dir=spool, migrate=False, writer=writer) as log:
        ids = emit(log)
        assert_kept_in_spool(log, spool, "no such table", "does not exist", "migrat", "init")
        done = sealog_cli("init", "--url", url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert_all_stored_once(log, url, ids)
    assert not (spool / "quarantine.jsonl").exists() or (spool / "quarantine.jsonl").stat().st_size == 0


# -- PostgreSQL: read-only, no INSERT, wrong password ----------------------------------


def test_read_only_database_is_an_outage_for_the_store(pg_url: str) -> None:
    """default_transaction_read_only = on (a failover to a standby): write raises StoreUnavailable."""
    store = open_store(pg_url)
    store.migrate()
    store.close()
    with admin(pg_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on")
                     .format(sql.Identifier(database_name(pg_url))))
    store = open_store(pg_url)
    try:
        with pytest.raises(StoreUnavailable):
            store.write([event()])
    finally:
        store.close()


def test_read_only_database_keeps_events_until_writable(pg_url: str, tmp_path: Path) -> None:
    """Read-only PostgreSQL under the process writer: kept in the spool; RESET and reconnect: each stored once."""
    store = open_store(pg_url)
    store.migrate()
    store.close()
    name = sql.Identifier(database_name(pg_url))
    with admin(pg_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(name))
    spool = tmp_path / "spool"
    with AuditLog(pg_url, spool_dir=spool, migrate=False, writer="process") as log:
        ids = emit(log)
        assert_kept_in_spool(log, spool, "read-only", "read only")
        with admin(pg_url) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(name))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (database_name(pg_url),))
        assert_all_stored_once(log, pg_url, ids)


@pytest.fixture
def select_only_role(pg_url: str, pg_server: PgServer) -> tuple[str, str]:
    """(role, url): a login role that may SELECT sealog's tables but not INSERT; the tables exist."""
    store = open_store(pg_url)
    store.migrate()
    store.close()
    role = f"ro_{uuid.uuid4().hex[:10]}"
    with admin(pg_url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    return role, pg_server.url(database_name(pg_url), user=role)


def grant_writes(pg_url: str, role: str) -> None:
    """What a writer needs, whatever tables the schema has: INSERT, and UPDATE (chain heads move)."""
    with admin(pg_url) as conn:
        conn.execute(sql.SQL("GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(role)))


def test_role_without_insert_is_an_outage_for_the_store(pg_url: str, select_only_role: tuple[str, str]) -> None:
    """A permission error is the database's configuration, not the event's fault: StoreUnavailable."""
    role, url = select_only_role
    store = open_store(url)
    try:
        with pytest.raises(StoreUnavailable):
            store.write([event()])
        grant_writes(pg_url, role)
        assert store.write([event()]) == 1
    finally:
        store.close()


def test_role_without_insert_keeps_events_until_granted(pg_url: str, select_only_role: tuple[str, str],
                                                        tmp_path: Path) -> None:
    """Thread writer as a SELECT-only role: kept in the spool; after GRANT each event is stored once."""
    role, url = select_only_role
    spool = tmp_path / "spool"
    with AuditLog(url, spool_dir=spool, migrate=False, writer="thread") as log:
        ids = emit(log)
        assert_kept_in_spool(log, spool, "permission denied", "privilege")
        grant_writes(pg_url, role)
        assert_all_stored_once(log, pg_url, ids)


@pytest.fixture
def password_role(pg_url: str, pg_server: PgServer) -> tuple[str, str]:
    """(role, url): a writer role that must log in with a password (the session server trusts
    loopback, so a role-specific scram line goes first in pg_hba.conf); its URL holds 'right-pw'
    while the role's password is 'old-pw'."""
    store = open_store(pg_url)
    store.migrate()
    store.close()
    role = f"pw_{uuid.uuid4().hex[:10]}"
    hba = pg_server.data / "pg_hba.conf"
    rules = hba.read_text()
    with hba.open("r+") as file:  # in place: the file keeps its owner (the server's user)
        file.write(f"host all {role} 127.0.0.1/32 scram-sha-256\n{rules}")
    with admin(pg_url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'old-pw'").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute("SELECT pg_reload_conf()")
    grant_writes(pg_url, role)
    url = pg_server.url(database_name(pg_url), user=role, password="right-pw")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url).close()  # the rule is in force: a wrong password is refused
    return role, url


@pytest.mark.slow  # a refused login costs the pool's connection timeout
def test_wrong_password_is_an_outage_for_the_store(pg_url: str, password_role: tuple[str, str]) -> None:
    """Authentication failure is the configuration's fault, not the event's: StoreUnavailable."""
    _, url = password_role
    store = open_store(url)
    try:
        with pytest.raises(StoreUnavailable):
            store.write([event()])
    finally:
        store.close()


@pytest.mark.slow  # a refused login costs the pool's connection timeout
def test_wrong_password_keeps_events_until_the_password_is_fixed(pg_url: str, password_role: tuple[str, str],
                                                                 tmp_path: Path) -> None:
    """Thread writer with a wrong password: kept in the spool; after ALTER ROLE ... PASSWORD each stored once."""
    role, url = password_role
    spool = tmp_path / "spool"
    with AuditLog(url, spool_dir=spool, migrate=False, writer="thread") as log:
        ids = emit(log)
        assert_kept_in_spool(log, spool, "password", "authentication")
        with admin(pg_url) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD 'right-pw'").format(sql.Identifier(role)))
        assert_all_stored_once(log, pg_url, ids)


# -- rejected rows: quarantine and requeue (SQLite trigger) ----------------------------


def set_trigger(db_url: str, on: bool) -> None:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        conn.execute(TRIGGER if on else "DROP TRIGGER reject_bad")


def test_requeue_delivers_a_quarantined_event_once_the_cause_is_fixed(db_url: str, tmp_path: Path) -> None:
    """A bad event among good ones is quarantined alone; after the fix `sealog requeue` stores it once."""
    spool = tmp_path / "spool"
    quarantine = spool / "quarantine.jsonl"
    with AuditLog(db_url, spool_dir=spool, writer="thread") as log:
        assert log.flush(10)
        set_trigger(db_url, on=True)
        good = emit(log, 5)
        bad = log.emit(tenant_id="acme", action="bad.event", metadata={"why": "trigger"})
        good += emit(log, 5)
        assert log.flush(10), log.stats()
        assert log.stats()["quarantined"] == 1
    assert stored(db_url) == Counter(good)
    text = quarantine.read_text()
    assert bad in text
    assert not any(eid in text for eid in good)
    set_trigger(db_url, on=False)
    done = sealog_cli("requeue", "--url", db_url, "--spool-dir", str(spool), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stored(db_url) == Counter([*good, bad])
    assert not quarantine.exists() or quarantine.read_text() == ""
    again = sealog_cli("requeue", "--url", db_url, "--spool-dir", str(spool), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert stored(db_url) == Counter([*good, bad])
    store = open_store(db_url)
    try:
        assert store.verify().ok
    finally:
        store.close()


def test_requeue_keeps_what_the_store_still_rejects(db_url: str, tmp_path: Path) -> None:
    """`sealog requeue` before the fix stores nothing and keeps the quarantined event for next time."""
    spool = tmp_path / "spool"
    quarantine = spool / "quarantine.jsonl"
    with AuditLog(db_url, spool_dir=spool, writer="thread") as log:
        assert log.flush(10)
        set_trigger(db_url, on=True)
        good = emit(log, 3)
        bad = log.emit(tenant_id="acme", action="bad.event")
        assert log.flush(10), log.stats()
    done = sealog_cli("requeue", "--url", db_url, "--spool-dir", str(spool), cwd=tmp_path)
    assert done.returncode not in (0, 2), done.stdout + done.stderr  # a failure, and not a usage error
    assert stored(db_url) == Counter(good)
    assert bad in quarantine.read_text()


def test_batch_of_only_rejected_events_stays_in_the_spool(db_url: str, tmp_path: Path) -> None:
    """Nothing stored beside the refused event proves it bad: not quarantined, flush False; stored after the fix."""
    spool = tmp_path / "spool"
    with AuditLog(db_url, spool_dir=spool, writer="thread") as log:
        assert log.flush(10)
        set_trigger(db_url, on=True)
        bad = log.emit(tenant_id="acme", action="bad.event")
        assert not log.flush(timeout=3)
        assert log.stats()["quarantined"] == 0
        assert not (spool / "quarantine.jsonl").exists() or bad not in (spool / "quarantine.jsonl").read_text()
        set_trigger(db_url, on=False)
        assert log.flush(timeout=30), log.stats()
    assert stored(db_url) == Counter([bad])
