"""Every endpoint, every way in: keys, tenants, batches, paging, bad input, streaming."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc

from .conftest import Service


def ingest(service: Service, body: object, key: str | None = None) -> tuple[int, dict[str, object]]:
    response = service.client.post("/v1/events", json=body, headers=service.auth(key or service.acme))
    return response.status_code, response.json()


def count(service: Service, tenant: str = "acme") -> int:
    assert service.log.flush(20)
    return sum(1 for _ in service.log.iter_events(tenant))


def test_open_endpoints_need_no_key(service: Service) -> None:
    """healthz, metrics and the OpenAPI document are public; the document lists every endpoint."""
    assert service.client.get("/healthz").json()["status"] == "ok"
    metrics = service.client.get("/metrics").text
    assert "sealog_events_stored_total" in metrics
    assert "sealog_spool_backlog_events" in metrics
    spec = service.client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {"/v1/events", "/v1/events/{event_id}", "/v1/verify", "/v1/export", "/healthz"}
    assert "Event" in spec["components"]["schemas"]


def test_ingest_single_and_array_then_read_back(service: Service) -> None:
    """202 with ids once spooled; the tenant is the key's; the event comes back whole."""
    status, body = ingest(service, {"action": "auth.login", "actor_type": "user", "actor_id": "u-1",
                                    "metadata": {"method": "sso"}})
    assert status == 202
    (event_id,) = body["event_ids"]  # type: ignore[misc]
    status, body = ingest(service, [{"action": "data.export"}, {"action": "auth.logout", "tenant_id": "acme"}])
    assert status == 202
    assert len(body["event_ids"]) == 2  # type: ignore[arg-type]
    assert count(service) == 3
    one = service.client.get(f"/v1/events/{event_id}", headers=service.auth(service.acme)).json()
    assert one["tenant_id"] == "acme"
    assert one["metadata"] == {"method": "sso"}
    assert one["target_id"] is None  # every contract field is present
    assert one["seq"] == 1


def test_batches_are_all_or_nothing(service: Service) -> None:
    """One bad event: 422 naming index and field for each problem, and nothing stored."""
    status, body = ingest(service, [{"action": "auth.login"}, {"action": "Not Valid"}, {"action": "a.b", "extra": 1},
                                    {"action": "a.b", "outcome": "maybe"}])
    assert status == 422
    problems = {(e["index"], e["field"]) for e in body["errors"]}  # type: ignore[union-attr]
    assert problems == {(1, "action"), (2, "extra"), (3, "outcome")}
    status, body = ingest(service, [{"action": "auth.login"}, {"action": "a.b", "outcome": "maybe"}])
    assert status == 422
    assert body["errors"] == [{"index": 1, "field": "outcome", "message": body["errors"][0]["message"]}]  # type: ignore[index]
    assert count(service) == 0


def test_bad_bodies_get_4xx_with_a_reason(service: Service) -> None:
    """Malformed JSON 400, not-an-object 422, empty 422, oversize 413, too many events 413."""
    headers = service.auth(service.acme)
    response = service.client.post("/v1/events", content=b"{nope", headers=headers)
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["error"]
    assert ingest(service, [1, "x"])[0] == 422
    assert ingest(service, [])[0] == 422
    big = service.client.post("/v1/events", content=b"[" + b" " * (9 << 20) + b"]", headers=headers)
    assert big.status_code == 413
    status, body = ingest(service, [{"action": "a.b"}] * 1001)
    assert status == 413
    assert "1001" in str(body)
    assert count(service) == 0


