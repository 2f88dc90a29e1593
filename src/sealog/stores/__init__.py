"""Stores, chosen by URL scheme; each driver is imported only when its scheme is used."""

from __future__ import annotations

from .base import ChainHead, Page, Query, Store


def open_store(url: str) -> Store:
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ValueError(f"{url.split(':', maxsplit=1)[0]} URLs need the postgres extra: {exc}") from None
        return PostgresStore(url)
    if url.startswith("memory:"):
        from ..testing import MemoryStore

        return MemoryStore()
    raise ValueError(f"unknown store URL {url!r}: use sqlite:///path.db or postgresql://...")


__all__ = ["ChainHead", "Page", "Query", "Store", "open_store"]
