"""The ASGI application: API, viewer and one in-process AuditLog (same spool, same sealing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import EventRejected, StoreUnavailable
from .._log import AuditLog
from .api import ENDPOINTS, Api, error_response, openapi
from .auth import Auth, HTTPError
from .guard import BodyDeadline, Limits, Offload
from .keys import KeyStore
from .proofs import server_verifier
from .viewer import Viewer


def create_app(log: AuditLog, keys: KeyStore | None = None, *, limits: Limits | None = None,
               secure_cookies: bool = False, verifier_key: str | None = None) -> Starlette:
    """The service around ``log``; the caller owns the AuditLog and closes it.

    ``secure_cookies`` marks the session cookie ``Secure`` even on plain HTTP requests
    (behind a TLS proxy that does not say so); requests that came over TLS always get it.
    ``verifier_key`` (the log's verifier key, or a file holding it; else ``SEALOG_VERIFIER_KEY``,
    else the verifier of the log's signing key) lets the viewer check checkpoint signatures.
    """
    keys = keys or KeyStore(log.url)
    keys.migrate()
    auth = Auth(keys, log.spool.directory / "sessions")  # shared by the workers of `serve --workers N`
    limits = limits or Limits()
    offload = Offload(limits)
    api = Api(log, auth, offload)
    viewer = Viewer(log, auth, offload, secure_cookies=secure_cookies, verifier=server_verifier(log, verifier_key))

    def bound(handler: Callable[[Api, Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await handler(api, request)  # type: ignore[no-any-return]
        return endpoint

    schema = openapi()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(schema)

    routes = [Route(e.path, bound(e.handler), methods=[e.method]) for e in ENDPOINTS]
    routes += [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/", viewer.home, methods=["GET"]),
        Route("/signin", viewer.signin, methods=["POST"]),
        Route("/signout", viewer.signout, methods=["POST"]),
        Route("/events", viewer.events, methods=["GET"]),
        Route("/follow", viewer.follow, methods=["GET"]),
        Route("/events/{event_id}", viewer.event, methods=["GET"]),
        Route("/events/{event_id}/receipt", viewer.receipt, methods=["GET"]),
        Route("/export", viewer.export, methods=["GET"]),
        Route("/tenant", viewer.switch, methods=["POST"]),
        Route("/static/viewer.js", viewer.script, methods=["GET"]),
        Route("/verify", viewer.verify, methods=["POST"]),
        Route("/checkpoint", viewer.checkpoint, methods=["GET", "POST"]),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        offload.start()  # its limiters belong to the serving event loop
        yield

    handlers: dict[Any, Any] = {HTTPError: on_error, ValueError: on_error, StoreUnavailable: on_error,
                                EventRejected: on_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan,
                     middleware=[Middleware(BodyDeadline, seconds=limits.body_timeout)])
