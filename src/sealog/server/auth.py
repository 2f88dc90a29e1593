"""Who is calling: bearer keys for the API, server-side sessions for the viewer."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request

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


@dataclass
class Session:
    secret: str
    """Kept in this process's memory only; the cookie holds a random session id."""
    expires: float


class Auth:
    """Checks keys (with a short cache, so each request is not a database round trip)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def check(self, secret: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._cache.get(secret)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        key = self.keys.check(secret)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[secret] = (now, key)
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

    def start_session(self, secret: str) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session_id] = Session(secret, time.monotonic() + SESSION_SECONDS)
        return session_id

    def end_session(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def session(self, request: Request) -> ApiKey | None:
        """The viewer's signed-in key, re-checked so a revoked key ends its sessions."""
        session = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is None or session.expires < time.monotonic():
            return None
        return self.check(session.secret)


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
