"""sealog.integrations.mcp: FastMCP and low-level SDK servers audited per the contract, with the real packages.

Clients and servers talk over the SDK's in-memory streams (JSON-RPC framed, as on stdio); a tap on
the server's write stream keeps each response exactly as it went to the client, so the result
hashes are checked against the very bytes the client received. Receipts of those events are
checked by a verifier written here with hashlib, base64 and cryptography only (the README's).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import fastmcp.client.transports.memory as fastmcp_memory
import mcp
import mcp.client._memory as sdk_memory
import mcp_types as types
import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastmcp import Client, Context, FastMCP
from fastmcp.client.client import CallToolResult
from fastmcp.server.auth.providers.jwt import StaticTokenVerifier
from fastmcp.utilities.tests import asgi_client
from mcp.server.lowlevel import Server
from mcp.shared.memory import create_client_server_memory_streams

from sealog import AuditLog
from sealog._note import Verifier, generate_key
from sealog._tlogproof import ReceiptError
from sealog._tlogproof import verify_receipt as sealog_verify_receipt
from sealog.integrations.mcp import AuditMiddleware, McpCall, audit_server

from .conftest import stored

SECRET = "s3cr3t-Hunter2-0987"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# -- the wire tap ------------------------------------------------------------------------------


class Tap:
    """The server's write stream, recording every JSON-RPC response it sends to the client."""

    def __init__(self, inner: Any, wire: dict[str, Any]) -> None:
        self.inner = inner
        self.wire = wire

    async def send(self, item: Any) -> None:
        message = getattr(item, "message", None)
        if isinstance(message, types.JSONRPCResponse):
            self.wire[str(message.id)] = message.result
        await self.inner.send(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def __aenter__(self) -> Tap:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        return await self.inner.__aexit__(*exc)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """JSON-RPC id -> the result dict the server wrote, for both the FastMCP and the SDK in-memory transports."""
    responses: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def tapped() -> AsyncIterator[Any]:
        async with create_client_server_memory_streams() as (client, (server_read, server_write)):
            yield client, (server_read, Tap(server_write, responses))

    monkeypatch.setattr(fastmcp_memory, "create_client_server_memory_streams", tapped)
    monkeypatch.setattr(sdk_memory, "create_client_server_memory_streams", tapped)
    return responses


def sha256_jcs(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


# -- a FastMCP server with every case ----------------------------------------------------------


class Probe:
    """What the tools saw, so the tests can tell the tool ran (or did not) and with which request id."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.request_ids: dict[int, str] = {}
        self.started = asyncio.Event()


def make_server(probe: Probe, name: str = "demo", auth: Any = None) -> FastMCP:
    server = FastMCP(name, auth=auth)

    @server.tool
    def add(a: int, b: int) -> int:
        probe.ran.append("add")
        return a + b

    @server.tool
    def rich(word: str) -> list[Any]:
        """Several content blocks, non-ASCII text and a float: what RFC 8785 must get right."""
        return [f"{word} é\u2028 ☃", {"pi": 3.14159, "big": 1e21}, types.TextContent(type="text", text="z")]

    @server.tool
    async def whoami(i: int, ctx: Context) -> str:
        await asyncio.sleep(0.001 * (i % 3))  # interleave the concurrent calls
        probe.request_ids[i] = ctx.request_id
        return ctx.request_id

    @server.tool
    def boom(user: str) -> str:
        raise ValueError(f"cannot reach the ledger for {user}")

    @server.tool
    def refuse() -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text="quota exceeded")], is_error=True)

    @server.tool
    async def slow() -> str:
        probe.started.set()
        await asyncio.sleep(60)
        return "never"

    @server.tool(timeout=0.05)
    async def deadline() -> str:
        await asyncio.sleep(10)
        return "never"

    @server.tool
    def login(user: str, password: str) -> str:
        if user == "bad":
            raise PermissionError(f"wrong password {password} for {user}")
        return f"welcome {user}, password {password} accepted"

    @server.resource("data://report")
    def report() -> str:
        return "quarterly numbers"

    @server.prompt
    def summarize(topic: str) -> str:
        return f"Summarize {topic} in one line."

    return server


def call(server: FastMCP, *calls: tuple[str, dict[str, Any]], name: str = "agent-x") -> list[CallToolResult]:
    async def run() -> list[CallToolResult]:
        async with Client(server, client_info=types.Implementation(name=name, version="1")) as client:
            return [await client.call_tool(tool, args, raise_on_error=False) for tool, args in calls]

    return asyncio.run(run())


# -- tool calls ------------------------------------------------------------------------------


def test_a_tool_call_is_one_event_with_every_contract_field(log: AuditLog, wire: dict[str, Any]) -> None:
    """mcp.tool.call: target, arguments, result hash of the wire content, latency, request id, server, client."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    [result] = call(server, ("add", {"a": 2, "b": 40}))
    assert result.data == 42
    [event] = stored(log)
    received = wire[event.request_id or ""]
    assert received["content"] == [{"type": "text", "text": "42"}]
    assert (event.action, event.target_type, event.target_id, event.outcome) == ("mcp.tool.call", "tool", "add", "success")
    assert event.metadata == {"arguments": {"a": 2, "b": 40}, "result_sha256": sha256_jcs(received["content"])}
    assert (event.actor_type, event.actor_id, event.source) == ("agent", "agent-x", "demo")
    assert event.latency_ms is not None
    assert event.latency_ms >= 0
    assert event.error_code is None


def test_the_result_hash_is_sha256_of_rfc8785_of_the_content_list_received(log: AuditLog, wire: dict[str, Any]) -> None:
    """Several blocks, non-ASCII, U+2028 and floats: the hash is of the JCS bytes of exactly what the client got."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    [result] = call(server, ("rich", {"word": "naïve"}))
    [event] = stored(log)
    received = wire[event.request_id or ""]["content"]
    assert len(received) == 3
    assert [block.model_dump(by_alias=True, mode="json", exclude_none=True) for block in result.content] == received
    assert event.metadata["result_sha256"] == sha256_jcs(received)
    assert event.metadata["result_sha256"] != hashlib.sha256(json.dumps(received).encode()).hexdigest()


def test_a_raising_tool_is_a_failure_with_its_error(log: AuditLog, wire: dict[str, Any]) -> None:
    """The tool's exception class is the error_code (not FastMCP's ToolError wrapper); the client gets its error."""
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    [result] = call(server, ("boom", {"user": "ann"}))
    assert result.is_error
    [event] = stored(log)
    assert (event.outcome, event.error_code) == ("failure", "ValueError")
    assert "cannot reach the ledger for ann" in (event.error_message or "")
    assert event.metadata == {"arguments": {"user": "ann"}}
    assert event.latency_ms is not None


def test_an_error_result_is_a_failure_with_its_hash(log: AuditLog, wire: dict[str, Any]) -> None:
    """A tool that returns isError=True: outcome failure, error_code error_result, its text, and the content's hash."""
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    [result] = call(server, ("refuse", {}))
    assert result.is_error
    [event] = stored(log)
    received = wire[event.request_id or ""]
    assert received["isError"] is True
    assert (event.outcome, event.error_code, event.error_message) == ("failure", "error_result", "quota exceeded")
    assert event.metadata["result_sha256"] == sha256_jcs(received["content"])


def test_a_cancelled_call_is_recorded(log: AuditLog) -> None:
    """The client gives up on a running call: the server's task is cancelled and the event says so."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log, tenant="acme"))

    async def run() -> None:
        async with Client(server) as client:
            task = asyncio.create_task(client.call_tool("slow", {}))
            await probe.started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await client.call_tool("add", {"a": 1, "b": 1})).data == 2  # the session still works

    asyncio.run(run())
    events = stored(log)
    slow = [e for e in events if e.target_id == "slow"]
    assert [(e.outcome, e.error_code, e.error_message) for e in slow] == [("failure", "cancelled", None)]


def test_a_timed_out_call_is_recorded(log: AuditLog) -> None:
    """A FastMCP tool timeout (MCPError raised from None over a TimeoutError) is error_code timeout."""
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    [result] = call(server, ("deadline", {}))
    assert result.is_error
    [event] = stored(log)
    assert (event.outcome, event.error_code) == ("failure", "timeout")
    assert "timed out" in (event.error_message or "")


def test_concurrent_calls_never_mix_request_ids(log: AuditLog, wire: dict[str, Any]) -> None:
    """30 interleaved calls on one session: each event has the request id its own tool run saw, all distinct."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log, tenant="acme"))

    async def run() -> list[Any]:
        async with Client(server) as client:
            return await asyncio.gather(*(client.call_tool("whoami", {"i": i}) for i in range(30)))

    results = asyncio.run(run())
    events = stored(log)
    assert len(events) == 30
    assert len({e.request_id for e in events}) == 30
    for event in events:
        i = event.metadata["arguments"]["i"]
        assert event.request_id == probe.request_ids[i] == results[i].data
        assert event.metadata["result_sha256"] == sha256_jcs(wire[event.request_id or ""]["content"])


def test_a_secret_in_the_arguments_never_reaches_disk(db_url: str, tmp_path: Path) -> None:
    """A password argument, echoed by the tool's result and by its error, is in no byte of the DB, its WAL or the spool."""
    log = AuditLog(db_url, spool_dir=tmp_path / "spool", writer="thread")
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme", results="full"))
    call(server, ("login", {"user": "ann", "password": SECRET}), ("login", {"user": "bad", "password": SECRET}))
    events = stored(log)
    assert [e.outcome for e in events] == ["success", "failure"]
    assert all(e.metadata["arguments"]["password"] == "[REDACTED]" for e in events)
    assert events[0].metadata["result"] == [{"type": "text", "text": "welcome ann, password [REDACTED] accepted"}]
    assert events[1].error_message is not None
    assert "wrong password [REDACTED] for bad" in events[1].error_message
    open_files = [p for p in tmp_path.rglob("*") if p.is_file()]  # the WAL and spool segments, before close
    segments = [p for p in open_files if p.suffix == ".seg"]
    assert segments
    assert any(b"wrong password [REDACTED] for bad" in p.read_bytes() for p in segments)  # the events are in there
    assert any(p.name.endswith("-wal") for p in open_files)
    for path in open_files:
        assert SECRET.encode() not in path.read_bytes(), path
    log.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


def test_oversized_arguments_keep_the_event_and_its_hash(log: AuditLog, wire: dict[str, Any]) -> None:
    """Arguments past the 64 KiB event limit are replaced by a note; the call and its result hash are still recorded."""
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme", results="full"))
    [result] = call(server, ("rich", {"word": "w" * 100_000}))
    assert not result.is_error
    [event] = stored(log)
    assert event.metadata["arguments"] is None
    assert event.metadata["arguments_omitted"] == "over the event size limit"
    assert event.metadata["result_omitted"] == "over the event size limit"
    assert event.metadata["result_sha256"] == sha256_jcs(wire[event.request_id or ""]["content"])


def test_an_integer_json_cannot_keep_exactly_is_kept_as_text(log: AuditLog) -> None:
    """2**60 in the arguments (valid MCP JSON, refused by emit as a number) is recorded as its decimal text."""
    server = FastMCP("demo")

    @server.tool
    def ident(n: int) -> str:
        return str(n)

    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    [result] = call(server, ("ident", {"n": 2**60}))
    assert result.data == str(2**60)
    [event] = stored(log)
    assert event.metadata["arguments"] == {"n": str(2**60)}
    assert event.outcome == "success"


# -- who, which tenant, which results ---------------------------------------------------------


def test_the_actor_is_the_access_tokens_client_over_authenticated_http(log: AuditLog) -> None:
    """With auth, ("client", client_id) of the token wins over the actor callable and the client name."""
    server = make_server(Probe(), auth=StaticTokenVerifier({"tok-1": {"client_id": "svc-42", "scopes": []}}))
    server.add_middleware(AuditMiddleware(log, tenant="acme", actor=lambda c: ("user", "from-callable")))

    async def run() -> None:
        async with asgi_client(server, auth="tok-1") as client:
            assert (await client.call_tool("add", {"a": 1, "b": 2})).data == 3

    asyncio.run(run())
    [event] = stored(log)
    assert (event.actor_type, event.actor_id, event.source) == ("client", "svc-42", "demo")
    assert event.request_id


def test_without_auth_the_actor_callable_then_the_client_name(log: AuditLog) -> None:
    """The callable's pair when it gives one (it sees the call), else ("agent", the name the client declared)."""
    seen: list[McpCall] = []

    def actor(c: McpCall) -> tuple[str, str] | None:
        seen.append(c)
        return ("user", "u-7") if c.arguments.get("a") == 1 else None

    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme", actor=actor))
    call(server, ("add", {"a": 1, "b": 0}), ("add", {"a": 2, "b": 0}), name="claude-code")
    assert [(e.actor_type, e.actor_id) for e in stored(log)] == [("user", "u-7"), ("agent", "claude-code")]
    assert [(c.kind, c.name, c.client_name, c.client_id, c.server) for c in seen] == [
        ("tool", "add", "claude-code", None, "demo")] * 2


def test_tenant_from_a_callable_or_the_bound_context(log: AuditLog) -> None:
    """tenant(call) picks the chain; with tenant=None the context bound around the server's work applies."""
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant=lambda c: "globex" if c.arguments["a"] else None))
    with log.context(tenant_id="initech"):
        call(server, ("add", {"a": 1, "b": 0}), ("add", {"a": 0, "b": 0}))
    assert [e.target_id for e in stored(log, "globex")] == ["add"]
    assert [e.target_id for e in stored(log, "initech")] == ["add"]


