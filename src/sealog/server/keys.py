"""API keys: shown once, stored as SHA-256, scoped to one tenant or to all (admin).

A key is 32 random bytes. Slow password hashes (bcrypt, argon2) exist to resist guessing
low-entropy secrets; nobody guesses 256 random bits, so a fast hash is right here and
keeps every request cheap. The stored hash is looked up, then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from .. import _timefmt as timefmt
from .._errors import StoreUnavailable
from ..stores.base import API_KEYS_TABLE
from ..stores.sqlite import create_private, path_from_url

if TYPE_CHECKING:
    import psycopg

PREFIX = "slk_"
CREATE_TABLE = API_KEYS_TABLE


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str | None
    """None for an admin key, which may act for every tenant."""
    name: str
    created_at: str
    revoked_at: str | None

    @property
    def admin(self) -> bool:
        return self.tenant_id is None


def _is_psycopg_error(exc: BaseException) -> TypeGuard[psycopg.Error]:
    """Without importing psycopg on SQLite: a server down or a wrong password is an outage (503), not a 500."""
    import psycopg

    return isinstance(exc, psycopg.Error)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The ``sealog_api_keys`` table, in the same database as the events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._postgres = url.startswith(("postgresql:", "postgres:"))
        self._mark = "%s" if self._postgres else "?"

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        try:
            if self._postgres:
                import psycopg

                with psycopg.connect(self.url, autocommit=True) as conn:
                    yield conn.cursor()
            else:
                create_private(path_from_url(self.url))
                lite = sqlite3.connect(path_from_url(self.url), isolation_level=None)
                try:
                    yield lite.cursor()
                finally:
                    lite.close()
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreUnavailable(f"API keys: {exc}") from exc
        except Exception as exc:
            if not self._postgres or not _is_psycopg_error(exc):
                raise
            from ..stores.postgres import translate

            raise translate(exc) from exc

    def migrate(self) -> None:
        with self._cursor() as cur:
            if self._postgres:  # the writer role may read keys but not create tables
                cur.execute("SELECT to_regclass('sealog_api_keys')")
                if cur.fetchone() != (None,):
                    return
            cur.execute(CREATE_TABLE)

    def create(self, tenant_id: str | None, name: str = "") -> tuple[ApiKey, str]:
        """A new key; the secret is returned here and never again."""
        self.migrate()
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(uuid.uuid4().hex[:12], tenant_id, name, timefmt.now(), None)
        m = self._mark
        with self._cursor() as cur:
            cur.execute(f"INSERT INTO sealog_api_keys VALUES ({m}, {m}, {m}, {m}, {m}, NULL)",
                        (key.key_id, digest(secret), tenant_id, name, key.created_at))
        return key, secret

    def list(self) -> list[ApiKey]:
        self.migrate()
        with self._cursor() as cur:
            cur.execute("SELECT key_id, tenant_id, name, created_at, revoked_at FROM sealog_api_keys "
                        "ORDER BY created_at")
            return [ApiKey(*row) for row in cur.fetchall()]

    def revoke(self, key_id: str) -> bool:
        self.migrate()
        m = self._mark
        with self._cursor() as cur:
            cur.execute(f"UPDATE sealog_api_keys SET revoked_at = {m} WHERE key_id = {m} AND revoked_at IS NULL",
                        (timefmt.now(), key_id))
            return bool(cur.rowcount)

    def by_id(self, key_id: str) -> ApiKey | None:
        """The live key with this id, or None (unknown or revoked): what a viewer session holds."""
        m = self._mark
        with self._cursor() as cur:
            cur.execute(f"SELECT key_id, tenant_id, name, created_at, revoked_at FROM sealog_api_keys "
                        f"WHERE key_id = {m}", (key_id,))
            row = cur.fetchone()
        return None if row is None or row[4] is not None else ApiKey(*row)

    def check(self, secret: str) -> ApiKey | None:
        """The live key this secret belongs to, or None (unknown or revoked)."""
        wanted = digest(secret)
        m = self._mark
        with self._cursor() as cur:
            cur.execute(f"SELECT key_hash, key_id, tenant_id, name, created_at, revoked_at "
                        f"FROM sealog_api_keys WHERE key_hash = {m}", (wanted,))
            row = cur.fetchone()
        if row is None or not hmac.compare_digest(row[0], wanted) or row[5] is not None:
            return None
        return ApiKey(*row[1:])
