"""The viewer's proof pages: an event's inclusion in the latest checkpoint, verified on the server, and the
checkpoint page saying whether the stored tree still matches it (and, on request, every event re-hashed).
After tampering, both say so."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sealog import AuditLog
from sealog._note import Signer, generate_key, open_checkpoint
from sealog.server.app import create_app
from sealog.server.keys import KeyStore
from tests.test_witness import cut_tail, rehash, sign_tree


@dataclass
class Viewer:
    log: AuditLog
    client: TestClient
    url: str
    signer: Signer

    def emit(self, count: int) -> list[str]:
        ids = [self.log.emit(tenant_id="acme", action="tool.call", metadata={"i": i}) for i in range(count)]
        assert self.log.flush(20)
        return ids

    def page(self, path: str, method: str = "GET") -> str:
        response = self.client.request(method, path)
        assert response.status_code == 200, response.text
        return str(response.text)


def state(html: str, element: str) -> str:
    found = re.search(rf'id="{element}" data-state="([a-z]+)"', html)
    assert found, html
    return found.group(1)


@contextmanager
def start(tmp_path: Path, *, signing: bool, signer: str | None = None) -> Iterator[Viewer]:
    signer = signer or generate_key("audit.example.com")[0]
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "signer.key").write_text(signer + "\n")
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url, spool_dir=tmp_path / "spool", writer="thread",
                   signing_key=tmp_path / "signer.key" if signing else None, checkpoint_every=3600)
    assert log.flush(30)  # the writer has migrated the store: no lock race with the key store below
    keys = KeyStore(log.url)
    keys.migrate()
    try:
        with TestClient(create_app(log, keys)) as client:
            signin = client.post("/signin", data={"api_key": keys.create("acme")[1]})
            assert signin.status_code == 200
            yield Viewer(log, client, url, Signer.from_text(signer))
    finally:
        log.close()


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[Viewer]:
    """Signed in as acme, on a server holding the signing key (so it knows the verifier key too)."""
    with start(tmp_path, signing=True) as viewer:
        yield viewer


def test_event_page_shows_the_events_inclusion_in_the_latest_checkpoint(viewer: Viewer) -> None:
    """No checkpoint: says so; once signed: ok with the checkpoint's size and root; a later event: pending."""
    ids = viewer.emit(300)
    assert state(viewer.page(f"/events/{ids[9]}"), "inclusion") == "none"
    checkpoint = open_checkpoint(viewer.log.checkpoint("acme"), [viewer.signer.verifier()])
    root = base64.b64encode(checkpoint.root).decode()
    for event_id in (ids[9], ids[299]):
        html = viewer.page(f"/events/{event_id}")
        assert state(html, "inclusion") == "ok"
        assert '<td id="inclusion-size">300</td>' in html
        assert f'id="inclusion-root">{root}</td>' in html
        assert "signed by audit.example.com+" in html
    later = viewer.emit(1)[0]
    assert state(viewer.page(f"/events/{later}"), "inclusion") == "pending"


def test_checkpoint_page_says_the_tree_matches_and_the_list_links_to_it(viewer: Viewer) -> None:
    """The list links /checkpoint; it shows the signed note, its size and root, a verified signature, a match."""
    assert 'href="/checkpoint"' in viewer.page("/events")
    assert state(viewer.page("/checkpoint"), "tree-status") == "none"
    viewer.emit(40)
    note = viewer.log.checkpoint("acme")
    html = viewer.page("/checkpoint")
    assert state(html, "tree-status") == "ok"
    assert "the stored tree matches the checkpoint" in html
    assert '<td id="checkpoint-size">40</td>' in html
    assert note.split("\n")[2] in html
    assert "verified" in html
    assert state(viewer.page("/checkpoint", "POST"), "rehash") == "ok"


def test_after_a_cut_off_tail_both_pages_say_it(viewer: Viewer) -> None:
    """Events cut off below the checkpoint (head fixed): the checkpoint page says the tree does not match,
    naming the cut, and an event's inclusion is not proven."""
    ids = viewer.emit(40)
    viewer.log.checkpoint("acme")
    cut_tail(viewer.url, keep=30, hide=False)
    html = viewer.page("/checkpoint")
    assert state(html, "tree-status") == "failed"
    assert "does NOT match" in html
    assert "the store holds 30 events, fewer than the 40 the checkpoint covers" in html
    assert state(viewer.page(f"/events/{ids[3]}"), "inclusion") == "failed"


def test_after_a_rehash_in_the_newest_tile_every_check_says_it(viewer: Viewer) -> None:
    """An event in the last (unstored) tile changed and the chain re-hashed: the tree does not match, the
    event's inclusion fails, and the full re-hash (POST) finds it."""
    ids = viewer.emit(300)
    viewer.log.checkpoint("acme")
    rehash(viewer.url, changed_seq=290, hide=False)
    assert state(viewer.page("/checkpoint"), "tree-status") == "failed"
    assert state(viewer.page(f"/events/{ids[289]}"), "inclusion") == "failed"
    assert state(viewer.page("/checkpoint", "POST"), "rehash") == "failed"


def test_a_rehash_under_a_stored_tile_needs_the_full_check(viewer: Viewer) -> None:
    """An event under a stored 256-event tile changed and the chain re-hashed: the stored tree still gives the
    root (the quick check says so), but the event's inclusion and the full re-hash (POST) both fail."""
    ids = viewer.emit(300)
    viewer.log.checkpoint("acme")
    rehash(viewer.url, changed_seq=5, hide=False)
    assert state(viewer.page("/checkpoint"), "tree-status") == "ok"  # the stored tile keeps the old hash
    assert state(viewer.page(f"/events/{ids[4]}"), "inclusion") == "failed"  # its leaf, re-hashed, does not fit
    full = viewer.page("/checkpoint", "POST")
    assert state(full, "rehash") == "failed"
    assert "its first 300 events do not give the checkpoint&#39;s root" in full


def test_a_checkpoint_signed_by_another_key_is_shown_as_invalid(viewer: Viewer) -> None:
    """A forged latest checkpoint (another key, same name): the signature is invalid and nothing is ok."""
    ids = viewer.emit(10)
    viewer.log.checkpoint("acme")
    viewer.emit(2)
    other, _ = generate_key("audit.example.com")
    sign_tree(viewer.url, Signer.from_text(other))
    html = viewer.page("/checkpoint")
    assert state(html, "tree-status") == "failed"
    assert "the signature does not verify" in html
    assert state(viewer.page(f"/events/{ids[0]}"), "inclusion") == "failed"


def test_without_a_verifier_key_the_signature_is_unchecked_and_the_setting_adds_it(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A server with no key says the signature was not checked; SEALOG_VERIFIER_KEY makes it verify."""
    with start(tmp_path / "a", signing=False) as viewer:
        viewer.emit(5)
        sign_tree(viewer.url, viewer.signer)
        html = viewer.page("/checkpoint")
        assert state(html, "tree-status") == "ok"
        assert "not checked: the server has no verifier key" in html
    signer, verifier = generate_key("audit.example.com")
    monkeypatch.setenv("SEALOG_VERIFIER_KEY", verifier)
    with start(tmp_path / "b", signing=False, signer=signer) as viewer:
        viewer.emit(5)
        sign_tree(viewer.url, viewer.signer)
        html = viewer.page("/checkpoint")
        assert state(html, "tree-status") == "ok"
        assert f"signed by {'+'.join(verifier.split('+')[:2])}" in html  # name+key id
