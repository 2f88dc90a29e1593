"""Stores, chosen by URL scheme; each driver is imported only when its scheme is used."""

from __future__ import annotations

from .._chain import GENESIS, Sealed, seal, verify_chain
from .base import ChainHead, Page, Query, Store, checked_head


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


__all__ = ["GENESIS", "ChainHead", "Page", "Query", "Sealed", "Store", "checked_head", "open_store", "seal",
           "verify_chain"]
"""What a Store of your own needs: seal() to extend chains, checked_head() to trust a head."""
