"""The viewer: server-rendered pages for people who read audit logs. Autoescaped throughout:
event contents are attacker-controlled, so a ``<script>`` in metadata renders as text.
Every store call runs in a worker pool (a verify in the heavy one), never on the event loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .._chain import GENESIS, seal
from .._errors import InvalidQuery
from .._event import FIELDS, JSON_FIELDS, SEAL_FIELDS, Event
from .._log import AuditLog
from .._note import Verifier
from . import proofs
from .api import check_cursor, check_text_params
from .auth import SESSION_COOKIE, SESSION_SECONDS, Auth, HTTPError, tenant_for
from .guard import Offload
from .keys import ApiKey

FILTERS = ("action", "actor_id", "target_id", "outcome", "since", "until")
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


class Viewer:
    def __init__(self, log: AuditLog, auth: Auth, offload: Offload, *, secure_cookies: bool = False,
                 verifier: Verifier | None = None) -> None:
        self.log = log
        self.auth = auth
        self.offload = offload
        self.secure_cookies = secure_cookies
        self.verifier = verifier
        """Checks the stored checkpoints' signatures; None: the pages say the signature was not checked."""
        self.log_name = log._checkpoints.name

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers={
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            "x-frame-options": "DENY", "referrer-policy": "same-origin"})

    async def _who(self, request: Request) -> tuple[ApiKey, str] | None:
        key = await self.offload.read(self.auth.session, request)
        if key is None:
            return None
        tenant = request.cookies.get("sealog_tenant") if key.admin else key.tenant_id
        return (key, tenant) if tenant else None

    async def home(self, request: Request) -> Response:
        if await self._who(request) is not None:
            return RedirectResponse("/events", status_code=303)
        return self.render("signin.html", admin_tenant=True)

    async def signin(self, request: Request) -> Response:
        _same_origin(request)
        form = await request.form()
        secret = str(form.get("api_key", "")).strip()
        key = await self.offload.read(self.auth.check, secret) if secret else None
        if key is None:
            return self.render("signin.html", 401, error="Unknown or revoked API key.", admin_tenant=True)
        tenant = str(form.get("tenant", "")).strip() if key.admin else key.tenant_id
        if not tenant:
            return self.render("signin.html", 400, error="An admin key needs a tenant.", admin_tenant=True)
        response = RedirectResponse("/events", status_code=303)
        cookie = {"httponly": True, "samesite": "strict", "max_age": SESSION_SECONDS,
                  "secure": self.secure_cookies or request.url.scheme == "https"}
        response.set_cookie(SESSION_COOKIE, self.auth.start_session(secret), **cookie)  # type: ignore[arg-type]
        if key.admin:
            response.set_cookie("sealog_tenant", tenant, **cookie)  # type: ignore[arg-type]
        return response

    async def signout(self, request: Request) -> Response:
        _same_origin(request)
        self.auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie("sealog_tenant")
        return response

    async def events(self, request: Request, verify: Any = None) -> Response:
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        key, tenant = who
        q = {name: request.query_params.get(name) or None for name in FILTERS}
        after = request.query_params.get("after") or None
        try:
            check_text_params({k: v for k, v in q.items() if v is not None})
            if after is not None:
                check_cursor(after)
            page = await self.offload.read(self.log.query, tenant_for(key, tenant), limit=50, after=after, **q)
        except (InvalidQuery, HTTPError) as exc:
            return self.render("events.html", 400, tenant=tenant, signed_in=True, q=q, events=[],
                               error=str(exc), next=None, verify=verify)
        following = urlencode({**{k: v for k, v in q.items() if v}, "after": page.next}) if page.next else None
        return self.render("events.html", tenant=tenant, signed_in=True, q=q, events=page.events,
                           next=following, verify=verify, error=None)

    async def verify(self, request: Request) -> Response:
        _same_origin(request)
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        report = await self.offload.heavy(self.log.verify, who[1])  # its own pool: the rest goes on
        return await self.events(request, verify=report)

    async def event(self, request: Request) -> Response:
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        event_id = request.path_params["event_id"]
        event = None if "\x00" in event_id else await self.offload.read(self.log.get, who[1], event_id)
        if event is None:
            return self.render("events.html", 404, tenant=who[1], signed_in=True, q={}, events=[],
                               error="No such event for this tenant.", next=None, verify=None)
        shown = [(n, getattr(event, n)) for n in FIELDS if n not in JSON_FIELDS and n not in SEAL_FIELDS]
        return self.render("event.html", tenant=who[1], signed_in=True, e=event, fields=shown,
                           metadata=pretty(event.metadata), proof=pretty(event.proof),
                           diff=difference(event.before, event.after),
                           intact=await self.offload.read(self._intact, event),
                           inclusion=await self.offload.read(proofs.inclusion_status, self.log._tree(), event,
                                                             self.verifier, self.log_name))

    async def checkpoint(self, request: Request) -> Response:
        """The tenant's latest checkpoint and whether the stored tree still matches it; POST also re-hashes
        every event it covers (the heavy pool, like a chain verify)."""
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        rehash = request.method == "POST"
        if rehash:
            _same_origin(request)
        status = await self.offload.read(proofs.tree_status, self.log._tree(), who[1], self.verifier, self.log_name)
        problems = None
        if rehash and status is not None and status.note.checkpoint is not None:
            problems = await self.offload.heavy(proofs.rehash_status, self.log._tree(), who[1],
                                                status.note.checkpoint)
        return self.render("checkpoint.html", tenant=who[1], signed_in=True, tree=status, problems=problems)

    def _intact(self, event: Event) -> bool:
        """This event's hash re-computed, and its link to the previous event checked."""
        seq = event.seq or 0
        bare = msgspec.structs.replace(event, seq=None, prev_hash=None, hash=None, recorded_at=None)
        (sealed,) = seal([bare], {event.tenant_id: (seq - 1, event.prev_hash or "")})
        if sealed.hash != event.hash:
            return False
        if seq == 1:
            return event.prev_hash == GENESIS
        previous = next(iter(self.log.iter_events(event.tenant_id, seq - 2)), None)
        return previous is not None and previous.seq == seq - 1 and previous.hash == event.prev_hash


def difference(before: Any, after: Any) -> list[tuple[str, str, str, bool]]:
    """Rows for the side-by-side view: one per key of two objects, or one for other values."""
    if before is None and after is None:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [(k, pretty(before.get(k)) if k in before else "—", pretty(after.get(k)) if k in after else "—",
                 before.get(k) != after.get(k) or (k in before) != (k in after)) for k in keys]
    return [("value", pretty(before), pretty(after), before != after)]


def _same_origin(request: Request) -> None:
    """SameSite=Strict already keeps other sites' forms out; an Origin check is the belt."""
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise HTTPError(403, "cross-site form submission refused")
