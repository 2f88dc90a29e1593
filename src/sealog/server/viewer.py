"""The viewer: server-rendered pages for people who read audit logs. Autoescaped throughout:
event contents are attacker-controlled, so a ``<script>`` in metadata renders as text.
Every store call runs in a worker pool (a verify or an export in the heavy one), never on the event loop.

The one script (``static/viewer.js``: follow mode, keyboard moves) is a same-origin file, so the
CSP allows ``script-src 'self'`` and nothing inline; every page works without it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from .. import _output as output
from .. import _timefmt as timefmt
from .._chain import GENESIS, seal
from .._errors import InvalidQuery
from .._event import FIELDS, JSON_FIELDS, SEAL_FIELDS, Event
from .._log import AuditLog, make_query
from .._note import Verifier
from ..stores._summary import summarize
from . import chart, proofs
from .api import attachment, check_cursor, check_text_params
from .auth import SESSION_COOKIE, SESSION_SECONDS, Auth, HTTPError, tenant_for
from .guard import Offload
from .keys import ApiKey

FILTERS = ("action", "actor_id", "target_id", "outcome", "since", "until", "request_id", "correlation_id")
PAGE: Final = 50
CSP: Final = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
              "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC: Final = Path(__file__).parent / "static"
_SCRIPT: Final = (STATIC / "viewer.js").read_bytes()
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]))


def filtered(q: dict[str, str | None], **changes: str | None) -> str:
    """The list URL for filter ``q`` with ``changes`` (None removes a key): facets add to a filter."""
    merged = {k: v for k, v in {**q, **changes}.items() if v}
    return "/events" + ("?" + urlencode(merged) if merged else "")


def pivot(name: str, value: str) -> str:
    """The list of everything with this one value (an actor, a target, a request...)."""
    return "/events?" + urlencode({name: value})


def ago(stamp: str | None, now: datetime | None = None) -> str:
    """``3 min ago`` (or ``in 2 h``) for a stored timestamp: a hint beside the exact UTC time."""
    if not stamp:
        return ""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    size = abs(seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if size >= length or unit == "s":
            text = f"{size // length} {unit}"
            return f"{text} ago" if seconds >= 0 else f"in {text}"
    return ""  # pragma: no cover


def json_text(value: Any) -> str:
    """A JSON scalar as text (Jinja's ``tojson`` writes ``<`` as ``\\u003c``: safe, but unreadable);
    autoescaping makes it safe."""
    return json.dumps(value, ensure_ascii=False)


_env.globals.update(filtered=filtered, pivot=pivot)
_env.filters.update(ago=ago, json_text=json_text)


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
            "content-security-policy": CSP, "x-frame-options": "DENY", "referrer-policy": "same-origin",
            "cache-control": "no-store"})

    async def _who(self, request: Request) -> tuple[ApiKey, str] | None:
        key = await self.offload.read(self.auth.session, request)
        if key is None:
            return None
        tenant = request.cookies.get("sealog_tenant") if key.admin else key.tenant_id
        return (key, tenant) if tenant else None

    async def _page(self, who: tuple[ApiKey, str], name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A signed-in page: the tenant, and for an admin key the tenants to switch to."""
        key, tenant = who
        tenants = [h.tenant_id for h in await self.offload.read(self.log._reader().heads)] if key.admin else []
        if key.admin and tenant not in tenants:
            tenants = sorted([*tenants, tenant])
        return self.render(name, status, tenant=tenant, signed_in=True, tenants=tenants, **context)

    async def script(self, request: Request) -> Response:
        """The viewer's one script, from the package (no build step, no third-party code)."""
        return Response(_SCRIPT, media_type="text/javascript; charset=utf-8",
                        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})

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
        cookie = self._cookie(request)
        response.set_cookie(SESSION_COOKIE, await self.offload.read(self.auth.start_session, key), **cookie)
        if key.admin:
            response.set_cookie("sealog_tenant", tenant, **cookie)
        return response

    def _cookie(self, request: Request) -> Any:
        return {"httponly": True, "samesite": "strict", "max_age": SESSION_SECONDS,
                "secure": self.secure_cookies or request.url.scheme == "https"}

    async def switch(self, request: Request) -> Response:
        """An admin key's tenant switcher: the tenant to read from now on (other keys have one)."""
        _same_origin(request)
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        form = await request.form()
        tenant = str(form.get("tenant", "")).strip()
        if not who[0].admin:
            raise HTTPError(403, "only an admin key can switch tenants")
        if not tenant or len(tenant) > 128:
            return await self._page(who, "events.html", 400, q={}, events=[], error="Choose a tenant (1 to 128 "
                                    "characters).", next=None, verify=None, summary=None, view=None, following=False)
        check_text_params({"tenant": tenant})
        response = RedirectResponse("/events", status_code=303)
        response.set_cookie("sealog_tenant", tenant, **self._cookie(request))
        return response

    async def signout(self, request: Request) -> Response:
        _same_origin(request)
        await self.offload.read(self.auth.end_session, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie("sealog_tenant")
        return response

    @staticmethod
    def _filters(request: Request) -> dict[str, str | None]:
        q = {name: request.query_params.get(name) or None for name in FILTERS}
        check_text_params({k: v for k, v in q.items() if v is not None})
        return q

    async def events(self, request: Request, verify: Any = None) -> Response:
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        key, tenant = who
        q: dict[str, str | None] = dict.fromkeys(FILTERS)
        after = request.query_params.get("after") or None
        try:
            q = self._filters(request)
            if after is not None:
                check_cursor(after)
            page = await self.offload.read(self.log.query, tenant_for(key, tenant), limit=PAGE, after=after, **q)
            summary = await self.offload.read(self._summary, tenant, q)
        except (InvalidQuery, HTTPError) as exc:
            return await self._page(who, "events.html", 400, q=q, events=[], error=str(exc), next=None,
                                    verify=verify, summary=None, view=None, following=False)
        following = urlencode({**{k: v for k, v in q.items() if v}, "after": page.next}) if page.next else None
        return await self._page(who, "events.html", q=q, events=page.events, next=following, verify=verify,
                                error=None, summary=summary, view=chart.build(summary, summary.width),
                                following=after is None and not q["until"], exports=self._exports(q))

    def _summary(self, tenant: str, q: dict[str, str | None]) -> Any:
        return summarize(self.log._reader(), _query(tenant, q), timefmt.now())

    @staticmethod
    def _exports(q: dict[str, str | None]) -> dict[str, str]:
        base = {k: v for k, v in q.items() if v}
        return {fmt: "/export?" + urlencode({**base, "format": fmt}) for fmt in ("csv", "jsonl")}

    async def follow(self, request: Request) -> Response:
        """The first page's rows alone, for follow mode's script to swap in (same filter, same escaping)."""
        who = await self._who(request)
        if who is None:
            raise HTTPError(401, "the session has ended: sign in again")
        try:
            q = self._filters(request)
            page = await self.offload.read(self.log.query, who[1], limit=PAGE, **q)
        except InvalidQuery as exc:
            raise HTTPError(400, str(exc)) from None
        return self.render("_rows.html", events=page.events)

    async def export(self, request: Request) -> Response:
        """The current filter's events, newest first, streamed (the API's CSV and JSONL encoders)."""
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        tenant = who[1]
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise HTTPError(400, f"format must be jsonl or csv, not {fmt[:20]!r}")
        q = self._filters(request)
        _query(tenant, q)  # a bad filter is a 400 now, not a broken download later
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        name = f"{tenant}-events.{fmt}"
        return StreamingResponse(self._exported(tenant, q, fmt), media_type=media,
                                 headers={"content-disposition": attachment(name), "cache-control": "no-store"})

    async def _exported(self, tenant: str, q: dict[str, str | None], fmt: str) -> AsyncIterator[bytes]:
        lines = output.stream(self._matching(tenant, q), fmt)
        async for chunk in self.offload.chunks(lines):
            yield b"".join(chunk)

    def _matching(self, tenant: str, q: dict[str, str | None]) -> Iterator[Event]:
        after = None
        while True:
            page = self.log.query(tenant, limit=1000, after=after, **q)
            yield from page
            if page.next is None:
                return
            after = page.next

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
            return await self._page(who, "events.html", 404, q={}, events=[], error="No such event for this tenant.",
                                    next=None, verify=None, summary=None, view=None, following=False)
        shown = [(n, getattr(event, n)) for n in FIELDS
                 if n not in JSON_FIELDS and n not in SEAL_FIELDS and getattr(event, n) not in (None, "")]
        inclusion = await self.offload.read(proofs.inclusion_status, self.log._tree(), event, self.verifier,
                                            self.log_name)
        receipt = inclusion.state == "ok" or (inclusion.state != "failed" and self.log._checkpoints.signer is not None)
        return await self._page(who, "event.html", e=event, fields=shown, pivots=PIVOTS,
                                diff=difference(event.before, event.after),
                                intact=await self.offload.read(self._intact, event), inclusion=inclusion,
                                receipt=receipt)

    async def receipt(self, request: Request) -> Response:
        """The event's receipt (C2SP tlog-proof) as a text file; 404 when no checkpoint covers it."""
        who = await self._who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        event_id = request.path_params["event_id"]
        check_text_params({"event_id": event_id})
        try:
            text = await self.offload.read(self.log.receipt, who[1], event_id)
        except LookupError:
            text = None
        if text is None:
            raise HTTPError(404, "no receipt for this event yet: no signed checkpoint covers it")
        return PlainTextResponse(text, headers={"content-disposition": attachment(f"{event_id}.receipt.txt"),
                                                "cache-control": "no-store"})

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
        return await self._page(who, "checkpoint.html", tree=status, problems=problems)

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


PIVOTS: Final = {"actor_id": "actor_id", "target_id": "target_id", "request_id": "request_id",
                  "correlation_id": "correlation_id"}
"""Event fields shown as a link to the list filtered by them (``parent_event_id`` links to its event)."""


def difference(before: Any, after: Any) -> list[tuple[str, str, str, bool]]:
    """Rows for the side-by-side view: one per key of two objects, or one for other values."""
    if before is None and after is None:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [(k, pretty(before.get(k)) if k in before else "—", pretty(after.get(k)) if k in after else "—",
                 before.get(k) != after.get(k) or (k in before) != (k in after)) for k in keys]
    return [("value", pretty(before), pretty(after), before != after)]


def _query(tenant: str, q: dict[str, str | None]) -> Any:
    return make_query(tenant, **q)  # type: ignore[arg-type]  # every filter is text; make_query checks them


def _same_origin(request: Request) -> None:
    """SameSite=Strict already keeps other sites' forms out; an Origin check is the belt."""
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise HTTPError(403, "cross-site form submission refused")
