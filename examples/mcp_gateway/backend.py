"""A tiny MCP backend, "inventory", that the gateway forwards to. Run alone: ``python backend.py`` (stdio)."""

from __future__ import annotations

from fastmcp import FastMCP

mcp = FastMCP("inventory")
STOCK = {"sku-1": 12, "sku-2": 0}


@mcp.tool
def stock(sku: str) -> int:
    """How many of an item are in stock."""
    if sku not in STOCK:
        raise ValueError(f"unknown item {sku}")
    return STOCK[sku]


@mcp.tool
def reserve(sku: str, quantity: int, api_key: str) -> str:
    """Reserve items (the api_key is a stand-in for a credential an agent passes along)."""
    if STOCK.get(sku, 0) < quantity:
        raise ValueError(f"only {STOCK.get(sku, 0)} of {sku} left")
    STOCK[sku] -= quantity
    return f"reserved {quantity} x {sku}"


if __name__ == "__main__":
    mcp.run()  # stdio: the gateway starts this script as its backend
