"""The request-time cost of sealog's ASGI and WSGI middleware, against the same app without it.

Driven in-process, no network: each request is one direct call of the app with a fresh
scope (ASGI, awaited in a running loop) or environ (WSGI, body iterated and closed), the
way a server would call it, so the difference is the middleware's own work. Apps:

- ASGI: a one-route Starlette app answering "ok"; WSGI: a one-route Flask app.
- Each is measured bare, wrapped in ``AuditMiddleware`` (tenant and actor callables,
  trusted proxies, a request id header to keep, X-Forwarded-For, a user agent), and
  wrapped with the endpoint emitting one event (writer="thread", SQLite in a temp dir,
  flushed untimed after each batch).
- For scale, a bare ASGI callable and a bare WSGI function (no framework) too.

Figure: the median over batches of the mean µs per request. Bar: middleware alone adds
<= 10% to the minimal framework app's request time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from common import Bar, Contender, header, interleaved, median, parser, quantile, sqlite_url, table, temp_dir, verdict
from sealog import AuditLog
from sealog.integrations.asgi import AuditMiddleware as ASGIMiddleware
from sealog.integrations.wsgi import AuditMiddleware as WSGIMiddleware

BATCH_SIZE = 200
HEADERS = [(b"host", b"bench"), (b"user-agent", b"bench/1.0"), (b"x-request-id", b"req-123"),
           (b"x-forwarded-for", b"203.0.113.9"), (b"x-user", b"u-1")]
SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": HEADERS,
    "client": ("10.0.0.2", 50000), "server": ("bench", 80),
}
ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "bench",
    "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.2", "HTTP_HOST": "bench",
    "HTTP_USER_AGENT": "bench/1.0", "HTTP_X_REQUEST_ID": "req-123", "HTTP_X_FORWARDED_FOR": "203.0.113.9",
    "HTTP_X_USER": "u-1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
    "wsgi.multiprocess": False, "wsgi.run_once": False,
}
OPTIONS: dict[str, Any] = {"trusted_proxies": ["10.0.0.0/8"]}


def asgi_actor(scope: dict[str, Any]) -> tuple[str, str] | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            return "user", value.decode()
    return None


def wsgi_actor(environ: dict[str, Any]) -> tuple[str, str] | None:
    user = environ.get("HTTP_X_USER")
    return ("user", user) if user else None


# -- apps ----------------------------------------------------------------------------------


def starlette_app(log: AuditLog | None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> PlainTextResponse:
        if log is not None:
            log.emit(action="page.view")
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", endpoint)])


async def bare_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def flask_app(log: AuditLog | None) -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/")
    def endpoint() -> str:
        if log is not None:
            log.emit(action="page.view")
        return "ok"

    return app.wsgi_app


def bare_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


# -- drivers -------------------------------------------------------------------------------


def asgi_runner(app: Any, loop: asyncio.AbstractEventLoop) -> Callable[[int], None]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def batch(n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE), receive, send)

    return lambda n: loop.run_until_complete(batch(n))


def wsgi_runner(app: Any) -> Callable[[int], None]:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def run(n: int) -> None:
        for _ in range(n):
            body = app(dict(ENVIRON), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return run


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--batches", type=int, help="timed batches per contender (default 300, quick 20)")
    args = cli.parse_args()
    batches = args.batches or (20 if args.quick else 300)
    header("ASGI/WSGI middleware cost per request, in-process", args.quick, batches=batches, batch_size=BATCH_SIZE)
    loop = asyncio.new_event_loop()
    with temp_dir() as tmp:
        log = AuditLog(sqlite_url(tmp / "audit.db"), spool_dir=tmp / "spool", writer="thread")
        try:
            if not log.flush(30):
                print("the store did not come up", file=sys.stderr)
                return 2
            asgi_mw = {"log": log, "tenant": lambda scope: "acme", "actor": asgi_actor, **OPTIONS}
            wsgi_mw = {"log": log, "tenant": lambda environ: "acme", "actor": wsgi_actor, **OPTIONS}

            def settle() -> None:
                log.flush(60)

            contenders = [
                Contender("asgi bare callable", asgi_runner(bare_asgi, loop)),
                Contender("asgi bare callable + middleware", asgi_runner(ASGIMiddleware(bare_asgi, **asgi_mw), loop)),
                Contender("starlette", asgi_runner(starlette_app(None), loop)),
                Contender("starlette + middleware", asgi_runner(ASGIMiddleware(starlette_app(None), **asgi_mw), loop)),
                Contender("starlette + middleware + emit",
                          asgi_runner(ASGIMiddleware(starlette_app(log), **asgi_mw), loop), settle),
                Contender("wsgi bare function", wsgi_runner(bare_wsgi)),
                Contender("wsgi bare function + middleware", wsgi_runner(WSGIMiddleware(bare_wsgi, **wsgi_mw))),
                Contender("flask", wsgi_runner(flask_app(None))),
                Contender("flask + middleware", wsgi_runner(WSGIMiddleware(flask_app(None), **wsgi_mw))),
                Contender("flask + middleware + emit", wsgi_runner(WSGIMiddleware(flask_app(log), **wsgi_mw)), settle),
            ]
            samples = interleaved(contenders, batches=batches, batch_size=BATCH_SIZE)
            stats = log.stats()
        finally:
            log.close()
            loop.close()

    us = {name: median(s) / 1000 for name, s in samples.items()}
    base_of = {name: name.split(" + ")[0] for name in samples}
    table(
        ("contender", "median µs/request", "p10", "p90", "requests/s", "vs bare app", "added µs"),
        [(name, us[name], quantile(s, 0.1) / 1000, quantile(s, 0.9) / 1000, 1e6 / us[name],
          us[name] / us[base_of[name]], us[name] - us[base_of[name]])
         for name, s in samples.items()],
    )
    print(f"events emitted {stats['emitted']:,}, stored {stats['stored']:,}, errors {stats['errors']}\n")
    return verdict(
        [Bar("ASGI: starlette + middleware / starlette", us["starlette + middleware"] / us["starlette"], 1.10, None,
             False),
         Bar("WSGI: flask + middleware / flask", us["flask + middleware"] / us["flask"], 1.10, None, False)],
        args.check,
    )


if __name__ == "__main__":
    sys.exit(main())
