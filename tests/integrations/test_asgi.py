"""ASGI middleware with Starlette, FastAPI, Falcon and httpx's ASGI transport: who, where, which request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import MutableMapping
from typing import Any

import falcon.asgi
import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import sealog
from sealog import AuditLog
from sealog.integrations.asgi import AuditMiddleware

from .conftest import stored

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def starlette_app(log: AuditLog | None, **options: Any) -> AuditMiddleware:
    async def emit(request: Request) -> JSONResponse:
        audit = log or sealog.get_default()
        with audit.context(target=("doc", "d-1")):  # code inside the request adds fields
            event_id = audit.emit(tenant_id="acme", action="doc.read")
        return JSONResponse({"event_id": event_id})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    app = Starlette(routes=[Route("/emit", emit), WebSocketRoute("/ws", socket)])
    return AuditMiddleware(app, log=log, **options)


def call(app: Any, path: str = "/emit", peer: str = "198.51.100.7", **headers: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


def test_request_id_from_the_header_is_bound_and_echoed(log: AuditLog) -> None:
    """The caller's x-request-id lands on the event and comes back in the response header."""
    response = call(starlette_app(log), **{"x-request-id": "req-1", "user-agent": "pytest/1"})
    assert response.headers["x-request-id"] == "req-1"
    [event] = stored(log)
    assert (event.event_id, event.request_id, event.user_agent) == (response.json()["event_id"], "req-1", "pytest/1")
    assert (event.target_type, event.target_id, event.ip_address) == ("doc", "d-1", "198.51.100.7")


