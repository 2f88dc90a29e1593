"""HTTP ingest: `sealog serve` against the in-process path into the same store; workers; p99.

(a) SQLite: batches of 100 events POSTed over 4 keep-alive connections to `sealog serve
    --workers 1`, timed from the first request until every event is a stored, sealed row,
    against the same events emitted in-process (`AuditLog.emit` in a loop, then `flush()`)
    into the same kind of store (a fresh file each). Alternating rounds; the figure is the
    median of the per-round ratios. Bar: >= 0.8.
(b) PostgreSQL (a throwaway server, fsync on): the same load over 8 connections in 4 tenants
    against `--workers 1`, `2` and `4` (a fresh database each, alternating rounds), beside
    the in-process path; events/s to stored rows and each against `--workers 1`.
(c) Single-event POST latency under 50 concurrent keep-alive connections (wrk, 2 threads,
    --latency; apt-get install wrk): p50 and p99 for `--workers 1` and `--workers 2` on SQLite
    and on PostgreSQL, with the rate answered (202) and the rate to stored rows (from the first
    request until the last event is a row).

The load generator (http.client threads; wrk for (c)) shares the 2 cores with the server,
its writer processes and the database, as the in-process path shares them with its writer.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from common import Bar, header, parser, table, temp_dir, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.pgserver import PgServer, free_port, remove_server, start_server

from sealog import AuditLog
from sealog.server.keys import KeyStore
from sealog.stores import open_store

TENANTS = ("acme", "globex", "initech", "umbrella")
SIZE = 100


def fields(i: int, tenant: str) -> dict[str, Any]:
    """One event as a client sends it (and, with actor/target pairs, as emit takes it)."""
    return {"tenant_id": tenant, "action": "auth.login", "actor_type": "user", "actor_id": f"u-{i % 97}",
            "target_type": "session", "target_id": f"s-{i}", "ip_address": "203.0.113.9",
            "metadata": {"method": "sso", "attempt": i % 5}}


def body(tenant: str, offset: int) -> bytes:
    return json.dumps([fields(offset + i, tenant) for i in range(SIZE)]).encode()


@contextmanager
def stored(url: str) -> Iterator[Callable[[], int]]:
    """Events stored so far (the sum of the chain heads), on one open store."""
    store = open_store(url)
    try:
        yield lambda: sum(h.seq for h in store.heads())
    finally:
        store.close()


def migrate(url: str) -> None:
    store = open_store(url)
    try:
        store.migrate()
    finally:
        store.close()


def wait_stored(count: Callable[[], int], target: int, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while count() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count()} of {target} events stored")
        time.sleep(0.01)


# -- the service ----------------------------------------------------------------------------


@contextmanager
def service(url: str, spool: Path, workers: int) -> Iterator[int]:
    """`sealog serve --workers N` on a free port, until the block ends (SIGTERM, drained)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALOG_")}
    env["SEALOG_SPOOL_DIR"] = str(spool)
    process = subprocess.Popen([sys.executable, "-m", "sealog", "serve", "--url", url, "--port", str(port),
                                "--workers", str(workers)], stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sealog serve --workers {workers} did not come up")
            time.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)


def blast(port: int, keys: list[str], requests: int, connections: int, offset: int = 0) -> None:
    """``requests`` POSTs of SIZE events over ``connections`` keep-alive connections, tenant by connection."""
    bodies = [body(TENANTS[n % len(TENANTS)], offset + n * SIZE) for n in range(connections)]
    errors: list[str] = []

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"authorization": f"Bearer {keys[n % len(keys)]}", "content-type": "application/json"}
        for _ in range(requests // connections):
            conn.request("POST", "/v1/events", body=bodies[n], headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 202:
                errors.append(f"{response.status} {answer[:200]!r}")
                return
        conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])


def tenant_keys(url: str) -> list[str]:
    keys = KeyStore(url)
    keys.migrate()
    return [keys.create(tenant, "bench")[1] for tenant in TENANTS]


def run_http(url: str, spool: Path, workers: int, requests: int, connections: int) -> float:
    """Events/s from the first POST until every event is a stored row."""
    migrate(url)
    keys = tenant_keys(url)
    with stored(url) as count, service(url, spool, workers) as port:
        blast(port, keys, connections * 2, connections)  # warm up every worker and its writer
        wait_stored(count, connections * 2 * SIZE)
        before = count()
        started = time.perf_counter()
        blast(port, keys, requests, connections, offset=10**6)
        wait_stored(count, before + requests * SIZE)
        elapsed = time.perf_counter() - started
    return requests * SIZE / elapsed


