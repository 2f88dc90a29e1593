"""Issue 9, HTTP side: every hostile or careless input gets its named 4xx, never a 500."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from sealog import AuditLog
from sealog._event import CONTENT_FIELDS
from sealog.server.app import create_app
from sealog.server.keys import KeyStore

from .conftest import Service


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def get(service: Service, path: str, key: str | None = None, **params: str) -> Any:
    return service.client.get(path, params=params, headers=service.auth(key or service.acme))


BAD_QUERIES = [
    pytest.param({"since": "0001-01-01T00:00:00+01:00"}, "since", id="since-year-1-with-offset"),
    pytest.param({"until": "9999-12-31T23:00:00-05:00"}, "until", id="until-past-year-9999"),
    pytest.param({"limit": "²"}, "limit", id="limit-superscript-two"),
    pytest.param({"limit": "0"}, "limit", id="limit-zero"),
    pytest.param({"limit": "1" * 400}, "limit", id="limit-huge"),
    pytest.param({"after": cursor(f"2024-01-01T00:00:00.000000Z|{10**23}")}, "cursor", id="cursor-seq-1e23"),
    pytest.param({"after": cursor("not a date|5")}, "cursor", id="cursor-not-a-date"),
    pytest.param({"after": "%%%"}, "cursor", id="cursor-not-base64"),
    pytest.param({"actor_id": "a\x00b"}, "NUL", id="nul-in-filter"),
]


@pytest.mark.parametrize(("params", "named"), BAD_QUERIES)
def test_bad_search_parameters_are_400_naming_the_problem(service: Service, params: dict[str, str],
                                                          named: str) -> None:
    """Year-1 times with offsets, odd limits, forged cursors, NUL: 400 with a message naming it."""
    response = get(service, "/v1/events", **params)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_a_span_beyond_any_date_searches_from_the_beginning(service: Service) -> None:
    """since=99999999999999w is not an overflow: it means 'from the earliest time'."""
    assert service.client.post("/v1/events", json={"action": "a.b"}, headers=service.auth(service.acme)).status_code \
        == 202
    assert service.log.flush(20)
    response = get(service, "/v1/events", since="99999999999999w")
    assert response.status_code == 200
    assert len(response.json()["events"]) == 1


def test_forged_cursors_are_400_on_postgresql_too(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL would refuse a cursor's non-date text or big seq as a data error: 400 before it gets there."""
    log = AuditLog(pg_url, spool_dir=tmp_path / "spool", writer="thread")
    try:
        assert log.flush(30)
        keys = KeyStore(pg_url)
        keys.migrate()
        secret = keys.create("acme")[1]
        with TestClient(create_app(log, keys)) as client:
            headers = {"Authorization": f"Bearer {secret}"}
            for forged in (cursor("not a date|5"), cursor(f"2024-01-01T00:00:00.000000Z|{10**23}"),
                           cursor("2024-13-45T00:00:00Z|1")):
                response = client.get("/v1/events", params={"after": forged}, headers=headers)
                assert response.status_code == 400, response.text
            response = client.get("/v1/events", params={"actor_id": "a\x00b"}, headers=headers)
            assert response.status_code == 400
    finally:
        log.close()


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 74 + b"]" * 74],
                         ids=["100k-brackets", "100k-objects", "just-too-deep"])
def test_deeply_nested_bodies_are_400(service: Service, body: bytes) -> None:
    """Nesting is measured before decoding: 400 'nested deeper', never a RecursionError."""
    response = service.client.post("/v1/events", content=body, headers=service.auth(service.acme))
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]


def test_an_occurred_at_in_year_1_with_an_offset_is_422(service: Service) -> None:
    """0001-01-01T00:00:00+01:00 is before year 1 in UTC: 422 on occurred_at, nothing stored."""
    response = service.client.post("/v1/events", json=[{"action": "a.b"}, {
        "action": "a.b", "occurred_at": "0001-01-01T00:00:00+01:00"}], headers=service.auth(service.acme))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "occurred_at"
    assert service.log.flush(20)
    assert list(service.log.iter_events("acme")) == []


@pytest.mark.parametrize("tenant", ["東京", 'a";x=1', "a\r\nSet-Cookie: x=1", "plain"])
def test_export_names_any_tenant_in_a_safe_content_disposition(service: Service, tenant: str) -> None:
    """RFC 6266: an ASCII filename plus filename*; no quote, parameter or header can be injected."""
    response = get(service, "/v1/export", service.admin, tenant_id=tenant, format="csv")
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    params = [p.strip() for p in disposition.split(";")]
    assert params[0] == "attachment"
    assert [p.split("=")[0] for p in params[1:]] == ["filename", "filename*"]
    assert params[2].startswith("filename*=UTF-8''")
    from urllib.parse import unquote

    assert unquote(params[2].removeprefix("filename*=UTF-8''")) == f"{tenant}.csv"


