"""ASGI middleware: every HTTP request's events carry its request id, client, and caller.

Pure ASGI (no framework import), so it wraps FastAPI, Starlette, Quart, Falcon's ASGI
app or anything else. The context is a contextvar bound around the app's call: each
request runs in its own asyncio task, so concurrent requests never see each other's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from sealog import AuditLog
from sealog._context import bind

from ._request import Pair, RequestFields, add_identity

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]  # any framework's own scope and message types

_WANTED = (b"x-forwarded-for", b"user-agent", b"traceparent")


class AuditMiddleware:
    """Binds ``log.context(...)`` for each HTTP request; see the README's Integrations section.

    ``tenant(scope)`` and ``actor(scope)`` run when the request arrives, so middleware that
    puts the user in the scope (authentication) must sit outside this one.
    """

    def __init__(self, app: ASGIApp, *, log: AuditLog | None = None,
                 tenant: Callable[[Scope], str | None] | None = None,
                 actor: Callable[[Scope], Pair | None] | None = None,
                 trusted_proxies: Iterable[str] = (), request_id_header: str = "x-request-id") -> None:
        self.app = app
        self.log = log
        self.tenant = tenant
        self.actor = actor
        self.fields = RequestFields(trusted_proxies, request_id_header)
        self.header = self.fields.header.encode("latin-1")
        self.wanted = frozenset((self.header, *_WANTED))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = self.header
        given = forwarded = agent = traceparent = None
        for name, value in scope.get("headers") or ():  # one pass, names compared as bytes
            if name in self.wanted:
                if name == header:
                    given = value.decode("latin-1")
                elif name == b"x-forwarded-for":
                    forwarded = value if forwarded is None else forwarded + b"," + value
                elif name == b"user-agent":
                    agent = value.decode("latin-1")
                else:
                    traceparent = value.decode("latin-1")
        client = scope.get("client")
        fields = self.fields.build(client[0] if client else None, given,
                                   None if forwarded is None else forwarded.decode("latin-1"), agent, traceparent)
        if self.tenant is not None or self.actor is not None:
            add_identity(fields, self.tenant(scope) if self.tenant else None,
                         self.actor(scope) if self.actor else None)
        rid = fields["request_id"]
        echo = (header, rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or ()
                for name, _ in headers:
                    if name.lower() == header:
                        break
                else:
                    message = {**message, "headers": [*headers, echo]}
            await send(message)

        with bind.fields(fields):  # the request's fields, for whichever AuditLog emits inside it
            await self.app(scope, receive, send_with_id)

