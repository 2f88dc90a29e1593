"""WSGI middleware: every HTTP request's events carry its request id, client, and caller.

Pure WSGI (no framework import): Flask, Falcon, Django's WSGI handler, anything. The app
and every step of its response body run inside one private ``contextvars.Context``, so a
streamed body is still in the request's context, and nothing stays bound in the server's
thread afterwards, even when a server forgets to call ``close()``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sealog import AuditLog
from sealog._context import bind

from ._request import Pair, RequestFields, add_identity

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
else:
    StartResponse = WSGIApplication = WSGIEnvironment = Any

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class AuditMiddleware:
    """Binds ``log.context(...)`` for each request; see the README's Integrations section.

    ``tenant(environ)`` and ``actor(environ)`` run when the request arrives.
    """

    def __init__(self, app: WSGIApplication, *, log: AuditLog | None = None,
                 tenant: Callable[[WSGIEnvironment], str | None] | None = None,
                 actor: Callable[[WSGIEnvironment], Pair | None] | None = None,
                 trusted_proxies: Iterable[str] = (), request_id_header: str = "x-request-id") -> None:
        self.app = app
        self.log = log
        self.tenant = tenant
        self.actor = actor
        self.fields = RequestFields(trusted_proxies, request_id_header)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        fields = add_identity(self.fields.from_environ(environ),
                              self.tenant(environ) if self.tenant else None,
                              self.actor(environ) if self.actor else None)
        header, rid = self.fields.header, fields["request_id"]

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(name.lower() == header for name, _ in headers):
                headers = [*headers, (header, rid)]
            return start_response(status, headers, exc_info)

        ctx = contextvars.copy_context()
        binding = bind.fields(fields)  # the request's fields, for whichever AuditLog emits inside it
        ctx.run(binding.__enter__)
        try:
            result = ctx.run(self.app, environ, start_with_id)
        except BaseException:
            ctx.run(binding.__exit__, None, None, None)
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(result, list | tuple) or (isinstance(file_wrapper, type) and isinstance(result, file_wrapper)):
            ctx.run(binding.__exit__, None, None, None)
            return result  # no app code runs while the server reads it
        return _Body(result, ctx, binding)


class _Body:
    """The app's response iterable, stepped inside the request's context and closed with it."""

    def __init__(self, body: Iterable[bytes], ctx: contextvars.Context, binding: Any) -> None:
        self.body = body
        self.iterator: Iterator[bytes] | None = None
        self.ctx = ctx
        self.binding = binding

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.iterator is None:
            self.iterator = self.ctx.run(iter, self.body)
        return self.ctx.run(next, self.iterator)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                self.ctx.run(close)
        finally:
            if self.binding is not None:
                self.ctx.run(self.binding.__exit__, None, None, None)
                self.binding = None
