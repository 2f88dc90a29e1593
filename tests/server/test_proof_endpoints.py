"""The verifiable log over HTTP: /v1/checkpoint, /v1/proof/inclusion, /v1/proof/consistency. Proofs fetched
over HTTP verify (with sealog._merkle) against checkpoints fetched over HTTP; tenant scoping and bad
parameters answer as every endpoint does; the OpenAPI document lists all three."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from starlette.testclient import TestClient

from sealog import AuditLog
from sealog._merkle import ConsistencyProofError, leaf_hash, verify_consistency, verify_inclusion
from sealog._note import Checkpoint, Verifier, generate_key, open_checkpoint
from sealog.server.app import create_app
from sealog.server.keys import KeyStore

SEAL = ("seq", "prev_hash", "hash", "recorded_at")


@dataclass
class Signed:
    log: AuditLog
    client: TestClient
    verifier: Verifier
    acme: str
    globex: str
    admin: str

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.acme}"} if key != "" else {}
        return self.client.get(path, params=params, headers=headers)

    def checkpoint(self, key: str | None = None, **params: Any) -> Checkpoint:
        response = self.get("/v1/checkpoint", key, **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return open_checkpoint(response.text, [self.verifier], "sealog/acme")

    def emit(self, tenant: str, count: int) -> list[str]:
        ids = [self.log.emit(tenant_id=tenant, action="tool.call", metadata={"i": i, "r": i / 3}) for i in range(count)]
        assert self.log.flush(20)
        return ids


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[Signed]:
    """A service whose AuditLog holds a signing key (automatic signing far off: tests sign on demand)."""
    signer, verifier = generate_key("audit.example.com")
    (tmp_path / "signer.key").write_text(signer + "\n")
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool",
                   signing_key=tmp_path / "signer.key", checkpoint_every=3600)
    assert log.flush(30)
    keys = KeyStore(log.url)
    keys.migrate()
    with TestClient(create_app(log, keys)) as client:
        yield Signed(log, client, Verifier.from_text(verifier), keys.create("acme")[1], keys.create("globex")[1],
                     keys.create(None)[1])
    log.close()


def leaf_of(event: dict[str, Any]) -> bytes:
    """The RFC 6962 leaf hash of an event as the API returns it (RFC 8785 of its content fields)."""
    return leaf_hash(rfc8785.dumps({k: v for k, v in event.items() if k not in SEAL}))


def hashes(proof: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(h) for h in proof["hashes"]]


def test_checkpoint_is_404_until_signed_then_the_latest_note_as_text(signed: Signed) -> None:
    """No events: 404 naming the tenant; then the stored latest signed note, verbatim, origin sealog/acme."""
    missing = signed.get("/v1/checkpoint")
    assert missing.status_code == 404
    assert "'acme'" in missing.json()["error"]
    signed.emit("acme", 5)
    first = signed.checkpoint()  # no checkpoint yet and a key: the server signs the first one
    assert (first.origin, first.size) == ("sealog/acme", 5)
    signed.emit("acme", 3)
    assert signed.checkpoint().size == 5  # a poll never makes the server sign: the signing thread does
    note = signed.log.checkpoint("acme")
    assert signed.get("/v1/checkpoint").text == note
    assert signed.checkpoint().size == 8


def test_proofs_over_http_verify_against_checkpoints_over_http(signed: Signed) -> None:
    """Events over one 256-leaf tile: inclusion proofs (default and explicit tree_size) and the consistency
    proof between two checkpoints, all fetched over HTTP, verify with RFC 9162's algorithms."""
    ids = signed.emit("acme", 300)
    signed.log.checkpoint("acme")
    old = signed.checkpoint()
    ids += signed.emit("acme", 40)
    signed.log.checkpoint("acme")
    new = signed.checkpoint()
    assert (old.size, new.size) == (300, 340)
    for index in (0, 255, 256, 299, 339):
        event = signed.get(f"/v1/events/{ids[index]}").json()
        proof = signed.get("/v1/proof/inclusion", event_id=ids[index]).json()
        assert (proof["leaf_index"], proof["tree_size"]) == (index, 340)
        verify_inclusion(leaf_of(event), index, 340, hashes(proof), new.root)
        if index < 300:
            at_old = signed.get("/v1/proof/inclusion", event_id=ids[index], tree_size=300).json()
            assert at_old["tree_size"] == 300
            verify_inclusion(leaf_of(event), index, 300, hashes(at_old), old.root)
    consistency = signed.get("/v1/proof/consistency", first=300, second=340).json()
    assert (consistency["first"], consistency["second"]) == (300, 340)
    verify_consistency(300, 340, hashes(consistency), old.root, new.root)
    with pytest.raises(ConsistencyProofError):  # the proof means something: another root fails it
        verify_consistency(300, 340, hashes(consistency), new.root, new.root)
    same = signed.get("/v1/proof/consistency", first=340, second=340).json()
    assert same == {"first": 340, "second": 340, "hashes": []}


