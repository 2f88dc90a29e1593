"""WSGI middleware with Flask, Falcon and bare WSGI apps: context for the app and its whole body."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import falcon
import flask
import pytest
from werkzeug.test import Client

import sealog
from sealog import AuditLog, InvalidEvent
from sealog.integrations.wsgi import AuditMiddleware

from .conftest import stored

StartResponse = Callable[..., Any]


def flask_app(log: AuditLog | None, **options: Any) -> flask.Flask:
    app = flask.Flask("audit-test")

    @app.post("/docs/<doc_id>")
    def publish(doc_id: str) -> str:
        return (log or sealog.get_default()).emit(tenant_id="acme", action="doc.publish", target=("doc", doc_id))

    app.wsgi_app = AuditMiddleware(app.wsgi_app, log=log, **options)  # type: ignore[method-assign]
    return app


def test_flask_request_id_client_and_agent_reach_the_event(log: AuditLog) -> None:
    """Flask's test client: the request id is echoed, the peer and user agent are recorded."""
    client = flask_app(log).test_client()
    response = client.post("/docs/d-1", headers={"X-Request-ID": "fl-1", "User-Agent": "ua/2"},
                           environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.headers["x-request-id"] == "fl-1"
    [event] = stored(log)
    assert (event.event_id, event.request_id, event.ip_address, event.user_agent, event.target_id) == (
        response.text, "fl-1", "198.51.100.7", "ua/2", "d-1")


def test_spoofed_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(log: AuditLog) -> None:
    """The same X-Forwarded-For is the client's claim from outside and the proxy's word from inside."""
    client = flask_app(log, trusted_proxies=["10.0.0.0/8"]).test_client()
    xff = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    client.post("/docs/a", headers={**xff, "X-Request-ID": "direct"}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    client.post("/docs/b", headers={**xff, "X-Request-ID": "proxied"}, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert stored(log, request_id="direct")[0].ip_address == "198.51.100.7"
    assert stored(log, request_id="proxied")[0].ip_address == "203.0.113.9"


def test_tenant_and_actor_callables_receive_the_environ(log: AuditLog) -> None:
    """tenant(environ) and actor(environ) fill the fields that the app's emit leaves out."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [log.emit(action="doc.read").encode()]

    wrapped = AuditMiddleware(app, log=log, tenant=lambda environ: environ["HTTP_X_TENANT"],
                              actor=lambda environ: ("service", environ["HTTP_X_SERVICE"]))
    Client(wrapped).get("/", headers={"X-Tenant": "globex", "X-Service": "billing"})
    [event] = stored(log, "globex")
    assert (event.actor_type, event.actor_id) == ("service", "billing")


def test_a_streamed_body_is_produced_inside_the_request_context(log: AuditLog) -> None:
    """Events emitted while the server iterates a generator body still carry the request id."""
    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            for part in range(3):
                yield log.emit(tenant_id="acme", action="export.chunk", metadata={"part": part}).encode()
        finally:
            closed.append(True)

    response = Client(AuditMiddleware(app, log=log)).get("/", headers={"X-Request-ID": "stream-1"}, buffered=False)
    assert response.headers["x-request-id"] == "stream-1"
    chunks = list(response.iter_encoded())
    response.close()
    assert closed == [True]
    assert [e.event_id.encode() for e in stored(log)] == chunks
    assert {e.request_id for e in stored(log)} == {"stream-1"}


def test_nothing_stays_bound_in_the_server_thread_after_a_request(log: AuditLog) -> None:
    """After the response (and when the app raises) an emit in the same thread has no request fields."""
    def body(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return iter([b"ok"])  # not a list: the body wrapper is used

    def broken(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("boom")

    def acme(environ: dict[str, Any]) -> str:
        return "acme"

    def ignore(*args: Any) -> Any:
        return None

    Client(AuditMiddleware(body, log=log, tenant=acme)).get("/")  # a server that closes the body
    unclosed = AuditMiddleware(body, log=log, tenant=acme)({"REMOTE_ADDR": "198.51.100.7"}, ignore)
    assert list(unclosed) == [b"ok"]  # iterated, never closed
    with pytest.raises(RuntimeError, match="boom"):
        Client(AuditMiddleware(broken, log=log, tenant=acme)).get("/")
    with pytest.raises(InvalidEvent) as missing:
        log.emit(action="outside.request")
    assert missing.value.field == "tenant_id"


def test_falcon_wsgi_resources_see_the_context(log: AuditLog) -> None:
    """Falcon's WSGI App wrapped by the middleware: the responder's event carries the request."""
    class Things:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.text = log.emit(tenant_id="acme", action="thing.list")

    app = falcon.App()
    app.add_route("/things", Things())
    response = Client(AuditMiddleware(app, log=log)).get("/things", headers={"X-Request-ID": "fw-1"})
    assert response.headers["x-request-id"] == "fw-1"
    assert [(e.event_id, e.request_id) for e in stored(log)] == [(response.text, "fw-1")]


# Built at import, before any sealog.configure: and werkzeug compiles its routes with `ast`, which
# on CPython 3.11.7 can fail spuriously when another thread builds an AST at the same time (gh-106905).
DEFAULT_APP = flask_app(None)


def test_log_none_uses_the_module_default_at_request_time(default_log: AuditLog) -> None:
    """Built before sealog.configure runs, the middleware finds the default on each request."""
    DEFAULT_APP.test_client().post("/docs/x", headers={"X-Request-ID": "w-default"})
    assert stored(default_log)[0].request_id == "w-default"


def test_fifty_concurrent_requests_in_threads_never_mix(log: AuditLog) -> None:
    """50 requests in 50 threads, all inside the view at once, each store their own request id and actor."""
    barrier = threading.Barrier(50, timeout=10)
    app = flask.Flask("concurrent")

    @app.get("/")
    def view() -> str:
        barrier.wait()  # every request is bound before any emits
        return log.emit(tenant_id="acme", action="doc.read")

    app.wsgi_app = AuditMiddleware(app.wsgi_app, log=log,  # type: ignore[method-assign]
                                   actor=lambda environ: ("user", environ["HTTP_X_USER"]))

    def one(i: int) -> tuple[int, str, str]:
        response = app.test_client().get("/", headers={"X-Request-ID": f"req-{i}", "X-User": f"u-{i}"})
        return i, response.text, response.headers["x-request-id"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    events = {e.event_id: e for e in stored(log)}
    assert len(events) == 50
    for i, event_id, echoed in results:
        assert (events[event_id].request_id, events[event_id].actor_id, echoed) == (f"req-{i}", f"u-{i}", f"req-{i}")
