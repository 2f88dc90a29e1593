"""Who is calling: bearer keys for the API, server-side sessions for the viewer."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from starlette.requests import Request

from ._records import SharedRecords
from .keys import ApiKey, KeyStore

SESSION_COOKIE = "sealog_session"
SESSION_SECONDS = 8 * 3600
_CACHE_SECONDS = 5.0  # a revoked key stops working within this long


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Auth:
    """Checks keys (with a short cache, so each request is not a database round trip).

    A viewer session is a random id in a cookie, mapped to the key's id (never its secret) in
    this process's memory and in a shared record, so every worker of ``sealog serve --workers N``
    honours a sign-in, and a restart keeps it. The key is re-checked, so revoking it ends its sessions.
    """

    def __init__(self, keys: KeyStore, directory: Path | None = None) -> None:
        self.keys = keys
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._sessions: dict[str, tuple[str, float]] = {}  # unshared sessions: id -> (key id, expiry)
        self._shared = SharedRecords(directory, SESSION_SECONDS)
        self._lock = threading.Lock()

    def check(self, secret: str) -> ApiKey | None:
        return self._cached(secret, self.keys.check)

    def _cached(self, lookup: str, find: Callable[[str], ApiKey | None]) -> ApiKey | None:
        now = time.monotonic()
        cached = self._cache.get(lookup)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        key = find(lookup)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[lookup] = (now, key)
        return key

    def bearer(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise HTTPError(401, "missing API key: send 'Authorization: Bearer KEY'")
        key = self.check(secret.strip())
        if key is None:
            raise HTTPError(401, "unknown or revoked API key")
        return key

    def start_session(self, key: ApiKey) -> str:
        session_id = secrets.token_urlsafe(32)
        expires = time.time() + SESSION_SECONDS
        if not self._shared.put(_SESSION + session_id, f"{expires}\n{key.key_id}".encode()):
            with self._lock:  # no shared directory (or it failed): this worker alone knows the session
                self._sessions[session_id] = (key.key_id, expires)
        return session_id

    def end_session(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)
        if session_id:
            self._shared.delete(_SESSION + session_id)

    def session(self, request: Request) -> ApiKey | None:
        """The viewer's signed-in key, re-checked so a revoked key ends its sessions."""
        session_id = request.cookies.get(SESSION_COOKIE, "")
        if not session_id:
            return None
        found = self._sessions.get(session_id)
        if found is None:  # the shared record: a sign-out on another worker ends it here too
            found = _session_record(self._shared.get(_SESSION + session_id))
        if found is None or found[1] < time.time():
            return None
        return self._cached(_BY_ID + found[0], lambda lookup: self.keys.by_id(lookup.removeprefix(_BY_ID)))


_SESSION: Final = "session\n"
_BY_ID: Final = "\x00id:"
"""Cache entries by key id: no secret starts with a NUL, so the two lookups never meet."""


def _session_record(data: bytes | None) -> tuple[str, float] | None:
    if data is None:
        return None
    expires, _, key_id = data.decode(errors="replace").partition("\n")
    try:
        return key_id, float(expires)
    except ValueError:
        return None


def tenant_for(key: ApiKey, requested: str | None) -> str:
    """The tenant a request may act on: its key's, or any for an admin key (which must say)."""
    if key.admin:
        if not requested:
            raise HTTPError(400, "tenant_id is required with an admin key")
        return requested
    assert key.tenant_id is not None
    if requested and requested != key.tenant_id:
        raise HTTPError(403, f"this key is for tenant {key.tenant_id!r}, not {requested!r}")
    return key.tenant_id
