"""The viewer in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealog import AuditLog
from sealog.server.app import create_app
from sealog.server.keys import KeyStore
from tests.fixtures.liveserver import serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = "<script>alert(1)</script>"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running service on a free loopback port with seeded events; yields (base URL, key)."""
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool")
    keys = KeyStore(log.url)
    keys.migrate()
    for i in range(30):
        log.login("acme", f"u-{i % 3}", ip_address="203.0.113.7", method="sso")
    log.emit(tenant_id="acme", action="content.publish", actor=("agent", "publisher"), target=("post", "p-1"),
             metadata={"caption": XSS}, proof={"type": "api_response", "data": {"post_id": "ig_789"}})
    log.settings_change("acme", "u-1", "workspace", {"theme": "dark", "mfa": False}, {"theme": "light", "mfa": False})
    log.emit(tenant_id="globex", action="auth.login", metadata={"secret_plan": "globex-only"})
    assert log.flush(20)
    with serving(create_app(log, keys)) as base:
        yield base, keys.create("acme", "viewer test")[1]
    log.close()


def test_sign_in_filter_open_an_event_and_scripts_stay_text(live: tuple[str, str]) -> None:
    """Sign in, filter by action, open the event: metadata's <script> is shown, never run."""
    from playwright.sync_api import sync_playwright

    base, key = live
    ARTIFACTS.mkdir(exist_ok=True)
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(base + "/")
        page.fill("input[name=api_key]", key)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/events")
        cookie = next(c for c in page.context.cookies() if c["name"] == "sealog_session")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert key not in str(page.context.cookies())
        assert page.locator("tbody tr").count() == 32
        assert "globex" not in page.content()
        page.screenshot(path=str(ARTIFACTS / "viewer-list.png"), full_page=True)

        page.fill("input[name=action]", "content.*")
        page.click("form.filters button")
        page.wait_for_load_state()
        assert page.locator("tbody tr").count() == 1
        page.click("tbody tr a")
        page.wait_for_load_state()
        assert page.locator("#metadata").inner_text().count(XSS) == 1
        assert "ig_789" in page.content()
        assert "hash matches its content and its predecessor" in page.content()
        page.screenshot(path=str(ARTIFACTS / "viewer-event.png"), full_page=True)

        page.goto(base + "/events?action=settings.change")
        page.click("tbody tr a")
        page.wait_for_load_state()
        changed = page.locator("td.changed")
        assert changed.count() == 2  # theme before and after; mfa unchanged
        page.screenshot(path=str(ARTIFACTS / "viewer-change.png"), full_page=True)

        page.goto(base + "/events")
        page.click("text=Verify this tenant's chain")
        page.wait_for_load_state()
        assert "intact" in page.locator(".badge").inner_text()
        browser.close()
    assert dialogs == []


def test_signed_out_pages_redirect_to_sign_in(live: tuple[str, str]) -> None:
    """Without a session, the list and event pages send the browser to the sign-in form."""
    import httpx

    base, _ = live
    for path in ("/events", "/events/anything"):
        response = httpx.get(base + path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
    bad = httpx.post(base + "/signin", data={"api_key": "slk_nope"})
    assert bad.status_code == 401
    assert "Unknown or revoked" in bad.text
