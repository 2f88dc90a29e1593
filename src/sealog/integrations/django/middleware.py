"""Django middleware: binds the request's audit context, with the signed-in user as the actor.

Place it after AuthenticationMiddleware (it reads ``request.user``). It works in sync and
async stacks; a streamed response's body is produced in the request's context too.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from . import conf

Handler = Callable[[HttpRequest], HttpResponseBase]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def request_context(request: HttpRequest, user: Any) -> dict[str, Any]:
    """The context fields of a Django request: request id, client, tenant and user."""
    fields = conf.request_fields().from_environ(request.META)
    tenant = conf.tenant_for(request)
    if tenant is not None:
        fields["tenant_id"] = tenant
    if user is not None and user.is_authenticated:
        fields["actor"] = ("user", str(user.pk))
    request.sealog_request_id = fields["request_id"]  # type: ignore[attr-defined]
    return fields


class AuditMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler | AsyncHandler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        fields = request_context(request, getattr(request, "user", None))
        with conf.get_log().context(**fields):
            response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
            if isinstance(response, StreamingHttpResponse) and not response.is_async:
                response.streaming_content = _steps(contextvars.copy_context(), iter(response.streaming_content))  # type: ignore[arg-type]
        return _echo(response, fields["request_id"])

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else None
        fields = request_context(request, user)
        with conf.get_log().context(**fields):
            response = await self.get_response(request)  # type: ignore[misc]
            if isinstance(response, StreamingHttpResponse) and response.is_async:
                content: AsyncIterator[bytes] = aiter(response.streaming_content)  # type: ignore[arg-type]
                response.streaming_content = _async_steps(contextvars.copy_context(), content)
        return _echo(response, fields["request_id"])


def _echo(response: HttpResponseBase, request_id: str) -> HttpResponseBase:
    header = conf.request_fields().header
    if header not in response:
        response[header] = request_id
    return response


def _steps(ctx: contextvars.Context, body: Iterator[Any]) -> Iterator[Any]:
    """The body's chunks, each produced inside the request's context."""
    while True:
        try:
            yield ctx.run(next, body)
        except StopIteration:
            return


async def _async_steps(ctx: contextvars.Context, body: AsyncIterator[Any]) -> AsyncIterator[Any]:
    while True:
        try:
            yield await asyncio.create_task(_anext(body), context=ctx)
        except StopAsyncIteration:
            return


async def _anext(body: AsyncIterator[Any]) -> Any:
    return await anext(body)