def test_no_tenant_refuses_the_call_before_the_tool_runs(log: AuditLog) -> None:
    """An event that cannot be recorded must not hide a side effect: the tool does not run, the client gets an error."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log))

    async def run() -> None:
        async with Client(server) as client:
            with pytest.raises(mcp.MCPError, match="Internal server error"):  # the server's log names the tenant
                await client.call_tool("add", {"a": 1, "b": 1})

    asyncio.run(run())
    assert probe.ran == []
    assert log.stats()["emitted"] == 0


def test_a_bad_actor_pair_refuses_the_call_before_the_tool_runs(log: AuditLog) -> None:
    """actor() returning something that is not a (type, id) pair is the app's bug: caught before the side effect."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log, tenant="acme", actor=lambda c: ("user", 7)))  # type: ignore[arg-type,return-value]

    async def run() -> None:
        async with Client(server) as client:
            with pytest.raises(mcp.MCPError):
                await client.call_tool("add", {"a": 1, "b": 1})

    asyncio.run(run())
    assert probe.ran == []


@pytest.mark.allow_sealog_errors
def test_an_event_that_cannot_be_spooled_after_the_call_does_not_hide_its_result(
        log: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    """The tool ran: the client gets its answer, and the lost event is logged by action, target and request id."""
    probe = Probe()
    server = make_server(probe)
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    log.close()
    [result] = call(server, ("add", {"a": 1, "b": 1}))
    assert (result.data, probe.ran) == (2, ["add"])
    [lost] = [r.getMessage() for r in caplog.records if r.name == "sealog" and "mcp.tool.call" in r.getMessage()]
    assert "('tool', 'add')" in lost
    assert "closed" in lost


def test_results_none_keeps_no_hash_and_full_keeps_the_redacted_content(log: AuditLog, wire: dict[str, Any]) -> None:
    """results="none": arguments only; results="full": the content list as received, beside its hash."""
    for mode, tenant in (("none", "acme"), ("full", "globex")):
        server = make_server(Probe())
        server.add_middleware(AuditMiddleware(log, tenant=tenant, results=mode))  # type: ignore[arg-type]
        call(server, ("rich", {"word": "w"}))
    [none] = stored(log, "acme")
    [full] = stored(log, "globex")
    assert none.metadata == {"arguments": {"word": "w"}}
    received = wire[full.request_id or ""]["content"]
    assert full.metadata["result"] == received
    assert full.metadata["result_sha256"] == sha256_jcs(received)
    with pytest.raises(ValueError, match="results must be"):
        AuditMiddleware(log, results="all")  # type: ignore[arg-type]


def test_resources_and_prompts_are_audited(log: AuditLog, wire: dict[str, Any]) -> None:
    """resources/read -> mcp.resource.read on the URI, prompts/get -> mcp.prompt.get, each with the wire hash."""
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme"))

    async def run() -> None:
        async with Client(server) as client:
            [contents] = await client.read_resource("data://report")
            assert isinstance(contents, types.TextResourceContents)
            assert contents.text == "quarterly numbers"
            await client.get_prompt("summarize", {"topic": "sales"})

    asyncio.run(run())
    resource, prompt = stored(log)
    assert (resource.action, resource.target_type, resource.target_id) == ("mcp.resource.read", "resource", "data://report")
    assert resource.metadata["result_sha256"] == sha256_jcs(wire[resource.request_id or ""]["contents"])
    assert (prompt.action, prompt.target_type, prompt.target_id) == ("mcp.prompt.get", "prompt", "summarize")
    assert prompt.metadata["arguments"] == {"topic": "sales"}
    assert prompt.metadata["result_sha256"] == sha256_jcs(wire[prompt.request_id or ""]["messages"])


# -- the SDK's low-level Server ---------------------------------------------------------------


def make_lowlevel() -> Server[Any]:
    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "boom":
            raise RuntimeError("backend down")
        if params.name == "refuse":
            return types.CallToolResult(content=[types.TextContent(type="text", text="no")], is_error=True)
        await asyncio.sleep(0.001 * ((params.arguments or {}).get("i", 0) % 3))
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"{ctx.request_id} ☃")])

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        tools = [types.Tool(name=n, input_schema={"type": "object"}) for n in ("echo", "boom", "refuse")]
        return types.ListToolsResult(tools=tools)

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=str(params.uri), text="rows")])

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        message = types.PromptMessage(role="user", content=types.TextContent(type="text", text="go"))
        return types.GetPromptResult(messages=[message])

    return Server("lowdemo", on_call_tool=call_tool, on_list_tools=list_tools, on_read_resource=read_resource,
                  on_get_prompt=get_prompt)


