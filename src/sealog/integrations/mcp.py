"""MCP servers audited: every tool call, resource read and prompt get becomes one event.

:class:`AuditMiddleware` plugs into FastMCP (``server.add_middleware(...)``);
:func:`audit_server` wraps the official SDK's low-level ``Server``. Both record the same
events: ``mcp.tool.call`` (target ``("tool", name)``), ``mcp.resource.read`` (``("resource",
uri)``) and ``mcp.prompt.get`` (``("prompt", name)``), with the MCP request id, the server's
name as ``source``, the latency, the arguments (redacted by emit, like all metadata) and the
SHA-256 of the RFC 8785 encoding of the result's content list as the client receives it.

The event is written after the call, whatever happened: a raised error, an error result, a
cancellation or a timeout each give outcome ``failure`` with an ``error_code``. Each call runs
in its own task and keeps its fields in local variables, so concurrent calls never mix.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import anyio
from fastmcp.server.dependencies import get_access_token
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.server.auth.middleware.auth_context import get_access_token as sdk_access_token
from pydantic import BaseModel

from sealog import AuditLog, get_default
from sealog._canonical import canonical_value
from sealog._context import current
from sealog._errors import InvalidEvent
from sealog._event import check_tenant
from sealog._prepare import pair

from ._request import Pair
from ._values import jsonable, scrub, secrets_in

if TYPE_CHECKING:
    from fastmcp.tools.base import ToolResult
    from mcp.server.lowlevel import Server

__all__ = ["AuditMiddleware", "McpCall", "audit_server"]

_report = logging.getLogger("sealog")
Kind = Literal["tool", "resource", "prompt"]
Results = Literal["hash", "none", "full"]
ACTIONS: Final[dict[str, str]] = {"tool": "mcp.tool.call", "resource": "mcp.resource.read",
                                  "prompt": "mcp.prompt.get"}
MAX_TENANTS: Final = 1024
MAX_ERROR_CHARS: Final = 1024
"""An error message is cut to this length: it explains the failure, it is not the result."""


class McpCall(NamedTuple):
    """One audited request, as the ``tenant`` and ``actor`` callables see it.

    ``context`` is the framework's own: FastMCP's ``MiddlewareContext`` or the SDK's
    ``ServerRequestContext``, for what the fields here do not carry (headers, lifespan state).
    """

    kind: Kind
    name: str
    """The tool or prompt name, or the resource URI."""
    arguments: Mapping[str, Any]
    request_id: str | None
    client_name: str | None
    """The client's name from ``initialize`` (or the 2026 request envelope), when it sent one."""
    client_id: str | None
    """The access token's client id when the server has auth and the caller presented a token."""
    server: str
    context: Any = None


Tenant = str | Callable[[McpCall], str | None] | None
Actor = Callable[[McpCall], Pair | None] | None