def test_keys_no_bad_revoked_other_tenant_and_admin(service: Service) -> None:
    """401 without or with a wrong or revoked key; 403/404 across tenants; admin sees all."""
    ingest(service, {"action": "auth.login"})
    _, body = ingest(service, {"action": "auth.login"}, key=service.globex)
    globex_event = body["event_ids"][0]  # type: ignore[index]
    assert service.log.flush()  # 202 means spooled; reads see what is stored
    assert service.client.get("/v1/events").status_code == 401
    assert service.client.get("/v1/events", headers=service.auth("slk_wrong")).status_code == 401
    key, secret = service.keys.create("acme", "to revoke")
    service.keys.revoke(key.key_id)
    assert service.client.get("/v1/events", headers=service.auth(secret)).status_code == 401
    acme = service.auth(service.acme)
    assert service.client.get("/v1/events?tenant_id=globex", headers=acme).status_code == 403
    assert service.client.get(f"/v1/events/{globex_event}", headers=acme).status_code == 404
    assert ingest(service, {"action": "a.b", "tenant_id": "globex"})[0] == 403
    assert service.client.get("/v1/export?tenant_id=globex", headers=acme).status_code == 403
    admin = service.auth(service.admin)
    assert service.client.get("/v1/events", headers=admin).status_code == 400  # must name the tenant
    assert len(service.client.get("/v1/events?tenant_id=globex", headers=admin).json()["events"]) == 1
    assert service.client.get(f"/v1/events/{globex_event}", headers=admin).status_code == 200
    assert service.client.get("/v1/verify", headers=admin).json()["tenants"] == 2


def test_paging_has_no_overlap_and_no_gap(service: Service) -> None:
    """250 events in pages of 100 via `next`: each exactly once, newest first."""
    for start in range(0, 250, 50):
        assert ingest(service, [{"action": "test.page", "metadata": {"i": i}} for i in range(start, start + 50)])[0] == 202
    assert count(service) == 250
    seen, cursor = [], None
    while True:
        url = "/v1/events?limit=100" + (f"&after={cursor}" if cursor else "")
        page = service.client.get(url, headers=service.auth(service.acme)).json()
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(range(250, 0, -1))


def test_bad_query_parameters_are_400(service: Service) -> None:
    """Bad cursor, span, limit, pattern or an unknown parameter: 400 naming it, never 500."""
    acme = service.auth(service.acme)
    for query, needle in (("after=!!!", "cursor"), ("since=yesterday", "since"), ("limit=0", "limit"),
                          ("limit=abc", "limit"), ("action=Auth.*", "pattern"), ("colour=red", "colour"),
                          ("outcome=maybe", "outcome")):
        response = service.client.get(f"/v1/events?{query}", headers=acme)
        assert response.status_code == 400, query
        assert needle in response.json()["error"], query
    assert service.client.get("/v1/export?format=xml", headers=acme).status_code == 400


def test_verify_and_export_jsonl_and_csv(service: Service) -> None:
    """verify reports the chain; export streams every event in chain order, both formats."""
    ingest(service, [{"action": "test.x", "metadata": {"i": i}} for i in range(5)])
    assert count(service) == 5
    acme = service.auth(service.acme)
    assert service.client.get("/v1/verify", headers=acme).json() == {
        "ok": True, "checked": 5, "tenants": 1, "problem_count": 0, "problems": []}
    lines = service.client.get("/v1/export", headers=acme).text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]
    rows = list(csv.DictReader(io.StringIO(service.client.get("/v1/export?format=csv", headers=acme).text)))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4", "5"]


def test_export_of_a_large_tenant_streams_in_constant_memory(service: Service) -> None:
    """10,000 events (~14 MB of JSONL) export with a small peak of traced memory."""
    for start in range(0, 10_000, 1000):
        assert ingest(service, [{"action": "test.bulk", "metadata": {"i": i, "pad": "x" * 1000}}
                                for i in range(start, start + 1000)])[0] == 202
    assert count(service) == 10_000
    tracemalloc.start()
    total = 0
    with service.client.stream("GET", "/v1/export", headers=service.auth(service.acme)) as response:
        for chunk in response.iter_bytes():
            total += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 10_000_000
    assert peak < 4_000_000, f"peak {peak} bytes while streaming {total} bytes"
