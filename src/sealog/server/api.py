"""The JSON API. Each endpoint is declared once, in ENDPOINTS, which also feeds OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import _output as output
from .._errors import InvalidEvent, InvalidQuery, SpoolFull, StoreUnavailable
from .._event import CONTENT_FIELDS, Event
from .._log import AuditLog
from .auth import Auth, HTTPError, tenant_for

MAX_BODY: Final = 8 << 20
"""Bytes per request: 1,000 events of the usual size, well under 64 KiB each."""
MAX_BATCH: Final = 1000
ACCEPTED_FIELDS: Final = frozenset(CONTENT_FIELDS)
"""Unknown fields are rejected (422 naming them), never silently kept or dropped."""


class EventIds(msgspec.Struct):
    event_ids: list[str]


class FieldError(msgspec.Struct):
    index: int
    field: str
    message: str


class IngestErrors(msgspec.Struct):
    errors: list[FieldError]


class EventPage(msgspec.Struct):
    events: list[Event]
    next: str | None


class ProblemOut(msgspec.Struct):
    tenant_id: str
    seq: int
    kind: str
    detail: str


class VerifyOut(msgspec.Struct):
    ok: bool
    checked: int
    tenants: int
    problem_count: int
    problems: list[ProblemOut]


class ErrorOut(msgspec.Struct):
    error: str


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    kind: str = "string"
    required: bool = False
    where: str = "query"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Callable[[Api, Request], Awaitable[Response]]
    params: tuple[Param, ...] = ()
    body: Any = None
    responses: dict[int, Any] = field(default_factory=dict)
    auth: bool = True
    content: str = "application/json"


TENANT = Param("tenant_id", "The tenant; may be left out with a tenant key (its own tenant).")
QUERY_PARAMS: Final = (
    TENANT,
    Param("action", "Pattern: '*' one word, '#' any number of words (auth.*, gpt.oauth.#)."),
    Param("actor_id", "Actor id."), Param("target_id", "Target id."),
    Param("outcome", "success, failure, partial or pending."),
    Param("since", "RFC 3339, or a span back from now: 15m, 2h, 7d."),
    Param("until", "RFC 3339, or a span back from now."),
    Param("request_id", "Request id."), Param("correlation_id", "Correlation (trace) id."),
    Param("limit", "Page size, 1..1000 (default 100).", "integer"),
    Param("after", "The `next` cursor of the previous page."),
)


def json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


class Api:
    """The endpoints, bound to one AuditLog (in this process: same spool, same sealing)."""

    def __init__(self, log: AuditLog, auth: Auth) -> None:
        self.log = log
        self.auth = auth

    async def ingest(self, request: Request) -> Response:
        key = self.auth.bearer(request)
        items = await self._events_in(request)
        errors: list[FieldError] = []
        batch: list[dict[str, Any]] = []
        positions: list[int] = []
        for index, raw in enumerate(items):
            if not isinstance(raw, dict):
                errors.append(FieldError(index, "event", "must be a JSON object"))
                continue
            unknown = sorted(set(raw) - ACCEPTED_FIELDS)
            errors += [FieldError(index, name, "unknown field") for name in unknown]
            item = {k: v for k, v in raw.items() if k in ACCEPTED_FIELDS}  # still check the rest
            try:
                item["tenant_id"] = tenant_for(key, item.get("tenant_id"))
            except HTTPError as exc:
                if exc.status == 403:
                    raise
                errors.append(FieldError(index, "tenant_id", exc.message))
                continue
            batch.append(item)
            positions.append(index)
        prepared: list[tuple[Event, bytes]] = []
        for position, result in zip(positions, self.log.validate_batch(batch), strict=True):
            if isinstance(result, InvalidEvent):
                errors.append(FieldError(position, result.field, result.message))
            else:
                prepared.append(result)
        if errors:
            errors.sort(key=lambda e: e.index)
            return json(IngestErrors(errors), 422)
        try:
            ids = self.log.spool_prepared(prepared)
        except SpoolFull as exc:
            raise HTTPError(503, str(exc)) from exc
        return json(EventIds(ids), 202)

    async def _events_in(self, request: Request) -> list[Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise HTTPError(413, f"body over {MAX_BODY} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise HTTPError(413, f"body over {MAX_BODY} bytes")
        try:
            data = msgspec.json.decode(bytes(body))
        except msgspec.DecodeError as exc:
            raise HTTPError(400, f"malformed JSON: {exc}") from exc
        items = data if isinstance(data, list) else [data]
        if not items:
            raise HTTPError(422, "no events: send an object or a non-empty array")
        if len(items) > MAX_BATCH:
            raise HTTPError(413, f"{len(items)} events in one request; the limit is {MAX_BATCH}")
        return items

    async def search(self, request: Request) -> Response:
        key = self.auth.bearer(request)
        args = dict(request.query_params)
        unknown = sorted(set(args) - {p.name for p in QUERY_PARAMS})
        if unknown:
            raise HTTPError(400, f"unknown query parameter {unknown[0]!r}")
        tenant = tenant_for(key, args.pop("tenant_id", None))
        limit_text = args.pop("limit", "100")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise HTTPError(400, f"limit must be a whole number from 1 to 1000, not {limit_text!r}")
        page = await run_in_threadpool(self.log.query, tenant, limit=int(limit_text), **args)
        # to_dict: every contract field, nulls included, as in exports
        return json({"events": [e.to_dict() for e in page.events], "next": page.next})

    async def one(self, request: Request) -> Response:
        key = self.auth.bearer(request)
        tenant = key.tenant_id if not key.admin else request.query_params.get("tenant_id")
        event_id = request.path_params["event_id"]
        event = await run_in_threadpool(
            lambda: self.log.get(tenant, event_id) if tenant else self._any_tenant(event_id))
        if event is None:  # another tenant's event is "not found" too: never its content
            raise HTTPError(404, f"no event {event_id!r} for this key")
        return json(event.to_dict())

    def _any_tenant(self, event_id: str) -> Event | None:
        store = self.log._reader()
        for head in store.heads():
            found = store.get(head.tenant_id, event_id)
            if found is not None:
                return found
        return None

    async def verify(self, request: Request) -> Response:
        key = self.auth.bearer(request)
        tenant = tenant_for(key, request.query_params.get("tenant_id")) if not key.admin \
            else request.query_params.get("tenant_id")
        report = await run_in_threadpool(self.log.verify, tenant)
        problems = [ProblemOut(p.tenant_id, p.seq, p.kind, p.detail) for p in report.problems]
        return json(VerifyOut(report.ok, report.checked, report.tenants, report.problem_count, problems))

    async def export(self, request: Request) -> Response:
        key = self.auth.bearer(request)
        tenant = tenant_for(key, request.query_params.get("tenant_id"))
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise HTTPError(400, f"format must be jsonl or csv, not {fmt!r}")
        events = self.log.iter_events(tenant)  # streamed: constant memory for any tenant
        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(output.stream(events, fmt), media_type=media, headers={
            "content-disposition": f'attachment; filename="{tenant}.{fmt}"'})

    async def health(self, request: Request) -> Response:
        stats = self.log.stats()
        return json({"status": "ok", "backlog": stats["backlog"], "last_error": stats["last_error"]})

    async def metrics(self, request: Request) -> Response:
        stats = self.log.stats()
        lines = []
        for name, value, kind, text in (
            ("sealog_events_accepted_total", stats["emitted"], "counter", "Events accepted into the spool."),
            ("sealog_events_stored_total", stats["stored"], "counter", "Events sealed and stored."),
            ("sealog_spool_backlog_events", stats["backlog"], "gauge", "Events waiting in the spool."),
            ("sealog_spool_backlog_bytes", stats["spool_bytes"], "gauge", "Bytes waiting in the spool."),
            ("sealog_write_latency_ms", stats["last_write_ms"], "gauge", "Duration of the last store write."),
            ("sealog_errors_total", stats["errors"], "counter", "Delivery errors (retried)."),
            ("sealog_quarantined_total", stats["quarantined"], "counter", "Events the store rejected."),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


ENDPOINTS: Final = (
    Endpoint("POST", "/v1/events", "Record one event or an array of them, all or nothing.", Api.ingest,
             body=Event | list[Event], responses={202: EventIds, 422: IngestErrors, 413: ErrorOut, 403: ErrorOut}),
    Endpoint("GET", "/v1/events", "Search a tenant's events, newest first.", Api.search,
             params=QUERY_PARAMS, responses={200: EventPage, 400: ErrorOut, 403: ErrorOut}),
    Endpoint("GET", "/v1/events/{event_id}", "One event of the key's tenant.", Api.one,
             params=(Param("event_id", "The event's id.", where="path", required=True), TENANT),
             responses={200: Event, 404: ErrorOut}),
    Endpoint("GET", "/v1/verify", "Re-hash the tenant's chain (every chain with an admin key).", Api.verify,
             params=(TENANT,), responses={200: VerifyOut, 403: ErrorOut}),
    Endpoint("GET", "/v1/export", "The tenant's whole chain, streamed as JSONL or CSV.", Api.export,
             params=(TENANT, Param("format", "jsonl (default) or csv.")), responses={200: None, 400: ErrorOut},
             content="application/x-ndjson"),
    Endpoint("GET", "/healthz", "Liveness and the spool's backlog.", Api.health, auth=False,
             responses={200: None}),
    Endpoint("GET", "/metrics", "Prometheus metrics.", Api.metrics, auth=False, responses={200: None},
             content="text/plain"),
)


def openapi() -> dict[str, Any]:
    """The OpenAPI document, built from ENDPOINTS and the msgspec types: it cannot drift."""
    types = [Event, EventIds, IngestErrors, EventPage, VerifyOut, ErrorOut]
    (_, components) = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    ref = {t: {"$ref": f"#/components/schemas/{t.__name__}"} for t in types}
    paths: dict[str, Any] = {}
    for e in ENDPOINTS:
        operation: dict[str, Any] = {"summary": e.summary, "responses": {}}
        if e.params:
            operation["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "description": p.description, "schema": {"type": p.kind}} for p in e.params]
        if e.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [ref[Event], {"type": "array", "items": ref[Event], "maxItems": MAX_BATCH}]}}}}
        for status, kind in e.responses.items():
            response: dict[str, Any] = {"description": str(status)}
            if kind is not None:
                response["content"] = {"application/json": {"schema": ref[kind]}}
            elif status == 200:
                response["content"] = {e.content: {"schema": {"type": "string"}}}
            operation["responses"][str(status)] = response
        if e.auth:
            operation["security"] = [{"bearer": []}]
            operation["responses"].setdefault("401", {"description": "no, unknown or revoked key",
                                                      "content": {"application/json": {"schema": ref[ErrorOut]}}})
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "sealog", "version": "1", "description": "Audit events: ingest, search, verify, export."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def error_response(exc: Exception) -> Response:
    """Every failure the caller can cause becomes a 4xx with a message naming it."""
    if isinstance(exc, HTTPError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    if isinstance(exc, InvalidQuery | InvalidEvent):
        return JSONResponse({"error": str(exc)}, status_code=400)
    if isinstance(exc, StoreUnavailable):
        return JSONResponse({"error": f"the store is unavailable: {exc}"}, status_code=503)
    raise exc