def test_csv_export_neutralises_formula_cells(service: Service) -> None:
    """Cells starting with = + - @ tab or CR get a leading quote; JSON columns and plain text stay."""
    hostile = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]
    body = [{"action": "a.b", "actor_id": text, "metadata": {"n": -5}} for text in hostile]
    body.append({"action": "a.b", "actor_id": "alice"})
    assert service.client.post("/v1/events", json=body, headers=service.auth(service.acme)).status_code == 202
    assert service.log.flush(20)
    rows = list(csv.DictReader(io.StringIO(get(service, "/v1/export", format="csv").text)))
    assert [r["actor_id"] for r in rows] == ["'" + text for text in hostile] + ["alice"]
    assert json.loads(rows[0]["metadata"]) == {"n": -5}


def test_ip_addresses_are_stored_as_given(service: Service) -> None:
    """::ffff:1.2.3.4 stays as written (not ::ffff:102:304); invalid text is still a 422."""
    given_ips = ["::ffff:1.2.3.4", "2001:db8:0:0::1", "203.0.113.5"]
    ids = service.client.post("/v1/events", json=[{"action": "a.b", "ip_address": ip} for ip in given_ips],
                              headers=service.auth(service.acme)).json()["event_ids"]
    assert service.log.flush(20)
    assert [get(service, f"/v1/events/{i}").json()["ip_address"] for i in ids] == given_ips
    bad = service.client.post("/v1/events", json={"action": "a.b", "ip_address": "1.2.3.999"},
                              headers=service.auth(service.acme))
    assert bad.status_code == 422


def signin(client: TestClient, key: str, base_url: str | None = None) -> Any:
    return client.post(f"{base_url or ''}/signin", data={"api_key": key}, follow_redirects=False)


def test_session_cookie_is_secure_over_tls_and_with_the_flag(service: Service, tmp_path: Path) -> None:
    """HttpOnly and SameSite=Strict always; Secure when the request came over https or with secure_cookies."""
    plain = signin(service.client, service.acme).headers["set-cookie"].lower()
    assert "httponly" in plain
    assert "samesite=strict" in plain
    assert "secure" not in plain.replace("httponly", "")
    tls = TestClient(service.client.app, base_url="https://testserver")
    cookie = signin(tls, service.acme).headers["set-cookie"].lower()
    assert "; secure" in cookie
    assert "httponly" in cookie
    flagged = TestClient(create_app(service.log, service.keys, secure_cookies=True))
    assert "; secure" in signin(flagged, service.acme).headers["set-cookie"].lower()


@pytest.fixture
def umask_zero() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_database_wal_shm_and_spool_are_owner_only_whatever_the_umask(tmp_path: Path, umask_zero: None) -> None:
    """With umask 0 (files would be 0666), the SQLite database, its WAL and SHM, and the spool are 0600."""
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread")
    try:
        log.emit(tenant_id="acme", action="a.b")
        assert log.flush(20)
        files = [tmp_path / "audit.db", tmp_path / "audit.db-wal", tmp_path / "audit.db-shm",
                 *(tmp_path / "spool").glob("*.seg"), *(tmp_path / "spool").glob("*.lock")]
        assert len(files) >= 5
        modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
        assert set(modes.values()) == {"0o600"}, modes
    finally:
        log.close()
    keys_only = tmp_path / "keys.db"
    KeyStore(f"sqlite:///{keys_only}").migrate()  # `sealog keys create` may create the database first
    assert stat.S_IMODE(keys_only.stat().st_mode) == 0o600


# -- all or nothing, and safe retries ------------------------------------------------------


@pytest.mark.allow_sealog_errors
def test_a_batch_against_a_nearly_full_spool_is_spooled_whole_or_not_at_all(tmp_path: Path) -> None:
    """300 events (~100 kB), room for ~38 kB: 503 and none spooled; the retry with the same key, once room is back,
    stores each event exactly once, and a further retry stores nothing more."""
    later = tmp_path / "later"  # the store's directory is missing: an outage, so the spool fills
    log = AuditLog(f"sqlite:///{later / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread",
                   max_spool_bytes=150_000, spool_full="raise")
    try:
        keys = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
        secret = keys.create("acme")[1]
        with TestClient(create_app(log, keys)) as client:
            headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "batch-0001"}
            filler = [{"action": "test.fill", "metadata": {"pad": "x" * 600}}] * 150
            assert client.post("/v1/events", json=filler, headers={"Authorization": headers["Authorization"]}
                               ).status_code == 202
            before = log.stats()["emitted"]
            batch = [{"action": "test.batch", "metadata": {"i": i, "pad": "y" * 200}} for i in range(300)]
            refused = client.post("/v1/events", json=batch, headers=headers)
            assert refused.status_code == 503
            assert "nothing was stored" in refused.json()["error"]
            assert refused.headers["retry-after"]
            assert log.stats()["emitted"] == before  # not one event of the batch is in the spool
            later.mkdir()  # the store is back; the backlog drains and frees the spool
            assert log.flush(30)
            first = client.post("/v1/events", json=batch, headers=headers)
            again = client.post("/v1/events", json=batch, headers=headers)
            assert first.status_code == again.status_code == 202
            assert first.json() == again.json()
            assert log.flush(30)
            restarted = TestClient(create_app(log, keys))  # a new process forgets, the ids do not change
            assert restarted.post("/v1/events", json=batch, headers=headers).json() == first.json()
            assert log.flush(30)
            stored = [e for e in log.iter_events("acme") if e.action == "test.batch"]
            assert sorted(e.metadata["i"] for e in stored) == list(range(300))
            reused = client.post("/v1/events", json=batch[:1], headers=headers)
            assert reused.status_code == 422
            assert "Idempotency-Key" in reused.text
    finally:
        log.close()