def run_inprocess(url: str, spool: Path, n: int) -> float:
    """The same events through AuditLog.emit in a loop, then flush(): events/s."""
    with AuditLog(url, spool_dir=spool) as log:
        assert log.flush(60)  # writer process started and store migrated before the clock runs
        prepared = [fields(i, TENANTS[(i // SIZE) % len(TENANTS)]) for i in range(n)]
        for item in prepared:
            item["actor"] = (item.pop("actor_type"), item.pop("actor_id"))
            item["target"] = (item.pop("target_type"), item.pop("target_id"))
        started = time.perf_counter()
        for item in prepared:
            log.emit(**item)
        assert log.flush(600)
        return n / (time.perf_counter() - started)


# -- latency (wrk) --------------------------------------------------------------------------

LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class Latency(NamedTuple):
    p50: float
    p99: float
    accepted: float
    """Requests/s answered 202 (each event durable in the spool)."""
    stored: float
    """Events/s to stored rows: the requests over the time until the last one was a row."""


def latency(url: str, spool: Path, workers: int, seconds: int, script: Path) -> Latency:
    """Single-event POSTs from 50 connections for ``seconds``: latency, and rates answered and stored."""
    migrate(url)
    key = tenant_keys(url)[0]
    event = {k: v for k, v in fields(0, "acme").items() if k != "tenant_id"}
    script.write_text(LUA.format(body=json.dumps(event), key=key))
    with stored(url) as count, service(url, spool, workers) as port:
        target = f"http://127.0.0.1:{port}/v1/events"
        subprocess.run(["wrk", "-t2", "-c50", "-d2s", "-s", str(script), target], capture_output=True, check=True)
        before = count()
        started = time.perf_counter()
        out = subprocess.run(["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", "-s", str(script), target],
                             capture_output=True, text=True, check=True).stdout
        total = re.search(r"(\d+) requests in", out)
        if total is None:
            raise RuntimeError(f"cannot read wrk's output:\n{out}")
        # The warm-up's events may still be arriving: wait for all of them and the run's.
        wait_stored(count, before + int(total.group(1)))
        stored_rate = int(total.group(1)) / (time.perf_counter() - started)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    cuts = {q: float(v) * UNITS[u] for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if len(cuts) != 2 or rate is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return Latency(cuts["50"], cuts["99"], float(rate.group(1)), stored_rate)


# -- main -----------------------------------------------------------------------------------


def sqlite_rounds(tmp: Path, rounds: int, requests: int) -> tuple[list[float], list[float]]:
    http_rates, local_rates = [], []
    for round_no in range(rounds):
        contenders = [("http", http_rates), ("local", local_rates)]
        for name, rates in contenders if round_no % 2 == 0 else contenders[::-1]:
            where = tmp / f"sqlite-{name}-{round_no}"
            where.mkdir()
            url = "sqlite:///" + str(where / "audit.db")
            rates.append(run_http(url, where / "spool", 1, requests, 4) if name == "http"
                         else run_inprocess(url, where / "spool", requests * SIZE))
    return http_rates, local_rates


def postgres_rounds(server: PgServer, tmp: Path, rounds: int, requests: int,
                    counts: tuple[int, ...]) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"in-process": [], **{f"--workers {w}": [] for w in counts}}
    names = list(rates)
    for round_no in range(rounds):
        for name in names[round_no % len(names):] + names[:round_no % len(names)]:
            db = f"r{round_no}_{name.strip('-').replace(' ', '')}"
            url = server.create_database(db)
            spool = tmp / f"pg-{db}"
            if name == "in-process":
                migrate(url)
                rates[name].append(run_inprocess(url, spool, requests * SIZE))
            else:
                rates[name].append(run_http(url, spool, int(name.split()[1]), requests, 8))
    return rates


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, help="alternating rounds (default 3, quick 1)")
    cli.add_argument("--skip-postgres", action="store_true", help="only (a) and (c)")
    args = cli.parse_args()
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    requests = 40 if args.quick else 400
    seconds = 3 if args.quick else 10
    counts = (1, 2, 4)
    header("HTTP ingest", args.quick, rounds=rounds, events_per_request=SIZE, requests=requests,
           sqlite_connections=4, postgres_connections=8, tenants=len(TENANTS), latency_clients=50,
           latency_seconds=seconds)
    with temp_dir() as tmp:
        http_rates, local_rates = sqlite_rounds(tmp, rounds, requests)
        lat = {w: latency("sqlite:///" + str(tmp / f"lat{w}.db"), tmp / f"lat{w}-spool", w, seconds,
                          tmp / "post.lua") for w in (1, 2)}
        pg: dict[str, list[float]] = {}
        pg_lat: dict[int, Latency] = {}
        if not args.skip_postgres:
            server = start_server(fsync=True)
            try:
                pg = postgres_rounds(server, tmp, rounds, requests, counts)
                pg_lat = {w: latency(server.create_database(f"lat{w}"), tmp / f"pg-lat{w}-spool", w, seconds,
                                     tmp / "post.lua") for w in (1, 2)}
            finally:
                remove_server(server)
    ratios = [h / local for h, local in zip(http_rates, local_rates, strict=True)]
    table(("SQLite round", "sealog serve --workers 1 events/s", "in-process emit -> flush events/s", "ratio"),
          [(i + 1, h, local, r) for i, (h, local, r) in enumerate(zip(http_rates, local_rates, ratios, strict=True))])
    bars = [Bar("SQLite: HTTP (--workers 1) / in-process, median of rounds", statistics.median(ratios), 0.8, None,
                True)]
    if pg:
        one = statistics.median(pg["--workers 1"])
        table(("PostgreSQL, to stored rows", "median events/s", "rounds", "vs --workers 1"),
              [(name, statistics.median(v), ", ".join(f"{x:,.0f}" for x in v), statistics.median(v) / one)
               for name, v in pg.items()])
        bars.append(Bar("PostgreSQL: --workers 2 / --workers 1", statistics.median(pg["--workers 2"]) / one, 1.0,
                        None, True))
    table(("single-event POST, 50 connections", "p50 ms", "p99 ms", "requests/s answered", "events/s stored"),
          [(f"sealog serve --workers {w} ({name})", *result) for name, found in (("SQLite", lat), ("PostgreSQL", pg_lat))
           for w, result in found.items()])
    if pg_lat:
        bars.append(Bar("PostgreSQL single-event POSTs, stored: --workers 2 / --workers 1",
                        pg_lat[2].stored / pg_lat[1].stored, 1.0, None, True))
    return verdict(bars, args.check)


if __name__ == "__main__":
    sys.exit(main())