def test_audit_server_records_the_same_events_for_the_lowlevel_sdk(log: AuditLog, wire: dict[str, Any]) -> None:
    """Tool (ok, raising, error result, concurrent), resource and prompt: same actions, ids, hashes as FastMCP."""
    server = audit_server(make_lowlevel(), log, tenant="acme")

    async def run() -> None:
        async with mcp.Client(server, mode="legacy", client_info=types.Implementation(name="sdk-agent", version="1")) as c:
            await asyncio.gather(*(c.call_tool("echo", {"i": i}) for i in range(10)))
            with pytest.raises(mcp.MCPError, match="backend down"):
                await c.call_tool("boom", {})
            assert (await c.call_tool("refuse", {})).is_error
            await c.read_resource("file:///tmp/rows.csv")
            await c.get_prompt("plan", {"goal": "ship"})

    asyncio.run(run())
    events = stored(log)
    tools = [e for e in events if e.action == "mcp.tool.call"]
    assert len(tools) == 12
    echoes = [e for e in tools if e.target_id == "echo"]
    assert len({e.request_id for e in echoes}) == 10
    for event in echoes:
        content = wire[event.request_id or ""]["content"]
        assert content == [{"type": "text", "text": f"{event.request_id} ☃"}]
        assert event.metadata["result_sha256"] == sha256_jcs(content)
        assert (event.source, event.actor_type, event.actor_id) == ("lowdemo", "agent", "sdk-agent")
    [boom] = [e for e in tools if e.target_id == "boom"]
    assert (boom.outcome, boom.error_code, boom.error_message) == ("failure", "RuntimeError", "backend down")
    [refuse] = [e for e in tools if e.target_id == "refuse"]
    assert (refuse.outcome, refuse.error_code) == ("failure", "error_result")
    [resource] = [e for e in events if e.action == "mcp.resource.read"]
    assert resource.target_id == "file:///tmp/rows.csv"
    assert resource.metadata["result_sha256"] == sha256_jcs(wire[resource.request_id or ""]["contents"])
    [prompt] = [e for e in events if e.action == "mcp.prompt.get"]
    assert (prompt.target_id, prompt.metadata["arguments"]) == ("plan", {"goal": "ship"})
    assert prompt.metadata["result_sha256"] == sha256_jcs(wire[prompt.request_id or ""]["messages"])
    with pytest.raises(ValueError, match="already audited"):
        audit_server(server, log)