def test_explicit_event_ids_make_a_retry_safe_without_a_key(service: Service) -> None:
    """A client that gives its own event ids may simply send the batch again."""
    batch = [{"action": "a.b", "event_id": f"client-{i}"} for i in range(5)]
    for _ in range(3):
        assert service.client.post("/v1/events", json=batch, headers=service.auth(service.acme)).status_code == 202
    assert service.log.flush(20)
    assert sorted(e.event_id for e in service.log.iter_events("acme")) == [f"client-{i}" for i in range(5)]


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "é"])
def test_a_malformed_idempotency_key_is_400(service: Service, key: str) -> None:
    """1 to 255 visible ASCII characters, else 400 naming the header."""
    headers: dict[str, str | bytes] = {**service.auth(service.acme), "Idempotency-Key": key.encode()}
    response = service.client.post("/v1/events", json={"action": "a.b"}, headers=headers)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]


# -- fuzz ------------------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from([*CONTENT_FIELDS, "seq", "hash", "x", ""])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["a.b", "0001-01-01T00:00:00+01:00", "::ffff:1.2.3.4", "=1+1", "\x00", "\ud800"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(FIELD_NAMES | st.text(max_size=8), inner, max_size=5),
    max_leaves=25)
events = st.dictionaries(FIELD_NAMES, json_values, max_size=8)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.one_of(st.binary(max_size=300), events.map(json_bytes), st.lists(events, max_size=4).map(json_bytes),
                      json_values.map(json_bytes)))
def test_random_bytes_and_json_get_only_202_or_a_4xx(service: Service, body: bytes) -> None:
    """Whatever the body, the answer is 202 or a 4xx with a JSON error; never a 500."""
    response = service.client.post("/v1/events", content=body, headers=service.auth(service.acme))
    assert response.status_code == 202 or 400 <= response.status_code < 500, response.text
    assert isinstance(response.json(), dict)


def test_an_idempotency_key_is_shared_by_workers_and_a_reused_key_loses_nothing(tmp_path: Path) -> None:
    """Two apps on one spool directory (as `serve --workers 2` runs): a retry on the other worker gets the first
    answer, a key reused for another body is refused there too; once the record is gone (expired), the other
    body is stored under ids of its own, never dropped as a duplicate of the first body's."""
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread")
    try:
        keys = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
        secret = keys.create("acme")[1]
        headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "order-77"}
        first_body = [{"action": "order.place", "metadata": {"n": i, "password": "hunter2-secret"}} for i in range(3)]
        other_body = [{"action": "order.cancel", "metadata": {"n": i}} for i in range(2)]
        with TestClient(create_app(log, keys)) as one, TestClient(create_app(log, keys)) as two:
            first = one.post("/v1/events", json=first_body, headers=headers)
            assert first.status_code == 202
            assert two.post("/v1/events", json=first_body, headers=headers).json() == first.json()
            refused = two.post("/v1/events", json=other_body, headers=headers)
            assert refused.status_code == 422
            assert "Idempotency-Key" in refused.text
        records = list((tmp_path / "spool" / "idempotency").glob("*.rec"))
        assert len(records) == 1
        assert b"hunter2" not in records[0].read_bytes()  # the body's hash and the ids, never the body
        records[0].unlink()  # a day later
        with TestClient(create_app(log, keys)) as three:
            later = three.post("/v1/events", json=other_body, headers=headers)
        assert later.status_code == 202
        assert set(later.json()["event_ids"]).isdisjoint(first.json()["event_ids"])
        assert log.flush(30)
        stored = sorted((e.action, e.metadata["n"]) for e in log.iter_events("acme"))
        assert stored == [("order.cancel", 0), ("order.cancel", 1),
                          ("order.place", 0), ("order.place", 1), ("order.place", 2)]
    finally:
        log.close()