def test_a_new_request_id_is_made_and_echoed_when_absent_or_malformed(log: AuditLog) -> None:
    """Without a usable header each request gets a fresh UUIDv7, the same in the event and the response."""
    app = starlette_app(log)
    plain, spaced = call(app), call(app, **{"x-request-id": "not ok"})
    ids = [r.headers["x-request-id"] for r in (plain, spaced)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids[0] != ids[1]
    assert [e.request_id for e in stored(log)] == ids


def test_a_custom_request_id_header_is_read_and_echoed(log: AuditLog) -> None:
    """request_id_header names the header on the way in and out."""
    response = call(starlette_app(log, request_id_header="X-Correlation-ID"), **{"x-correlation-id": "c-9"})
    assert response.headers["x-correlation-id"] == "c-9"
    assert "x-request-id" not in response.headers
    assert stored(log)[0].request_id == "c-9"


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(log: AuditLog) -> None:
    """A client that writes X-Forwarded-For itself is recorded at its own address."""
    call(starlette_app(log, trusted_proxies=["10.0.0.0/8"]), peer="198.51.100.7", **{"x-forwarded-for": "1.2.3.4"})
    assert stored(log)[0].ip_address == "198.51.100.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_recorded(log: AuditLog) -> None:
    """Through trusted proxies the nearest hop they did not add is the client; its own claim further left is not."""
    app = starlette_app(log, trusted_proxies=["10.0.0.0/8"])
    call(app, peer="10.0.0.5", **{"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.3"})
    assert stored(log)[0].ip_address == "203.0.113.9"


def test_traceparent_correlates_the_request_unless_a_span_is_active(log: AuditLog) -> None:
    """The W3C trace id becomes correlation_id; under an OpenTelemetry span the span's trace is used."""
    header = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "x-request-id": "plain"}
    call(starlette_app(log), **header)
    tracer = TracerProvider().get_tracer("test")
    inner = starlette_app(log)
    span_trace: list[str] = []

    async def traced(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("server") as span:
            span_trace.append(f"{span.get_span_context().trace_id:032x}")
            await inner(scope, receive, send)

    call(traced, **{**header, "x-request-id": "traced"})
    assert stored(log, request_id="plain")[0].correlation_id == TRACE
    assert stored(log, request_id="traced")[0].correlation_id == span_trace[0] != TRACE


def test_tenant_and_actor_callables_receive_the_scope(log: AuditLog) -> None:
    """tenant(scope) and actor(scope) fill tenant_id and actor for every event of the request."""
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(log.emit(action="doc.read"))

    def actor(scope: MutableMapping[str, Any]) -> tuple[str, str] | None:
        user = dict(scope["headers"]).get(b"x-user")
        return ("user", user.decode()) if user else None

    app = AuditMiddleware(Starlette(routes=[Route("/", endpoint)]), log=log, actor=actor,
                          tenant=lambda scope: scope["path"] and "globex")
    call(app, "/", **{"x-user": "u-7"})
    call(app, "/")
    with_user, anonymous = stored(log, "globex")
    assert (with_user.actor_type, with_user.actor_id) == ("user", "u-7")
    assert anonymous.actor_id is None


def test_log_none_uses_the_module_default_at_request_time(default_log: AuditLog) -> None:
    """Built before sealog.configure runs, the middleware still finds the default on each request."""
    response = TestClient(starlette_app(None)).get("/emit", headers={"x-request-id": "r-default"})
    assert response.status_code == 200
    assert stored(default_log)[0].request_id == "r-default"


def test_fastapi_dependencies_and_routes_see_the_context(log: AuditLog) -> None:
    """With FastAPI's add_middleware the route's events carry the request id and actor."""
    app = FastAPI()
    app.add_middleware(AuditMiddleware, log=log, tenant=lambda scope: "acme",
                       actor=lambda scope: ("user", "u-1"))

    @app.post("/docs/{doc_id}")
    async def publish(doc_id: str) -> dict[str, str]:
        return {"event_id": log.emit(action="doc.publish", target=("doc", doc_id))}

    response = TestClient(app).post("/docs/d-5", headers={"x-request-id": "fa-1"})
    assert response.headers["x-request-id"] == "fa-1"
    [event] = stored(log)
    assert (event.request_id, event.actor_id, event.target_id) == ("fa-1", "u-1", "d-5")


def test_falcon_asgi_resources_see_the_context(log: AuditLog) -> None:
    """Falcon's ASGI App wrapped by the middleware: the responder's event carries the request."""
    class Things:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.text = log.emit(tenant_id="acme", action="thing.list")

    falcon_app = falcon.asgi.App()
    falcon_app.add_route("/things", Things())
    response = call(AuditMiddleware(falcon_app, log=log), "/things", **{"x-request-id": "fc-1"})
    assert response.headers["x-request-id"] == "fc-1"
    assert [(e.event_id, e.request_id) for e in stored(log)] == [(response.text, "fc-1")]


def test_an_app_that_sets_the_header_itself_is_not_overridden(log: AuditLog) -> None:
    """If the app already answered with a request id header, no second one is added."""
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Request-ID": "from-app"})

    response = call(AuditMiddleware(Starlette(routes=[Route("/", endpoint)]), log=log), "/",
                    **{"x-request-id": "from-client"})
    assert response.headers.get_list("x-request-id") == ["from-app"]


def test_websocket_and_lifespan_scopes_pass_through(log: AuditLog) -> None:
    """Only HTTP requests are bound; a WebSocket and the lifespan protocol work untouched."""
    with TestClient(starlette_app(log)) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "hi"


def test_fifty_concurrent_asyncio_requests_never_mix(log: AuditLog) -> None:
    """50 requests in flight at once (all wait at a barrier) each store their own request id and actor."""
    barrier = asyncio.Barrier(50)

    async def endpoint(request: Request) -> PlainTextResponse:
        await asyncio.wait_for(barrier.wait(), 10)  # every request is inside the app before any emits
        return PlainTextResponse(log.emit(tenant_id="acme", action="doc.read"))

    app = AuditMiddleware(Starlette(routes=[Route("/", endpoint)]), log=log,
                          actor=lambda scope: ("user", dict(scope["headers"])[b"x-user"].decode()))

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await asyncio.gather(*(
                client.get("/", headers={"x-request-id": f"req-{i}", "x-user": f"u-{i}"}) for i in range(50)))

    responses = asyncio.run(main())
    events = {e.event_id: e for e in stored(log)}
    assert len(events) == 50
    for i, response in enumerate(responses):
        event = events[response.text]
        assert (event.request_id, event.actor_id, response.headers["x-request-id"]) == (f"req-{i}", f"u-{i}", f"req-{i}")


@pytest.mark.parametrize("peer", ["testclient", "unix:/run/app.sock"])
def test_a_peer_that_is_no_ip_records_no_address(log: AuditLog, peer: str) -> None:
    """Test clients and unix sockets have no IP: the event has none rather than a bogus one."""
    call(starlette_app(log), peer=peer)
    assert stored(log)[0].ip_address is None
