"""The command line, run as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sealog.stores import migrations


def sealog(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealog", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert sealog("init", "--url", url, cwd=tmp_path).returncode == 0
    return url


def test_init_is_idempotent(tmp_path: Path, store: str) -> None:
    """A second init migrates nothing and succeeds; the migration is recorded once."""
    again = sealog("init", "--url", store, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM sealog_migrations")]
    assert sorted(versions) == sorted(set(versions)) == [m.version for m in migrations.load("sqlite")]


def test_emit_prints_the_id_once_stored_and_query_finds_it(tmp_path: Path, store: str) -> None:
    """emit exits 0 with the event_id; query --format jsonl returns it with the contract's fields."""
    done = sealog("emit", "--url", store, "--tenant", "acme", "--action", "auth.login",
                  "--actor", "user:u-1", "--target", "session:s-9", "--ip", "203.0.113.5",
                  "--metadata", '{"method": "password", "password": "hunter2"}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    event_id = done.stdout.strip()
    found = sealog("query", "--url", store, "--tenant", "acme", "--action", "auth.*",
                   "--since", "1h", "--format", "jsonl", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    event = json.loads(found.stdout.splitlines()[0])
    assert event["event_id"] == event_id
    assert (event["actor_type"], event["actor_id"]) == ("user", "u-1")
    assert (event["target_type"], event["target_id"]) == ("session", "s-9")
    assert event["ip_address"] == "203.0.113.5"
    assert event["metadata"] == {"method": "password", "password": "[REDACTED]"}
    assert event["seq"] == 1
    assert len(event["hash"]) == 64


def test_query_formats_and_filters(tmp_path: Path, store: str) -> None:
    """csv has a header and one row per event; table shows the actions; filters narrow."""
    for action, outcome in (("auth.login", "success"), ("auth.login", "failure"), ("data.export", "success")):
        assert sealog("emit", "--url", store, "--tenant", "acme", "--action", action,
                      "--outcome", outcome, cwd=tmp_path).returncode == 0
    rows = list(csv.DictReader(io.StringIO(sealog("query", "--url", store, "--tenant", "acme",
                                                  "--format", "csv", cwd=tmp_path).stdout)))
    assert [r["action"] for r in rows] == ["data.export", "auth.login", "auth.login"]
    failed = sealog("query", "--url", store, "--tenant", "acme", "--outcome", "failure",
                    "--format", "jsonl", cwd=tmp_path).stdout.splitlines()
    assert [json.loads(line)["outcome"] for line in failed] == ["failure"]
    table = sealog("query", "--url", store, "--tenant", "acme", "--action", "data.#", "--format", "table",
                   cwd=tmp_path).stdout
    assert "data.export" in table
    assert "auth.login" not in table
    piped = sealog("query", "--url", store, "--tenant", "acme", cwd=tmp_path).stdout  # no --format, not a tty
    assert [json.loads(line)["action"] for line in piped.splitlines()] == ["data.export", "auth.login", "auth.login"]
    other = sealog("query", "--url", store, "--tenant", "globex", "--format", "jsonl", cwd=tmp_path)
    assert other.stdout == ""


def test_query_pages_with_the_printed_cursor(tmp_path: Path, store: str) -> None:
    """--limit pages; the cursor printed on stderr fetches the next page without overlap."""
    for _ in range(5):
        sealog("emit", "--url", store, "--tenant", "acme", "--action", "test.page", cwd=tmp_path)
    first = sealog("query", "--url", store, "--tenant", "acme", "--limit", "3", "--format", "jsonl", cwd=tmp_path)
    cursor = first.stderr.split("--after ")[1].strip()
    second = sealog("query", "--url", store, "--tenant", "acme", "--limit", "3", "--after", cursor,
                    "--format", "jsonl", cwd=tmp_path)
    seqs = [json.loads(x)["seq"] for x in first.stdout.splitlines() + second.stdout.splitlines()]
    assert seqs == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["emit", "--tenant", "acme", "--action", "Not An Action"], "action"),
        (["emit", "--tenant", "acme", "--action", "a.b", "--outcome", "maybe"], "outcome"),
        (["emit", "--tenant", "acme", "--action", "a.b", "--metadata", "{oops"], "metadata"),
        (["emit", "--tenant", "acme", "--action", "a.b", "--metadata", "[1]"], "metadata"),
        (["emit", "--tenant", "acme", "--action", "a.b", "--actor", "nocolon"], "--actor"),
        (["emit", "--tenant", "acme", "--action", "a.b", "--ip", "999.1.1.1"], "ip_address"),
        (["query", "--tenant", "acme", "--since", "yesterday"], "since"),
        (["query", "--tenant", "acme", "--action", "Auth.*"], "pattern"),
        (["query", "--tenant", "acme", "--after", "!!!"], "cursor"),
        (["query", "--tenant", "acme", "--limit", "0"], "limit"),
        (["query"], "--tenant"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, store: str, args: list[str], needle: str) -> None:
    """Bad input: exit 2 and a single stderr line that names the problem."""
    done = sealog(*args, "--url", store, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_store_exits_3(tmp_path: Path) -> None:
    """A store that cannot be opened: exit 3 (and emit keeps the event in the spool)."""
    import os

    url = f"sqlite:///{tmp_path / 'nowhere' / 'audit.db'}"
    query = sealog("query", "--url", url, "--tenant", "acme", cwd=tmp_path)
    assert query.returncode == 3
    # The default spool sits beside the database and would create its directory.
    env = {**os.environ, "SEALOG_SPOOL_DIR": str(tmp_path / "spool")}
    emit = sealog("emit", "--url", url, "--tenant", "acme", "--action", "a.b", "--timeout", "0.5",
                  cwd=tmp_path, env=env)
    assert emit.returncode == 3
    assert "spool" in emit.stderr
    assert sealog("verify", "--url", url, cwd=tmp_path).returncode == 3


def test_verify_exits_1_and_names_the_tampered_event(tmp_path: Path, store: str) -> None:
    """After an attacker edits a row (triggers dropped), verify prints tenant and seq and exits 1."""
    for _ in range(3):
        sealog("emit", "--url", store, "--tenant", "acme", "--action", "test.v", cwd=tmp_path)
    assert sealog("verify", "--url", store, cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET actor_id = 'mallory' WHERE seq = 2")
    done = sealog("verify", "--url", store, "--tenant", "acme", cwd=tmp_path)
    assert done.returncode == 1
    assert "'acme' seq 2" in done.stdout


def test_export_streams_the_whole_chain(tmp_path: Path, store: str) -> None:
    """export -o writes every event in chain order; csv has the contract's header."""
    for _ in range(4):
        sealog("emit", "--url", store, "--tenant", "acme", "--action", "test.x", cwd=tmp_path)
    out = tmp_path / "acme.jsonl"
    assert sealog("export", "--url", store, "--tenant", "acme", "-o", str(out), cwd=tmp_path).returncode == 0
    assert [json.loads(x)["seq"] for x in out.read_text().splitlines()] == [1, 2, 3, 4]
    as_csv = sealog("export", "--url", store, "--tenant", "acme", "--format", "csv", cwd=tmp_path).stdout
    assert as_csv.splitlines()[0].startswith("event_id,tenant_id,action")
    assert len(as_csv.splitlines()) == 5


def test_stats_and_tail(tmp_path: Path, store: str) -> None:
    """stats counts per tenant and shows consumers' health; tail --from-start prints the chain."""
    for tenant in ("acme", "acme", "globex"):
        sealog("emit", "--url", store, "--tenant", tenant, "--action", "test.s", cwd=tmp_path)
    (tmp_path / "audit.db.spool" / "consume-audit.json").write_text('{"queue": "audit", "state": "consuming"}')
    report = json.loads(sealog("stats", "--url", store, "--json", cwd=tmp_path).stdout)
    assert {t["tenant_id"]: t["events"] for t in report["tenants"]} == {"acme": 2, "globex": 1}
    assert report["spool"]["bytes"] == 0
    assert report["consumers"] == [{"queue": "audit", "state": "consuming"}]  # a consumer's health record
    tailed = sealog("tail", "--url", store, "--tenant", "acme", "--from-start", "--timeout", "1", cwd=tmp_path)
    assert [json.loads(x)["seq"] for x in tailed.stdout.splitlines()] == [1, 2]


def test_url_from_environment_and_default(tmp_path: Path) -> None:
    """SEALOG_URL is used when --url is absent; without either, ./sealog.db."""
    import os

    env = {**os.environ, "SEALOG_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    assert sealog("init", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "env.db").exists()
    plain = {k: v for k, v in os.environ.items() if k != "SEALOG_URL"}
    assert sealog("init", cwd=tmp_path, env=plain).returncode == 0
    assert (tmp_path / "sealog.db").exists()


def test_demo_records_verifies_and_shows(tmp_path: Path) -> None:
    """The main job until the service: a burst of events, stored, verified ok, shown."""
    done = sealog("demo", "--events", "200", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "verify: 200 events in 2 chains, ok" in done.stdout
    assert "content.publish" in done.stdout
