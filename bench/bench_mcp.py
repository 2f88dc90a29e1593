"""The per-call cost of auditing MCP tool calls: FastMCP's AuditMiddleware and the SDK's audit_server.

Each contender is a client kept connected to its own server in one event loop, making
sequential calls of a trivial tool (``add(a, b)``), the way an agent does:

- FastMCP in-memory ``Client(server)`` (JSON-RPC over memory streams, FastMCP's whole
  request path): bare, with ``AuditMiddleware`` (results hashed, the default), and with
  ``results="full"``;
- the SDK's ``mcp.Client(lowlevel_server)`` (its in-process direct dispatch, far less work
  per call, so the same audit cost is a larger share): bare and with ``audit_server``.

The audited contenders emit one event per call (the default writer process, SQLite in a temp dir,
flushed untimed after each batch). Figures: the median over batches of the mean µs per
call (wall clock) and calls/s, and the process CPU time per call (steadier when other work
shares the machine). Bar: the middleware costs <= 10% of a trivial FastMCP tool call
(calls/s with / without >= 0.909, and the same ratio of CPU time).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import mcp
import mcp_types as types
from fastmcp import Client, FastMCP
from mcp.server.lowlevel import Server

from common import Bar, Contender, header, interleaved, median, parser, quantile, sqlite_url, table, temp_dir, verdict
from sealog import AuditLog
from sealog.integrations.mcp import AuditMiddleware, audit_server

BATCH_SIZE = 50


def fastmcp_server(middleware: AuditMiddleware | None) -> FastMCP:
    server = FastMCP("bench")

    @server.tool
    def add(a: int, b: int) -> int:
        return a + b

    if middleware is not None:
        server.add_middleware(middleware)
    return server


def lowlevel_server() -> Server[Any]:
    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(args["a"] + args["b"]))])

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="add", input_schema={"type": "object"})])

    return Server("bench-low", on_call_tool=call_tool, on_list_tools=list_tools)


class Clients:
    """The clients live in one task of a loop in a thread (anyio scopes end in the task that began them);
    each timed batch runs in that loop, so the hop from the bench's thread is once per batch, alike for all."""

    def __init__(self, clients: list[Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.holder = asyncio.run_coroutine_threadsafe(self.hold(clients), self.loop)
        self.ready.wait(60)

    async def hold(self, clients: list[Any]) -> None:
        self.stop = asyncio.Event()
        async with AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            self.ready.set()
            await self.stop.wait()

    def runner(self, client: Any, cpu: list[float]) -> Callable[[int], None]:
        """``cpu`` gets each batch's process CPU time per call (ns): robust to other load on the machine."""
        async def batch(n: int) -> None:
            for i in range(n):
                await client.call_tool("add", {"a": i, "b": 1})

        def run(n: int) -> None:
            started = time.process_time_ns()
            asyncio.run_coroutine_threadsafe(batch(n), self.loop).result()
            cpu.append((time.process_time_ns() - started) / n)

        return run

    def close(self) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.holder.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--batches", type=int, help="timed batches per contender (default 60, quick 8)")
    args = cli.parse_args()
    batches = args.batches or (8 if args.quick else 60)
    header("MCP tool calls: audited vs bare, in-memory client", args.quick, batches=batches, batch_size=BATCH_SIZE)
    logging.getLogger("fastmcp").setLevel(logging.WARNING)
    with temp_dir() as tmp:
        log = AuditLog(sqlite_url(tmp / "audit.db"), spool_dir=tmp / "spool")  # the default: a writer process
        try:
            if not log.flush(30):
                print("the store did not come up", file=sys.stderr)
                return 2

            def settle() -> None:
                log.flush(60)

            names = ["fastmcp", "fastmcp + audit", "fastmcp + audit full", "sdk lowlevel", "sdk lowlevel + audit"]
            clients = [
                Client(fastmcp_server(None)),
                Client(fastmcp_server(AuditMiddleware(log, tenant="acme"))),
                Client(fastmcp_server(AuditMiddleware(log, tenant="acme", results="full"))),
                mcp.Client(lowlevel_server()),
                mcp.Client(audit_server(lowlevel_server(), log, tenant="acme")),
            ]
            connected = Clients(clients)
            cpu: dict[str, list[float]] = {name: [] for name in names}
            contenders = [Contender(name, connected.runner(client, cpu[name]),
                                    settle if "audit" in name else lambda: None)
                          for name, client in zip(names, clients, strict=True)]
            samples = interleaved(contenders, batches=batches, batch_size=BATCH_SIZE, warmup=2)
            stats = log.stats()
            connected.close()
        finally:
            log.close()

    us = {name: median(s) / 1000 for name, s in samples.items()}
    cpu_us = {name: median(s[-len(samples[name]):]) / 1000 for name, s in cpu.items()}  # timed batches only
    base_of = {name: name.split(" + ")[0] for name in samples}
    table(
        ("contender", "median µs/call", "p10", "p90", "calls/s", "calls/s vs bare", "added µs", "CPU µs/call",
         "added CPU µs"),
        [(name, us[name], quantile(s, 0.1) / 1000, quantile(s, 0.9) / 1000, 1e6 / us[name],
          us[base_of[name]] / us[name], us[name] - us[base_of[name]], cpu_us[name],
          cpu_us[name] - cpu_us[base_of[name]])
         for name, s in samples.items()],
    )
    print(f"events emitted {stats['emitted']:,}, stored {stats['stored']:,}, errors {stats['errors']}\n")
    return verdict(
        [Bar("FastMCP calls/s: with AuditMiddleware / without", us["fastmcp"] / us["fastmcp + audit"],
             0.909, None, True),
         Bar("FastMCP CPU per call: without / with AuditMiddleware", cpu_us["fastmcp"] / cpu_us["fastmcp + audit"],
             0.909, None, True)],
        args.check,
    )


if __name__ == "__main__":
    sys.exit(main())