class _Auditor:
    """What both front ends share: who the caller is, and one event per call."""

    def __init__(self, log: AuditLog | None, tenant: Tenant, actor: Actor, results: Results) -> None:
        if results not in ("hash", "none", "full"):
            raise ValueError(f"results must be 'hash', 'none' or 'full', not {results!r}")
        if tenant is not None and not isinstance(tenant, str) and not callable(tenant):
            raise TypeError(f"tenant must be a string or a callable, not {type(tenant).__name__}")
        if actor is not None and not callable(actor):
            raise TypeError(f"actor must be a callable, not {type(actor).__name__}")
        self.log = log
        self.tenant = tenant
        self.actor = actor
        self.results = results
        self.tenants: set[str] = set()  # tenant ids already checked

    def fields(self, call: McpCall) -> dict[str, Any]:
        """The event's fields known before the call runs.

        A missing tenant or a bad actor fails here, before the tool runs: an event that cannot
        be recorded must not leave a side effect nobody recorded.
        """
        tenant = self.tenant(call) if callable(self.tenant) else self.tenant
        if tenant is None:
            if not (current() or {}).get("tenant_id"):
                raise InvalidEvent("tenant_id", "no tenant for the MCP audit event: pass tenant= to the "
                                                "middleware or bind one with log.context(tenant_id=...)")
        elif tenant not in self.tenants:
            check_tenant(tenant)
            if len(self.tenants) < MAX_TENANTS:
                self.tenants.add(tenant)
        fields: dict[str, Any] = {
            "action": ACTIONS[call.kind], "target": (call.kind, call.name), "source": call.server,
            "metadata": {"arguments": call.arguments},  # JSON already; emit checks it (see emit below)
        }
        if tenant is not None:
            fields["tenant_id"] = tenant
        if call.request_id is not None:
            fields["request_id"] = call.request_id
        if call.client_id is not None:
            fields["actor"] = ("client", call.client_id)
        elif (chosen := self.actor(call) if self.actor is not None else None) is not None:
            fields["actor"] = pair("actor", chosen)
        elif call.client_name:
            fields["actor"] = ("agent", call.client_name)
        return fields

    def succeeded(self, fields: dict[str, Any], started: float, content: Sequence[Any] | None,
                  is_error: bool = False) -> None:
        """Record a call that returned (an error result is a failure, but returned normally)."""
        fields["latency_ms"] = _elapsed(started)
        try:
            if content is not None and self.results != "none":
                blocks = [_wire(block) for block in content]
                fields["metadata"]["result_sha256"] = hashlib.sha256(canonical_value(blocks)).hexdigest()
                if self.results == "full":
                    fields["metadata"]["result"] = self.scrub(fields, blocks)
            if is_error:
                fields["outcome"] = "failure"
                fields["error_code"] = "error_result"
                text = _first_text(content or ())
                if text:
                    fields["error_message"] = self.scrub(fields, text[:MAX_ERROR_CHARS])
        except Exception as exc:  # a result we cannot read is noted; the call is still recorded
            fields["metadata"]["result_error"] = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        self.emit(fields)

    def failed(self, fields: dict[str, Any], started: float, exc: BaseException) -> None:
        """Record a call that raised or was cancelled."""
        fields["latency_ms"] = _elapsed(started)
        fields["outcome"] = "failure"
        fields["error_code"] = code = _error_code(exc)
        message = "" if code == "cancelled" else str(exc)  # anyio's cancel message names its internals
        try:
            if message:
                fields["error_message"] = self.scrub(fields, message[:MAX_ERROR_CHARS])
        except Exception as text_exc:
            fields["error_message"] = f"(the error's text could not be read: {type(text_exc).__name__})"
        self.emit(fields)

    def scrub(self, fields: dict[str, Any], value: Any) -> Any:
        """Hide in ``value`` what the redactor will hide in the arguments (a tool may echo them)."""
        secret_key = (self.log or get_default()).redactor.secret_key
        return scrub(value, secrets_in(fields["metadata"]["arguments"], secret_key))

    def emit(self, fields: dict[str, Any]) -> None:
        """Spool the event; never raises.

        The tool has run: raising now would only hide its result (or its own error) from the
        client, and invite a retry of the side effect. A lost event is logged, by name, on the
        ``sealog`` logger (as the SQLAlchemy integration does after a commit).
        """
        try:
            log = self.log or get_default()
            for attempt in range(3):
                try:
                    log.emit(**fields)
                    return
                except InvalidEvent as exc:
                    if attempt == 2 or not _repair(fields["metadata"], exc.field):
                        raise
        except Exception as exc:
            _report.error("audit event %s for %s (request %s) was not recorded: %s: %s", fields["action"],
                          fields["target"], fields.get("request_id"), type(exc).__name__, exc)


def _repair(metadata: dict[str, Any], field: str) -> bool:
    """Make a refused event acceptable, keeping what can be kept; False when there is nothing to do.

    Arguments and results come from JSON, so the common case needs no conversion: only an
    integer JSON keeps inexactly (beyond 2**53) makes emit refuse ``metadata``, and then they
    become text. An event over the size limit loses its arguments and stored result, never its hash.
    """
    if field == "metadata":
        for key in ("arguments", "result"):
            if key in metadata:
                metadata[key] = jsonable(metadata[key])
        return True
    if field == "event":
        for key in ("arguments", "result"):
            if key in metadata:
                metadata[key] = None
                metadata[f"{key}_omitted"] = "over the event size limit"
        return True
    return False


def _elapsed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _wire(block: Any) -> Any:
    """A content block as JSON, as the SDK writes it on the wire (aliases, no null fields)."""
    if isinstance(block, BaseModel):
        return block.model_dump(by_alias=True, mode="json", exclude_none=True)
    return jsonable(block)


def _first_text(content: Sequence[Any]) -> str | None:
    for block in content:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            return text
    return None


def _error_code(exc: BaseException) -> str:
    """``cancelled``, ``timeout``, else the class of the error at the root of the ``raise ... from`` chain.

    FastMCP re-raises a tool's exception as ``ToolError`` from it, so the cause says more; its
    tool timeout raises ``MCPError`` ``from None``, leaving the ``TimeoutError`` as the context.
    """
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    chain: list[BaseException] = [exc]
    while (link := chain[-1].__cause__ or chain[-1].__context__) is not None and link not in chain:
        chain.append(link)
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return "timeout"
    root = exc
    while root.__cause__ is not None and root.__cause__ is not exc:
        root = root.__cause__
    return type(root).__name__


def _client_name(session: Any) -> str | None:
    params = getattr(session, "client_params", None)
    info = getattr(params, "client_info", None)
    name = getattr(info, "name", None)
    return name if isinstance(name, str) and name else None


