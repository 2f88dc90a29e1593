"""HTTP ingest: sealog serve against a bare endpoint of the same framework, same load.

(a) Batches of 100 events per POST from a load generator on loopback (8 keep-alive
    connections): events/s until every event is a stored, sealed row, against a bare
    Starlette endpoint under the same uvicorn that reads the body and returns 202.
    Bar: >= 0.5 of the bare endpoint.
(b) Single-event POST latency, p50 and p99, with 50 concurrent clients.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from common import Bar, header, parser, table, temp_dir, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sealog.server.keys import KeyStore
from sealog.stores import open_store

BARE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
async def ingest(request):
    await request.body()
    return Response(b'{"event_ids":[]}', status_code=202, media_type="application/json")
uvicorn.run(Starlette(routes=[Route("/v1/events", ingest, methods=["POST"])]), host="127.0.0.1",
            port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def batch(n: int, offset: int) -> bytes:
    return json.dumps([{"action": "auth.login", "actor_type": "user", "actor_id": f"u-{(offset + i) % 97}",
                        "target_type": "session", "target_id": f"s-{offset + i}", "ip_address": "203.0.113.9",
                        "metadata": {"method": "sso", "attempt": i % 5}} for i in range(n)]).encode()


def blast(port: int, key: str, requests: int, size: int, connections: int) -> float:
    """POST ``requests`` batches of ``size`` over ``connections`` keep-alive clients; seconds."""
    bodies = [batch(size, i * size) for i in range(connections)]
    per = requests // connections
    errors: list[str] = []

    def worker(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(per):
                response = client.post("/v1/events", content=bodies[n], headers={
                    "authorization": f"Bearer {key}", "content-type": "application/json"})
                if response.status_code != 202:
                    errors.append(response.text[:200])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - started


def latencies(port: int, key: str, clients: int, each: int) -> list[float]:
    body = batch(1, 0)[1:-1]
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(each):
                started = time.perf_counter()
                response = client.post("/v1/events", content=body, headers={
                    "authorization": f"Bearer {key}", "content-type": "application/json"})
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 202, response.text
                with lock:
                    times.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times


def main() -> int:
    args = parser(__doc__).parse_args()
    requests, size, connections = (80, 100, 8) if args.quick else (800, 100, 8)
    clients, each = (50, 4) if args.quick else (50, 40)
    header("HTTP ingest", args.quick, requests=requests, events_per_request=size, connections=connections,
           latency_clients=clients, requests_per_client=each)
    with temp_dir() as tmp:
        url = "sqlite:///" + str(tmp / "audit.db")
        store = open_store(url)
        store.migrate()
        keys = KeyStore(url)
        _, key = keys.create("acme", "bench")
        sealog_port, bare_port = free_port(), free_port()
        procs = [
            subprocess.Popen([sys.executable, "-m", "sealog", "serve", "--url", url, "--port", str(sealog_port)],
                             stdout=subprocess.DEVNULL, env={"SEALOG_SPOOL_DIR": str(tmp / "spool"),
                                                              "PATH": "/usr/bin:/bin"}),
            subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)]),
        ]
        try:
            wait_up(sealog_port)
            wait_up(bare_port)
            blast(bare_port, key, connections, size, connections)  # warm up both
            blast(sealog_port, key, connections, size, connections)
            bare_s = blast(bare_port, key, requests, size, connections)
            target = requests * size + connections * size
            started = time.perf_counter()
            blast(sealog_port, key, requests, size, connections)
            while (stored := sum(h.seq for h in store.heads())) < target:
                time.sleep(0.02)
            sealog_s = time.perf_counter() - started
            times = latencies(sealog_port, key, clients, each)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            store.close()
    bare_rate, sealog_rate = requests * size / bare_s, requests * size / sealog_s
    times.sort()
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    table(("path", "events/s"), [("bare Starlette endpoint, 202 and nothing else", bare_rate),
                                 ("sealog serve: to stored, sealed rows", sealog_rate)])
    table(("single-event POST, 50 clients", "ms"), [("p50", p50), ("p99", p99)])
    print(f"stored rows: {stored}")
    return verdict([Bar("sealog / bare endpoint", sealog_rate / bare_rate, 0.5, None, True)], args.check)


if __name__ == "__main__":
    sys.exit(main())
