"""The JSON API. Each endpoint is declared once, in ENDPOINTS, which also feeds OpenAPI.

Nothing a client sends can make it answer 500: bodies are measured before they are
decoded, every query value is checked before a store sees it, and every blocking call
runs in a worker pool (``guard.Offload``), never on the event loop.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import _checkpoints as ckpt
from .. import _output as output
from .. import _timefmt as timefmt
from .._errors import EventRejected, InvalidEvent, InvalidQuery, SpoolFull, StoreUnavailable
from .._event import CONTENT_FIELDS, PROOF_TYPES, Event
from .._log import AuditLog
from .._merkle import MissingHashError
from ..broker.envelopes import MAX_NESTING, too_deep
from ..stores.base import NotInLog, decode_cursor
from .auth import Auth, HTTPError, tenant_for
from .guard import Offload
from .idempotency import Idempotency, event_id_for

MAX_BODY: Final = 8 << 20
"""Bytes per request: 1,000 events of the usual size, well under 64 KiB each."""
MAX_BATCH: Final = 1000
MAX_LIMIT: Final = 1000
ACCEPTED_FIELDS: Final = frozenset(CONTENT_FIELDS)
"""Unknown fields are rejected (422 naming them), never silently kept or dropped."""
IDEMPOTENCY_HEADER: Final = "idempotency-key"
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")
_MAX_SEQ: Final = 2**63 - 1


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


class InclusionProofOut(msgspec.Struct):
    """RFC 9162 §2.1.3 inclusion proof: the event is leaf ``leaf_index`` of the tree of ``tree_size`` events."""

    leaf_index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProofOut(msgspec.Struct):
    """RFC 9162 §2.1.4 consistency proof: the tree of ``first`` events is a prefix of that of ``second``."""

    first: int
    second: int
    hashes: list[str]


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
    operation_id: str = ""


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


def attachment(filename: str) -> str:
    """A Content-Disposition for any file name (RFC 6266): an ASCII ``filename`` for old
    clients, the exact name in ``filename*``; neither can carry a quote or a parameter."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "export"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def check_text_params(args: dict[str, str]) -> None:
    """Query values are text a store can compare: no NUL (PostgreSQL refuses it), no surrogates."""
    for name, value in args.items():
        if "\x00" in value:
            raise HTTPError(400, f"{name}: a NUL character is not allowed")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise HTTPError(400, f"{name}: not valid UTF-8 text") from None


def check_cursor(cursor: str) -> str:
    """A cursor must be one a store could have issued: a stored timestamp and a seq that fits
    a 64-bit integer. Checked here so a forged one is a 400, never a driver error."""
    occurred_at, seq = decode_cursor(cursor)
    try:
        canonical = timefmt.parse(occurred_at)
    except ValueError:
        canonical = None
    if canonical != occurred_at or not 0 <= seq <= _MAX_SEQ:
        raise HTTPError(400, f"cursor {cursor[:40]!r} is not one this service issued")
    return cursor


def tree_size_param(args: dict[str, str], name: str) -> int:
    """A tree size from the query: ASCII digits that fit a 64-bit seq, else a 400 naming the parameter."""
    text = args.get(name)
    if not text:
        raise HTTPError(400, f"{name} is required: a tree size (a whole number >= 0)")
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > _MAX_SEQ:
        raise HTTPError(400, f"{name} must be a tree size (a whole number >= 0), not {text[:20]!r}")
    return int(text)