def test_every_proof_endpoint_is_tenant_scoped(signed: Signed) -> None:
    """No key 401; another tenant's id 403; another tenant's event 404 without its content; admin names the tenant."""
    acme_ids = signed.emit("acme", 3)
    globex_ids = signed.emit("globex", 2)
    signed.log.checkpoint("acme")
    signed.log.checkpoint("globex")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/checkpoint", {}), ("/v1/proof/inclusion", {"event_id": acme_ids[0]}),
        ("/v1/proof/consistency", {"first": 1, "second": 2})]
    for path, params in calls:
        assert signed.get(path, "", **params).status_code == 401
        assert signed.get(path, "not-a-key", **params).status_code == 401
        denied = signed.get(path, signed.globex, tenant_id="acme", **params)
        assert denied.status_code == 403, path
        assert "globex" in denied.json()["error"]
        assert signed.get(path, signed.admin, **params).status_code == 400  # an admin key must name the tenant
        assert signed.get(path, signed.admin, tenant_id="acme", **params).status_code == 200, path
        assert signed.get(path, signed.acme, tenant_id="acme", **params).status_code == 200, path
    theirs = signed.get("/v1/proof/inclusion", event_id=globex_ids[0])
    assert theirs.status_code == 404
    assert "globex" not in theirs.text
    assert signed.get("/v1/proof/inclusion", signed.globex, event_id=globex_ids[0]).status_code == 200
    globex_note = signed.get("/v1/checkpoint", signed.globex).text
    assert globex_note.startswith("sealog/globex\n2\n")
    assert signed.get("/v1/checkpoint").text.startswith("sealog/acme\n3\n")


@pytest.mark.parametrize(("path", "params", "named"), [
    ("/v1/proof/inclusion", {}, "event_id is required"),
    ("/v1/proof/inclusion", {"event_id": "E", "tree_size": "abc"}, "tree_size must be a tree size"),
    ("/v1/proof/inclusion", {"event_id": "E", "tree_size": "-1"}, "tree_size must be a tree size"),
    ("/v1/proof/inclusion", {"event_id": "E", "tree_size": "²"}, "tree_size must be a tree size"),
    ("/v1/proof/inclusion", {"event_id": "E", "tree_size": "99999999999999999999"}, "tree_size must be"),
    ("/v1/proof/inclusion", {"event_id": "E", "tree_size": "4"}, "has 3 events, not 4"),
    ("/v1/proof/inclusion", {"event_id": "a\x00b"}, "event_id: a NUL character"),
    ("/v1/proof/inclusion", {"event_id": "E", "size": "2"}, "unknown query parameter 'size'"),
    ("/v1/proof/consistency", {"second": "2"}, "first is required"),
    ("/v1/proof/consistency", {"first": "1"}, "second is required"),
    ("/v1/proof/consistency", {"first": "1.5", "second": "2"}, "first must be a tree size"),
    ("/v1/proof/consistency", {"first": "3", "second": "2"}, "first (3) must not exceed second (2)"),
    ("/v1/proof/consistency", {"first": "1", "second": "9"}, "has 3 events, not 9"),
    ("/v1/checkpoint", {"tenant": "acme"}, "unknown query parameter 'tenant'"),
])
def test_bad_parameters_are_a_400_naming_them(signed: Signed, path: str, params: dict[str, str], named: str) -> None:
    """Each malformed or impossible parameter gets a 400 whose message names it, never a 500."""
    signed.emit("acme", 3)
    signed.log.checkpoint("acme")
    response = signed.get(path, **params)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_inclusion_of_an_unknown_event_or_beyond_the_tree_is_404(signed: Signed) -> None:
    """An unknown event, an event after tree_size, or no checkpoint to default to: 404 saying which."""
    ids = signed.emit("acme", 3)
    no_checkpoint = signed.get("/v1/proof/inclusion", event_id=ids[0])
    assert no_checkpoint.status_code == 404
    assert "no signed checkpoint" in no_checkpoint.json()["error"]
    assert signed.get("/v1/proof/inclusion", event_id=ids[0], tree_size=3).status_code == 200
    later = signed.get("/v1/proof/inclusion", event_id=ids[2], tree_size=2)
    assert later.status_code == 404
    assert "seq 3 is not in the tree of size 2" in later.json()["error"]
    assert signed.get("/v1/proof/inclusion", event_id="no-such-event", tree_size=3).status_code == 404


def test_openapi_documents_the_three_endpoints(signed: Signed) -> None:
    """The OpenAPI document lists each endpoint with its parameters, bearer security and response types."""
    spec = signed.client.get("/openapi.json").json()
    checkpoint = spec["paths"]["/v1/checkpoint"]["get"]
    assert "text/plain" in checkpoint["responses"]["200"]["content"]
    assert {"401", "403", "404"} <= set(checkpoint["responses"])
    inclusion = spec["paths"]["/v1/proof/inclusion"]["get"]
    assert {(p["name"], p["required"]) for p in inclusion["parameters"]} == {
        ("tenant_id", False), ("event_id", True), ("tree_size", False)}
    assert inclusion["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InclusionProofOut"}
    consistency = spec["paths"]["/v1/proof/consistency"]["get"]
    assert {(p["name"], p["required"]) for p in consistency["parameters"]} == {
        ("tenant_id", False), ("first", True), ("second", True)}
    assert set(spec["components"]["schemas"]["ConsistencyProofOut"]["properties"]) == {"first", "second", "hashes"}
    assert set(spec["components"]["schemas"]["InclusionProofOut"]["properties"]) == {"leaf_index", "tree_size", "hashes"}
    for operation in (checkpoint, inclusion, consistency):
        assert operation["security"] == [{"bearer": []}]


def test_a_proof_the_damaged_tree_cannot_give_is_a_409(signed: Signed) -> None:
    """The stored subtree rows deleted (a damaged or badly pruned tree): 409 saying why, never a 500."""
    ids = signed.emit("acme", 300)
    url = signed.log.url
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("DROP TRIGGER tree_nodes_no_delete")
    conn.execute("DELETE FROM tree_nodes")
    conn.close()
    for path, params in (("/v1/proof/inclusion", {"event_id": ids[290], "tree_size": 300}),
                         ("/v1/proof/consistency", {"first": 280, "second": 300})):
        response = signed.get(path, **params)
        assert response.status_code == 409, response.text
        assert "the stored tree cannot give this proof: no stored hash at level 8" in response.json()["error"]
