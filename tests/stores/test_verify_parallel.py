"""Tenants verified in worker processes report exactly what a serial run reports, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from uuid_utils import uuid7

from sealog import _timefmt as timefmt
from sealog._chain import VerifyReport
from sealog._cli import main
from sealog._event import Event
from sealog.stores import open_store

TENANTS = ("acme", "globex", "initech", "umbrella", "wayne")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    found = str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))
    store = open_store(found)
    try:
        store.migrate()
        store.write([Event(event_id=str(uuid7()), tenant_id=tenant, action="test.parallel", occurred_at=timefmt.now(),
                           actor_id=f"u-{i}", latency_ms=i / 8, metadata={"i": i})
                     for i in range(60) for tenant in TENANTS])
    finally:
        store.close()
    return found


def attack(url: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run statements with the append-only triggers out of the way (SQLite table names)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("DROP TRIGGER IF EXISTS events_no_update")
            conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
            for sql, params in statements:
                conn.execute(sql, params)
        finally:
            conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("ALTER TABLE sealog_events DISABLE TRIGGER USER")
        for sql, params in statements:
            pg.execute(re.sub(r"\b(events|chain_heads)\b", r"sealog_\1", sql.replace("?", "%s")), params)


def verify(url: str, **kw: Any) -> VerifyReport:
    store = open_store(url)
    try:
        return store.verify(**kw)
    finally:
        store.close()


def summary(report: VerifyReport) -> tuple[Any, ...]:
    return report.checked, report.tenants, report.problem_count, [str(p) for p in report.problems]


def test_parallel_reports_the_same_problems_as_serial_on_several_tampered_tenants(url: str) -> None:
    attack(url,
           ("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ? AND seq = ?", ("acme", 7)),
           ("UPDATE events SET metadata = '{\"i\":99}' WHERE tenant_id = ? AND seq = ?", ("acme", 41)),
           ("DELETE FROM events WHERE tenant_id = ? AND seq = ?", ("globex", 30)),
           ("UPDATE chain_heads SET seq = 99 WHERE tenant_id = ?", ("initech",)),
           ("UPDATE events SET latency_ms = 1e6 WHERE tenant_id = ? AND seq = ?", ("wayne", 60)))
    serial = verify(url, jobs=1)
    assert {(p.tenant_id, p.seq, p.kind) for p in serial.problems} == {
        ("acme", 7, "hash"), ("acme", 41, "hash"), ("globex", 31, "seq"), ("globex", 31, "prev_hash"),
        ("initech", 99, "head"), ("wayne", 60, "hash")}
    for jobs in (2, 4):
        assert summary(verify(url, jobs=jobs)) == summary(serial)
    assert summary(verify(url, jobs=3, incremental=True)) == summary(serial)  # no remembered position yet


def test_parallel_incremental_run_remembers_each_clean_tenant(url: str) -> None:
    first = verify(url, jobs=3, incremental=True)
    assert (first.ok, first.checked, first.tenants) == (True, 300, 5)
    attack(url, ("UPDATE events SET actor_id = 'mallory' WHERE tenant_id = ? AND seq = ?", ("umbrella", 3)))
    store = open_store(url)
    try:
        store.write([Event(event_id=str(uuid7()), tenant_id=t, action="test.parallel", occurred_at=timefmt.now())
                     for t in TENANTS])
    finally:
        store.close()
    again = verify(url, jobs=3, incremental=True, sample=60)
    # umbrella's 60 events lie in its tree's last, partial tile, re-hashed from the events: the incremental run
    # sees that the remembered root no longer holds, and re-checks that tenant in full to name the event
    assert [(p.tenant_id, p.seq, p.kind) for p in again.problems] == [("umbrella", 60, "tree"), ("umbrella", 3, "hash")]
    assert (again.checked, again.earlier, again.sampled) == (4 + 61, 240, 300)


def test_cli_jobs_gives_the_same_output_as_one_process(url: str) -> None:
    attack(url, ("UPDATE events SET outcome = 'failure' WHERE tenant_id = ? AND seq = ?", ("globex", 12)))
    runner = CliRunner()
    one = runner.invoke(main, ["verify", "--url", url, "--full", "--jobs", "1"], catch_exceptions=False)
    many = runner.invoke(main, ["verify", "--url", url, "--full", "--jobs", "2"], catch_exceptions=False)
    assert one.exit_code == many.exit_code == 1
    assert one.stdout == many.stdout
    assert "tenant 'globex' seq 12: hash: content does not match its hash" in many.stdout