def only_params(args: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise HTTPError(400, f"unknown query parameter {unknown[0][:60]!r}")
    check_text_params(args)


def check_limit_text(text: str, largest: int = MAX_LIMIT) -> int:
    """ASCII digits only: ``'²'.isdigit()`` is True, but int('²') raises."""
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= largest:
        raise HTTPError(400, f"limit must be a whole number from 1 to {largest}, not {text[:20]!r}")
    return int(text)


def parse_events(body: bytes) -> list[Any]:
    """The request body as a list of items; the nesting is measured before decoding."""
    if too_deep(body, MAX_NESTING + 1):
        raise HTTPError(400, f"malformed JSON: nested deeper than {MAX_NESTING} levels")
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise HTTPError(400, f"malformed JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise HTTPError(422, "no events: send an object or a non-empty array")
    if len(items) > MAX_BATCH:
        raise HTTPError(413, f"{len(items)} events in one request; the limit is {MAX_BATCH}")
    return items


class Api:
    """The endpoints, bound to one AuditLog (in this process: same spool, same sealing)."""

    def __init__(self, log: AuditLog, auth: Auth, offload: Offload) -> None:
        self.log = log
        self.auth = auth
        self.offload = offload
        self.idempotency = Idempotency(log.spool.directory / "idempotency")

    async def ingest(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        retry_key = request.headers.get(IDEMPOTENCY_HEADER)
        if retry_key is not None and not _IDEMPOTENCY_KEY.fullmatch(retry_key):
            raise HTTPError(400, "Idempotency-Key must be 1 to 255 visible ASCII characters")
        body = await self._body(request)
        return await self.offload.ingest(self._ingest, key, body, retry_key)

    def _ingest(self, key: Any, body: bytes, retry_key: str | None) -> Response:
        """Decode, check and spool, in a worker thread (decoding 8 MiB takes a while)."""
        scope = (key.key_id, retry_key or "")
        fingerprint = hashlib.sha256(body).digest()
        if retry_key is not None and (ids := self.idempotency.answer(scope, fingerprint)) is not None:
            return json(EventIds(ids), 202)
        items = parse_events(body)
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
            if retry_key is not None and item.get("event_id") is None:
                item["event_id"] = event_id_for(key.key_id, retry_key, fingerprint, index)
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
        for position, fields in zip(positions, batch, strict=True):
            try:
                (result,) = self.log.validate_batch([fields])
            except Exception as exc:  # a check that broke on this input: still the input's fault
                result = InvalidEvent("event", f"cannot be checked: {type(exc).__name__}")
            if isinstance(result, InvalidEvent):
                errors.append(FieldError(position, result.field, result.message))
            else:
                prepared.append(result)
        if errors:
            errors.sort(key=lambda e: e.index)
            return json(IngestErrors(errors), 422)
        try:
            ids = self.log.spool_all(prepared)  # all or nothing, even when the spool is nearly full
        except SpoolFull as exc:
            raise HTTPError(503, f"nothing was stored: {exc}", {"retry-after": "5"}) from exc
        if retry_key is not None:
            self.idempotency.remember(scope, fingerprint, ids)
        return json(EventIds(ids), 202)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise HTTPError(413, f"body over {MAX_BODY} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    raise HTTPError(413, f"body over {MAX_BODY} bytes")
        except ClientDisconnect:  # nobody is left to answer; not a server error worth a traceback
            raise HTTPError(400, "the client disconnected before its body arrived") from None
        return bytes(body)

    async def search(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        args = dict(request.query_params)
        unknown = sorted(set(args) - {p.name for p in QUERY_PARAMS})
        if unknown:
            raise HTTPError(400, f"unknown query parameter {unknown[0][:60]!r}")
        check_text_params(args)
        tenant = tenant_for(key, args.pop("tenant_id", None))
        limit = check_limit_text(args.pop("limit", "100"))
        if args.get("after"):
            check_cursor(args["after"])
        page = await self.offload.read(self.log.query, tenant, limit=limit, **args)
        # to_dict: every contract field, nulls included, as in exports
        return json({"events": [e.to_dict() for e in page.events], "next": page.next})

    async def one(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        tenant = key.tenant_id if not key.admin else request.query_params.get("tenant_id")
        event_id = request.path_params["event_id"]
        check_text_params({"event_id": event_id, "tenant_id": tenant or ""})
        event = await self.offload.read(
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
        key = await self.offload.read(self.auth.bearer, request)
        check_text_params(dict(request.query_params))
        tenant = tenant_for(key, request.query_params.get("tenant_id")) if not key.admin \
            else request.query_params.get("tenant_id")
        report = await self.offload.heavy(self.log.verify, tenant)  # its own pool: ingest goes on
        problems = [ProblemOut(p.tenant_id, p.seq, p.kind, p.detail) for p in report.problems]
        return json(VerifyOut(report.ok, report.checked, report.tenants, report.problem_count, problems))

    async def export(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        check_text_params(dict(request.query_params))
        tenant = tenant_for(key, request.query_params.get("tenant_id"))
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise HTTPError(400, f"format must be jsonl or csv, not {fmt[:20]!r}")
        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(self._exported(tenant, fmt), media_type=media,
                                 headers={"content-disposition": attachment(f"{tenant}.{fmt}")})

    async def _exported(self, tenant: str, fmt: str) -> AsyncIterator[bytes]:
        """Streamed in constant memory; each chunk is read in the heavy pool, off the loop."""
        lines: Iterator[bytes] = output.stream(self.log.iter_events(tenant), fmt)
        async for chunk in self.offload.chunks(lines):
            yield b"".join(chunk)

    # -- the verifiable log --------------------------------------------------------------

    async def checkpoint(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        args = dict(request.query_params)
        only_params(args, {"tenant_id"})
        tenant = tenant_for(key, args.get("tenant_id"))
        note = await self.offload.read(self._latest_checkpoint, tenant)
        return PlainTextResponse(note, media_type="text/plain")

    def _latest_checkpoint(self, tenant: str) -> str:
        """The latest stored checkpoint. Only a tenant with none yet gets one signed here (when the server
        has a key): a poll must not make the server sign and store a note per request; the signing
        thread signs grown tenants every ``checkpoint_every`` seconds."""
        latest = self.log._tree().latest_checkpoint(tenant)
        if latest is not None:
            return latest.note
        try:
            return self.log.checkpoint(tenant)
        except ckpt.NoCheckpoint as exc:
            raise HTTPError(404, str(exc)) from None
        except ckpt.TreeRewritten as exc:
            raise HTTPError(409, str(exc)) from None

    async def inclusion(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        args = dict(request.query_params)
        only_params(args, {"tenant_id", "event_id", "tree_size"})
        tenant = tenant_for(key, args.get("tenant_id"))
        event_id = args.get("event_id")
        if not event_id:
            raise HTTPError(400, "event_id is required")
        size = tree_size_param(args, "tree_size") if "tree_size" in args else None
        proof = await self.offload.read(self._proof, self.log.inclusion_proof, tenant, event_id, size)
        return json(proof)

    async def consistency(self, request: Request) -> Response:
        key = await self.offload.read(self.auth.bearer, request)
        args = dict(request.query_params)
        only_params(args, {"tenant_id", "first", "second"})
        tenant = tenant_for(key, args.get("tenant_id"))
        first, second = tree_size_param(args, "first"), tree_size_param(args, "second")
        if first > second:
            raise HTTPError(400, f"first ({first}) must not exceed second ({second})")
        proof = await self.offload.read(self._proof, self.log.consistency_proof, tenant, first, second)
        return json(proof)

    @staticmethod
    def _proof(make: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """A proof, or a 404 when the event is not in the tenant's log (another tenant's event included:
        never a word about it) or no checkpoint gives the tree size; a size beyond the tree is a 400."""
        try:
            return make(*args)
        except (NotInLog, ckpt.NoCheckpoint) as exc:
            raise HTTPError(404, str(exc)) from None
        except MissingHashError as exc:  # pruned or damaged tree rows: the log cannot prove this, and says so
            raise HTTPError(409, f"the stored tree cannot give this proof: {exc}") from None

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
    Endpoint("POST", "/v1/events",
             "Record one event or an array of them, all or nothing. Retry safely with an "
             "Idempotency-Key header (or explicit event ids): a retry stores nothing twice.",
             Api.ingest, operation_id="recordEvents",
             params=(Param("Idempotency-Key", "1..255 visible ASCII characters, new for each new request.",
                           where="header"),),
             body=Event | list[Event],
             responses={202: EventIds, 400: ErrorOut, 403: ErrorOut, 413: ErrorOut, 422: IngestErrors,
                        503: ErrorOut}),
    Endpoint("GET", "/v1/events", "Search a tenant's events, newest first.", Api.search,
             operation_id="searchEvents", params=QUERY_PARAMS,
             responses={200: EventPage, 400: ErrorOut, 403: ErrorOut}),
    Endpoint("GET", "/v1/events/{event_id}", "One event of the key's tenant.", Api.one, operation_id="getEvent",
             params=(Param("event_id", "The event's id.", where="path", required=True), TENANT),
             responses={200: Event, 400: ErrorOut, 404: ErrorOut}),
    Endpoint("GET", "/v1/verify", "Re-hash the tenant's chain (every chain with an admin key).", Api.verify,
             operation_id="verifyChains", params=(TENANT,), responses={200: VerifyOut, 403: ErrorOut}),
    Endpoint("GET", "/v1/export", "The tenant's whole chain, streamed as JSONL or CSV.", Api.export,
             operation_id="exportEvents", params=(TENANT, Param("format", "jsonl (default) or csv.")),
             responses={200: None, 400: ErrorOut}, content="application/x-ndjson"),
    Endpoint("GET", "/v1/checkpoint",
             "The tenant's latest signed checkpoint: a C2SP tlog-checkpoint (origin <log name>/<tenant_id>, "
             "tree size, base64 RFC 6962 root) in a C2SP signed note with Ed25519 signature lines.",
             Api.checkpoint, operation_id="getCheckpoint", params=(TENANT,), content="text/plain",
             responses={200: None, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}),
    Endpoint("GET", "/v1/proof/inclusion",
             "RFC 9162 inclusion proof of an event (leaf seq - 1) in the tenant's tree of tree_size events; "
             "hashes are base64, in RFC 9162 order.",
             Api.inclusion, operation_id="getInclusionProof",
             params=(TENANT, Param("event_id", "The event's id.", required=True),
                     Param("tree_size", "The tree to prove against (default: the latest checkpoint's size).",
                           "integer")),
             responses={200: InclusionProofOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}),
    Endpoint("GET", "/v1/proof/consistency",
             "RFC 9162 consistency proof that the tenant's tree of `first` events is a prefix of its tree of "
             "`second` events; hashes are base64, in RFC 9162 order.",
             Api.consistency, operation_id="getConsistencyProof",
             params=(TENANT, Param("first", "The smaller tree size.", "integer", required=True),
                     Param("second", "The larger tree size (at most the tenant's event count).", "integer",
                           required=True)),
             responses={200: ConsistencyProofOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}),
    Endpoint("GET", "/healthz", "Liveness and the spool's backlog.", Api.health, auth=False,
             operation_id="health", responses={200: None}),
    Endpoint("GET", "/metrics", "Prometheus metrics.", Api.metrics, auth=False, operation_id="metrics",
             responses={200: None}, content="text/plain"),
)


LINKS: Final = {
    ("recordEvents", 202): {"GetRecordedEvent": {
        "operationId": "getEvent", "parameters": {"event_id": "$response.body#/event_ids/0"},
        "description": "The first event just recorded."}},
    ("searchEvents", 200): {
        "GetFoundEvent": {"operationId": "getEvent", "parameters": {"event_id": "$response.body#/events/0/event_id"},
                          "description": "The newest event of the page."},
        "NextPage": {"operationId": "searchEvents", "parameters": {"after": "$response.body#/next"},
                     "description": "The following page."}},
}
"""OpenAPI links, so stateful clients (and schemathesis) can follow POST -> GET."""


def openapi() -> dict[str, Any]:
    """The OpenAPI document, built from ENDPOINTS and the msgspec types: it cannot drift."""
    types = [Event, EventIds, IngestErrors, EventPage, VerifyOut, ErrorOut, InclusionProofOut, ConsistencyProofOut]
    (_, components) = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    event = components["Event"]["properties"]  # what the type alone cannot say, so clients (and fuzzers) know
    event["action"]["pattern"] = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$"
    event["occurred_at"]["format"] = "date-time"
    event["proof"] = {"anyOf": [{"type": "null"}, {"type": "object", "required": ["type"], "properties": {
        "type": {"enum": sorted(PROOF_TYPES)}}}]}
    ref = {t: {"$ref": f"#/components/schemas/{t.__name__}"} for t in types}
    paths: dict[str, Any] = {}
    for e in ENDPOINTS:
        operation: dict[str, Any] = {"operationId": e.operation_id, "summary": e.summary, "responses": {}}
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
            if (e.operation_id, status) in LINKS:
                response["links"] = LINKS[(e.operation_id, status)]
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
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)
    if isinstance(exc, InvalidQuery | InvalidEvent):
        return JSONResponse({"error": str(exc)}, status_code=400)
    if isinstance(exc, EventRejected):  # a read the store refused: its values, i.e. the request's
        return JSONResponse({"error": f"the store refused the request's values: {exc}"}, status_code=400)
    if isinstance(exc, StoreUnavailable):
        return JSONResponse({"error": f"the store is unavailable: {exc}"}, status_code=503)
    raise exc