# -- FastMCP ---------------------------------------------------------------------------------


class AuditMiddleware(Middleware):
    """FastMCP middleware: ``server.add_middleware(AuditMiddleware(log, tenant="acme"))``.

    ``tenant``: a string or ``tenant(call) -> str | None`` (None: the bound context's tenant).
    ``actor(call) -> (type, id) | None`` names the caller when the server has no auth.
    ``results``: ``"hash"`` (default) records the result's SHA-256, ``"full"`` also the
    redacted result, ``"none"`` neither.
    """

    def __init__(self, log: AuditLog | None = None, *, tenant: Tenant = None, actor: Actor = None,
                 results: Results = "hash") -> None:
        self.auditor = _Auditor(log, tenant, actor, results)

    def _call(self, context: MiddlewareContext[Any], kind: Kind, name: str,
              arguments: Mapping[str, Any] | None) -> McpCall:
        ctx = context.fastmcp_context
        request = ctx.request_context if ctx is not None else None
        token = get_access_token()
        return McpCall(kind=kind, name=name, arguments=arguments or {},
                       request_id=request.request_id if request is not None else None,
                       client_name=_client_name(request.session) if request is not None else None,
                       client_id=token.client_id if token is not None else None,
                       server=ctx.fastmcp.name if ctx is not None else "", context=context)

    async def _audit(self, call: McpCall, run: Callable[[], Awaitable[Any]],
                     content: Callable[[Any], tuple[Sequence[Any] | None, bool]]) -> Any:
        auditor = self.auditor
        fields = auditor.fields(call)
        started = time.perf_counter()
        try:
            result = await run()
        except BaseException as exc:
            auditor.failed(fields, started, exc)
            raise
        blocks, is_error = content(result)
        auditor.succeeded(fields, started, blocks, is_error)
        return result

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: CallNext[Any, ToolResult]) -> ToolResult:
        message = context.message
        call = self._call(context, "tool", message.name, message.arguments)
        result: ToolResult = await self._audit(call, lambda: call_next(context), _tool_content)
        return result

    async def on_read_resource(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        uri = str(context.message.uri)
        call = self._call(context, "resource", uri, None)
        return await self._audit(call, lambda: call_next(context), lambda r: (r.to_mcp_result(uri).contents, False))

    async def on_get_prompt(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        message = context.message
        call = self._call(context, "prompt", message.name, message.arguments)
        return await self._audit(call, lambda: call_next(context), lambda r: (r.to_mcp_prompt_result().messages, False))


def _tool_content(result: Any) -> tuple[Sequence[Any] | None, bool]:
    return getattr(result, "content", None), bool(getattr(result, "is_error", False))


# -- the SDK's low-level Server ------------------------------------------------------------

_METHODS: Final[tuple[tuple[str, Kind], ...]] = (
    ("tools/call", "tool"), ("resources/read", "resource"), ("prompts/get", "prompt"))


def audit_server(server: Server[Any], log: AuditLog | None = None, *, tenant: Tenant = None,
                 actor: Actor = None, results: Results = "hash") -> Server[Any]:
    """Audit an ``mcp.server.lowlevel.Server``'s tool, resource and prompt handlers; returns the server.

    Call it after the handlers are registered (the constructor's ``on_call_tool`` etc. are);
    the options and events are those of :class:`AuditMiddleware`.
    """
    auditor = _Auditor(log, tenant, actor, results)
    for method, kind in _METHODS:
        entry = server.get_request_handler(method)
        if entry is None:
            continue
        if getattr(entry.handler, "__sealog_audited__", False):
            raise ValueError(f"{server.name!r} is already audited")
        server.add_request_handler(method, entry.params_type, _audited(auditor, server, kind, entry.handler))
    return server


def _audited(auditor: _Auditor, server: Server[Any], kind: Kind,
             handler: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def audited(ctx: Any, params: Any) -> Any:
        token = sdk_access_token()
        name = str(params.uri) if kind == "resource" else params.name
        call = McpCall(kind=kind, name=name, arguments=getattr(params, "arguments", None) or {},
                       request_id=None if ctx.request_id is None else str(ctx.request_id),
                       client_name=_client_name(ctx.session),
                       client_id=token.client_id if token is not None else None,
                       server=server.name, context=ctx)
        fields = auditor.fields(call)
        started = time.perf_counter()
        try:
            result = await handler(ctx, params)
        except BaseException as exc:
            auditor.failed(fields, started, exc)
            raise
        content = getattr(result, {"tool": "content", "resource": "contents", "prompt": "messages"}[kind], None)
        auditor.succeeded(fields, started, content, bool(getattr(result, "is_error", False)))
        return result

    audited.__sealog_audited__ = True  # type: ignore[attr-defined]
    return audited
