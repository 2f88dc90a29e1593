"""An MCP gateway audited by sealog: every tool call forwarded to a backend is one event.

``python gateway.py`` runs a demo: it starts the gateway, whose backend ``backend.py`` runs as
a child process over stdio, makes a few tool calls through it as an agent would, and prints
the audit trail. ``python gateway.py serve`` serves the gateway over HTTP on port 8000.
Events go to ``SEALOG_URL`` (default ``sqlite:///sealog.db`` here); ``sealog query --tenant demo``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from fastmcp import Client, FastMCP
from fastmcp.server import create_proxy

import sealog
from sealog.integrations.mcp import AuditMiddleware

TENANT = "demo"
HERE = Path(__file__).resolve().parent
BACKENDS = {"inventory": HERE / "backend.py"}
"""Backend name -> what to reach it with: a script (stdio), a URL, or a FastMCP server."""


def build_gateway(backends: dict[str, object] | None = None) -> FastMCP:
    """One proxy per backend, named after it and audited, mounted under its name on the gateway.

    The middleware sits on each backend's proxy, so an event's ``source`` is the backend's
    name and its target the tool's own name there; ``request_id`` is the agent's MCP request id.
    """
    gateway = FastMCP("gateway")
    for name, target in (backends or BACKENDS).items():
        proxy = create_proxy(target, name=name)  # type: ignore[arg-type]  # a script path, URL or server
        proxy.add_middleware(AuditMiddleware(tenant=TENANT))  # log=None: sealog's default, from SEALOG_URL
        gateway.mount(proxy, namespace=name)
    return gateway


async def demo(gateway: FastMCP) -> None:
    async with Client(gateway) as agent:
        print("tools:", [tool.name for tool in await agent.list_tools()])
        print("stock:", (await agent.call_tool("inventory_stock", {"sku": "sku-1"})).data)
        order = {"sku": "sku-1", "quantity": 2, "api_key": "sk-demo-12345"}
        print("reserve:", (await agent.call_tool("inventory_reserve", order)).data)
        failed = await agent.call_tool("inventory_reserve", {**order, "sku": "sku-2"}, raise_on_error=False)
        print("reserve sku-2:", failed.content[0].text)


def main() -> None:
    gateway = build_gateway()
    if sys.argv[1:] == ["serve"]:
        gateway.run(transport="http", port=8000)
        return
    asyncio.run(demo(gateway))
    log = sealog.get_default()
    log.flush(5)
    print("\naudit trail:")
    for event in reversed(log.query(TENANT, limit=10).events):
        print(f"  {event.action} {event.source}/{event.target_id} request={event.request_id} "
              f"{event.outcome}{' ' + event.error_code if event.error_code else ''} "
              f"arguments={event.metadata.get('arguments')}")


if __name__ == "__main__":
    main()
