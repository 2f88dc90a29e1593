"""Requests/s of a minimal ASGI app behind a real server, with and without sealog's middleware.

``bench_middleware.py`` times the middleware in-process against an app that does almost
nothing; this script measures what a user sees: uvicorn on loopback serving a one-route
Starlette app (and gunicorn a Flask app), loaded by ``wrk`` (Debian's package: ``apt-get install wrk``; gunicorn comes with the test extra) for a few
seconds per round, in alternating rounds so machine noise hits every contender alike:

- bare: the app alone;
- middleware: wrapped in ``AuditMiddleware`` (tenant callable, request id echoed);
- middleware + emit: the endpoint also emits one event (writer="thread", SQLite);
- the same for WSGI: a one-route Flask app behind gunicorn (one worker, one thread).

Figure: the median over rounds of requests/s. Bar: the middleware alone costs <= 10% of the
minimal app's request time, i.e. requests/s with it >= 0.909 of without.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Bar, header, median, parser, table, verdict

MODES = ("bare", "middleware", "middleware + emit")
SERVERS = ("asgi", "wsgi")


def make_app() -> Any:
    """The app uvicorn serves, chosen by SEALOG_BENCH_MODE (imported in the server process)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    mode = os.environ["SEALOG_BENCH_MODE"]
    log = None
    if mode == "middleware + emit":
        from sealog import AuditLog

        spool = Path(tempfile.mkdtemp(prefix="sealog-bench-"))
        log = AuditLog(f"sqlite:///{spool / 'audit.db'}", spool_dir=spool / "spool", writer="thread")

    async def home(request: Request) -> PlainTextResponse:
        if log is not None:
            log.emit(action="page.view", target=("page", "home"))
        return PlainTextResponse("ok")

    app: Any = Starlette(routes=[Route("/", home)])
    if mode != "bare":
        from sealog.integrations.asgi import AuditMiddleware

        app = AuditMiddleware(app, log=log, tenant=lambda scope: "acme")
    return app


def make_wsgi_app() -> Any:
    """The WSGI contender: a one-route Flask app, wrapped like the ASGI one."""
    from flask import Flask

    mode = os.environ["SEALOG_BENCH_MODE"]
    log = None
    if mode == "middleware + emit":
        from sealog import AuditLog

        spool = Path(tempfile.mkdtemp(prefix="sealog-bench-"))
        log = AuditLog(f"sqlite:///{spool / 'audit.db'}", spool_dir=spool / "spool", writer="thread")
    flask = Flask("bench")

    @flask.route("/")
    def home() -> str:
        if log is not None:
            log.emit(action="page.view", target=("page", "home"))
        return "ok"

    app: Any = flask.wsgi_app
    if mode != "bare":
        from sealog.integrations.wsgi import AuditMiddleware

        app = AuditMiddleware(app, log=log, tenant=lambda environ: "acme")
    return app


def serve_and_load(kind: str, mode: str, port: int, seconds: int, connections: int) -> float:
    env = {**os.environ, "SEALOG_BENCH_MODE": mode, "PYTHONPATH": str(Path(__file__).parent)}
    command = ([sys.executable, "-m", "uvicorn", "--factory", "bench_middleware_server:make_app", "--port",
                str(port), "--log-level", "warning", "--no-access-log"] if kind == "asgi" else
               [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "1",
                "--log-level", "warning", "bench_middleware_server:make_wsgi_app()"])
    server = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["wrk", "-t1", "-c1", "-d1s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start for {mode!r}")
            time.sleep(0.2)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
        found = re.search(r"Requests/sec:\s*([\d.]+)", out)
        if found is None or "Non-2xx" in out:
            raise RuntimeError(f"wrk failed for {mode!r}:\n{out}")
        return float(found.group(1))
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, help="alternating rounds (default 5, quick 2)")
    cli.add_argument("--seconds", type=int, default=5, help="load per contender per round")
    args = cli.parse_args()
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    rounds = args.rounds or (2 if args.quick else 5)
    header("middleware cost behind uvicorn, loaded by wrk", args.quick, rounds=rounds, seconds=args.seconds)
    names = [(kind, mode) for kind in SERVERS for mode in MODES]
    rates: dict[tuple[str, str], list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for number, (kind, mode) in enumerate(names):
            rates[kind, mode].append(serve_and_load(kind, mode, 18_400 + number, args.seconds, 16))
    rps = {name: median(values) for name, values in rates.items()}
    table(("server", "contender", "median requests/s", "rounds", "vs bare"),
          [(kind, mode, rps[kind, mode], ", ".join(f"{r:,.0f}" for r in rates[kind, mode]),
            rps[kind, mode] / rps[kind, "bare"]) for kind, mode in names])
    return verdict([Bar(f"{kind}: middleware / bare (requests/s)", rps[kind, "middleware"] / rps[kind, "bare"],
                        0.909, None, True) for kind in SERVERS], args.check)


if __name__ == "__main__":
    sys.exit(main())