def test_audit_server_records_a_cancelled_handler(log: AuditLog) -> None:
    """A low-level handler cancelled by the client's cancellation is recorded as cancelled."""
    started = asyncio.Event()

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        started.set()
        await asyncio.sleep(60)
        return types.CallToolResult(content=[])

    server = audit_server(Server("lowdemo", on_call_tool=call_tool), log, tenant="acme")

    async def run() -> None:
        async with mcp.Client(server, mode="legacy") as client:
            task = asyncio.create_task(client.call_tool("wait", {}))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    [event] = stored(log)
    assert (event.target_id, event.outcome, event.error_code) == ("wait", "failure", "cancelled")


# -- receipts: an independent verifier (the README's) ------------------------------------------

# ---- begin README verifier ----
def verify_receipt(receipt: str, verifier_key: str) -> dict[str, Any]:
    """Check a sealog receipt (C2SP tlog-proof) offline; return the event it proves. Raises ValueError."""
    head, _, note = receipt.partition("\n\n")
    lines = head.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1" or not lines[1].startswith("extra ") or not lines[2].startswith("index "):
        raise ValueError("not a tlog-proof with an event")
    event, index = base64.b64decode(lines[1][6:], validate=True), int(lines[2][6:])
    proof = [base64.b64decode(line, validate=True) for line in lines[3:]]
    # The checkpoint: origin, tree size, root hash; then the signature lines of a C2SP signed note.
    body, _, signatures = note.partition("\n\n")
    origin, size, root = body.split("\n")[:3]
    name, key_id, key = verifier_key.split("+", 2)
    public = base64.b64decode(key)[1:]  # 0x01 (Ed25519) || 32-byte key
    for line in signatures.splitlines():
        signer, _, blob = line.removeprefix("\u2014 ").partition(" ")
        signature = base64.b64decode(blob)
        if signer == name and signature[:4] == bytes.fromhex(key_id):
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(signature[4:], (body + "\n").encode())
                break
            except InvalidSignature:
                raise ValueError("the checkpoint's signature is invalid") from None
    else:
        raise ValueError("the checkpoint is not signed by this key")
    # RFC 9162 2.1.3.2: the event's leaf hash and the proof give the signed root.
    def sha(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()
    fn, sn, r = index, int(size) - 1, sha(b"\x00" + event)
    if fn > sn:
        raise ValueError("the index is outside the tree")
    for p in proof:
        if sn == 0:
            raise ValueError("the proof is too long")
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != base64.b64decode(root):
        raise ValueError("the event is not in the signed tree")
    return {"origin": origin, "tree_size": int(size), "index": index, "event": json.loads(event)}
# ---- end README verifier ----


@pytest.fixture
def signed_log(db_url: str, tmp_path: Path) -> Iterator[tuple[AuditLog, str]]:
    signer, verifier = generate_key("audit.example.com")
    key = tmp_path / "signer.key"
    key.write_text(signer)
    with AuditLog(db_url, spool_dir=tmp_path / "spool", writer="thread", signing_key=key,
                  checkpoint_every=3600) as log:
        yield log, verifier


def flip(text: str, at: int) -> str:
    """One byte of a base64 payload changed: the same length, still valid base64."""
    data = bytearray(base64.b64decode(text))
    data[at] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def test_an_mcp_events_receipt_verifies_independently_and_one_byte_breaks_it(signed_log: tuple[AuditLog, str]) -> None:
    """The receipt of an audited tool call proves that event; a byte changed in the event, a proof hash or the checkpoint fails."""
    log, verifier = signed_log
    server = make_server(Probe())
    server.add_middleware(AuditMiddleware(log, tenant="acme"))
    call(server, *[("add", {"a": i, "b": 1}) for i in range(11)])
    events = stored(log)
    target = events[6]
    receipt = log.receipt("acme", target.event_id)
    assert receipt is not None
    proved = verify_receipt(receipt, verifier)
    assert (proved["origin"], proved["tree_size"], proved["index"]) == ("sealog/acme", 11, 6)
    assert proved["event"]["event_id"] == target.event_id
    assert (proved["event"]["action"], proved["event"]["request_id"]) == ("mcp.tool.call", target.request_id)
    assert proved["event"]["metadata"] == target.metadata
    event_bytes, _, _ = sealog_verify_receipt(receipt, [Verifier.from_text(verifier)], origin="sealog/acme")
    assert json.loads(event_bytes) == proved["event"]

    lines = receipt.split("\n")
    assert lines[1].startswith("extra ")
    assert len(lines[3]) == 44  # the first inclusion hash
    root = receipt.split("\n\n")[1].split("\n")[2]
    forged = {
        "event": ("\n".join([lines[0], "extra " + flip(lines[1][6:], 40), *lines[2:]]), "signed tree"),
        "inclusion hash": ("\n".join([*lines[:3], flip(lines[3], 5), *lines[4:]]), "signed tree"),
        "checkpoint size": (receipt.replace("\nsealog/acme\n11\n", "\nsealog/acme\n12\n"), "signature"),
        "checkpoint root": (receipt.replace(f"\n{root}\n", f"\n{flip(root, 31)}\n"), "signature"),
    }
    for what, (text, reason) in forged.items():
        assert text != receipt
        assert len(text) == len(receipt), what
        with pytest.raises(ValueError, match=reason):
            verify_receipt(text, verifier)
        with pytest.raises(ReceiptError):  # sealog's own verifier agrees
            sealog_verify_receipt(text, [Verifier.from_text(verifier)])
    _, other = generate_key("audit.example.com")
    with pytest.raises(ValueError, match="not signed by this key"):
        verify_receipt(receipt, other)


# -- the gateway example -------------------------------------------------------------------------


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_gateway_example_audits_each_forwarded_call_with_the_backends_name(default_log: AuditLog) -> None:
    """The gateway starts backend.py over stdio; each call through it is an event with source "inventory"."""
    gateway = load("example_mcp_gateway", EXAMPLES / "mcp_gateway" / "gateway.py")

    async def run() -> list[Any]:
        async with Client(gateway.build_gateway()) as agent:
            order = {"sku": "sku-1", "quantity": 2, "api_key": SECRET}
            return [await agent.call_tool("inventory_stock", {"sku": "sku-1"}),
                    await agent.call_tool("inventory_reserve", order),
                    await agent.call_tool("inventory_reserve", {**order, "quantity": 99}, raise_on_error=False)]

    stock, reserved, refused = asyncio.run(run())
    assert (stock.data, reserved.data, refused.is_error) == (12, "reserved 2 x sku-1", True)
    events = stored(default_log, "demo")
    assert [(e.source, e.target_id, e.outcome) for e in events] == [
        ("inventory", "stock", "success"), ("inventory", "reserve", "success"), ("inventory", "reserve", "failure")]
    assert all(e.request_id for e in events)
    assert events[1].metadata["arguments"] == {"sku": "sku-1", "quantity": 2, "api_key": "[REDACTED]"}
    assert events[2].error_code == "error_result"


def test_readme_shows_the_receipt_verifier_these_tests_run() -> None:
    """README's "Auditing agents" carries, word for word, the third-party verifier checked above."""
    source = Path(__file__).read_text()
    begin, end = "# ---- begin README verifier ----\n", "# ---- end README verifier ----"
    verifier = source[source.index(begin) + len(begin):source.index(end)].strip()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "def verify_receipt(receipt: str, verifier_key: str)" in verifier
    assert verifier in readme
