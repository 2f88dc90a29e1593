"""The viewer as an investigator's tool, in a real browser (Debian's Chromium driven by Playwright): the
activity chart, facets, pivots, follow mode, export of a filter, the tenant switcher, accessibility
(axe-core from npm) and hostile text in every field an event's sender controls."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sealog import AuditLog
from sealog._note import generate_key
from sealog.server.app import create_app
from sealog.server.keys import KeyStore
from tests.fixtures.liveserver import serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'
BURST = 25
"""Failures emitted in one minute, three hours ago: the chart must show them in one bar."""

pytestmark = pytest.mark.slow


@dataclass
class Live:
    base: str
    key: str
    admin: str
    log: AuditLog
    burst_at: datetime
    xss_id: str


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A running service (with a signing key) on a free loopback port, with seeded events."""
    signer = generate_key("audit.example.com")[0]
    (tmp_path / "signer.key").write_text(signer + "\n")
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", spool_dir=tmp_path / "spool", writer="thread",
                   signing_key=tmp_path / "signer.key", checkpoint_every=3600)
    assert log.flush(30)
    keys = KeyStore(log.url)
    keys.migrate()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for i in range(60):  # the background: successes over the last six hours
        log.emit(tenant_id="acme", action="auth.login", actor=("user", f"u-{i % 4}"), target=("app", f"a-{i % 3}"),
                 request_id=f"req-{i % 5}", correlation_id=f"trace-{i % 2}", ip_address="203.0.113.7",
                 occurred_at=now - timedelta(minutes=6 * i + 1))
    burst_at = now - timedelta(hours=3)
    for i in range(BURST):
        log.emit(tenant_id="acme", action="billing.charge", outcome="failure", actor=("user", "u-mallory"),
                 target=("card", f"c-{i}"), error_code="card_declined", request_id="req-burst",
                 occurred_at=burst_at + timedelta(seconds=2 * i))
    parent = log.emit(tenant_id="acme", action="agent.run", actor=("agent", "planner"), request_id="req-agent",
                      occurred_at=now - timedelta(minutes=30))
    log.emit(tenant_id="acme", action="tool.call", actor=("agent", "planner"), parent_event_id=parent,
             request_id="req-agent", occurred_at=now - timedelta(minutes=29),
             before={"limit": 10, "owner": "u-1"}, after={"limit": 99, "owner": "u-1"})
    xss_id = log.emit(tenant_id="acme", action="content.publish", actor=(XSS, XSS), target=(XSS, XSS),
                      user_agent=XSS, request_id=XSS, correlation_id=XSS, span_id=XSS, parent_event_id=XSS,
                      source=XSS, outcome="failure", error_code=XSS, error_message=XSS,
                      metadata={XSS: XSS, "nested": [XSS, {"deep": XSS}]}, proof={"type": "url", "url": XSS},
                      before={"caption": XSS}, after={"caption": "fine"}, occurred_at=now - timedelta(minutes=2))
    log.emit(tenant_id=XSS, action="auth.login", actor=("user", "x"))
    log.emit(tenant_id="globex", action="auth.login", actor=("user", "g-1"), metadata={"secret_plan": "globex-only"})
    assert log.flush(20)
    log.checkpoint("acme")
    with serving(create_app(log, keys)) as base:
        yield Live(base, keys.create("acme", "viewer test")[1], keys.create(None)[1], log, burst_at, xss_id)
    log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def signed_in(browser: Any, live: Live, key: str | None = None, tenant: str = "", **context: Any) -> Any:
    page = browser.new_page(viewport={"width": 1360, "height": 900}, **context)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    page.goto(live.base + "/")
    page.fill("input[name=api_key]", key or live.key)
    if tenant:
        page.fill("input[name=tenant]", tenant)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_url(live.base + "/events")
    return page


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_the_chart_shows_the_burst_of_failures_and_a_bar_narrows_the_time(browser: Any, live: Live) -> None:
    """The list's SVG chart is labelled, puts the burst's failures in one bar and no failure elsewhere
    (but the XSS event's one), and following that bar lists exactly the burst."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?since=5h")
    svg = page.locator("svg#activity-chart")
    assert svg.get_attribute("aria-label").startswith("Activity")
    assert f"{BURST + 1} failed" in svg.get_attribute("aria-label")
    bars = page.locator("a.bar")
    failing = [(bars.nth(i).get_attribute("data-start"), int(bars.nth(i).get_attribute("data-failures")))
               for i in range(bars.count()) if bars.nth(i).get_attribute("data-failures") != "0"]
    burst = [(start, n) for start, n in failing if n == BURST]
    assert len(burst) == 1, failing
    assert len(failing) == 2, failing  # the burst, and the XSS event two minutes ago
    start = datetime.fromisoformat(burst[0][0].replace("Z", "+00:00"))
    assert start <= live.burst_at < start + timedelta(minutes=15)
    assert f"{BURST} failed" in page.locator("#activity-text").text_content()
    shoot(page, "viewer-list-chart.png")

    bar = page.locator(f"a.bar[data-start='{burst[0][0]}']")
    total = int(bar.get_attribute("data-total"))
    bar.click()
    page.wait_for_load_state()
    assert {"since", "until"} <= set(parse_qs(urlsplit(page.url).query))
    assert page.locator("#events tbody tr").count() == total  # the bar's span, no more
    assert page.locator("#events tbody tr td.outcome-failure").count() == BURST
    assert dict(_facet(page, "actor_id"))["u-mallory"] == BURST


def test_facets_count_the_filter_and_add_to_it(browser: Any, live: Live) -> None:
    """Top actions, actors, targets and outcomes with counts; a facet link adds to the filter."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?since=24h")
    outcomes = dict(_facet(page, "outcome"))
    assert outcomes == {"success": 62, "failure": BURST + 1}
    assert dict(_facet(page, "action"))["billing.charge"] == BURST
    assert dict(_facet(page, "actor_id"))["u-mallory"] == BURST
    page.locator("ul.facet[data-facet=outcome] a", has_text="failure").click()
    page.wait_for_load_state()
    page.locator("ul.facet[data-facet=action] a", has_text="billing.charge").click()
    page.wait_for_load_state()
    assert parse_qs(urlsplit(page.url).query) == {"since": ["24h"], "outcome": ["failure"], "action": ["billing.charge"]}
    assert page.locator("#events tbody tr").count() == BURST


def _facet(page: Any, name: str) -> list[tuple[str, int]]:
    items = page.locator(f"ul.facet[data-facet={name}] li a")
    counts = page.locator(f"ul.facet[data-facet={name}] li .n")
    return [(items.nth(i).inner_text(), int(counts.nth(i).inner_text())) for i in range(items.count())]


@pytest.mark.parametrize(("link", "column"), [("a.actor-id", "td.actor"), ("a.target-id", "td.target"),
                                              ("a.request-id", "td.context"), ("a.correlation-id", "td.context")])
def test_each_pivot_lands_on_a_list_where_every_row_matches(browser: Any, live: Live, link: str, column: str) -> None:
    """An actor, target, request or correlation id in the list links to the list filtered by it alone."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?action=auth.login")
    first = page.locator(f"#events tbody tr {link}").first
    value = first.inner_text()
    first.click()
    page.wait_for_load_state()
    rows = page.locator("#events tbody tr")
    assert rows.count() >= 2
    for i in range(rows.count()):
        assert page.locator(f"#events tbody tr:nth-child({i + 1}) {link}").first.inner_text() == value
    assert "action=" not in page.url  # a pivot starts a new question


def test_event_page_pivots_parent_diff_receipt_and_only_set_fields(browser: Any, live: Live) -> None:
    """The event page lists only fields with a value, links its ids and its parent, shows the change
    and offers the receipt, which is the log's own."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?action=tool.call")
    page.locator("#events a.row-link").first.click()
    page.wait_for_load_state()
    names = page.locator("#fields th").all_text_contents()
    assert {"parent_event_id", "actor_id", "request_id"} <= set(names)
    assert not {"ip_address", "target_id", "user_agent", "error_code"} & set(names)
    assert "ago" in page.locator("main").inner_text()
    assert page.locator(".diff td.changed").count() == 2
    shoot(page, "viewer-event.png")
    receipt_href = page.locator("a#receipt").get_attribute("href")
    event_id = receipt_href.split("/")[2]
    response = page.request.get(live.base + receipt_href)
    assert response.status == 200
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text() == live.log.receipt("acme", event_id)

    page.locator("a.pivot[data-field=parent_event_id]").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("agent.run")
    page.locator("a.pivot[data-field=request_id]").click()
    page.wait_for_load_state()
    assert page.locator("#events tbody tr").count() == 2
    assert set(page.locator("#events td.context a.request-id").all_inner_texts()) == {"req-agent"}


def test_follow_mode_shows_a_new_event_and_pauses(browser: Any, live: Live) -> None:
    """An event emitted after the page loaded appears in the list; paused, the page stops asking."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?actor_id=u-late")
    assert page.locator("#events tbody tr[data-event-id]").count() == 0
    new_id = live.log.emit(tenant_id="acme", action="auth.login", actor=("user", "u-late"))
    assert live.log.flush(10)
    page.wait_for_selector(f"#events tr[data-event-id='{new_id}'].new", timeout=20_000)
    assert "1 new event" in page.locator("#follow-status").inner_text()
    shoot(page, "viewer-follow.png")

    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/follow" in request.url else None)
    page.click("#follow")
    assert page.get_attribute("#follow", "aria-pressed") == "false"
    asked.clear()
    later = live.log.emit(tenant_id="acme", action="auth.login", actor=("user", "u-late"))
    assert live.log.flush(10)
    page.wait_for_timeout(5000)  # over two poll periods: a running poller would have asked twice
    assert asked == []
    assert page.locator(f"#events tr[data-event-id='{later}']").count() == 0
    page.click("#follow")
    page.wait_for_selector(f"#events tr[data-event-id='{later}']", timeout=20_000)


def test_export_returns_exactly_the_filtered_events(browser: Any, live: Live) -> None:
    """The Export links download the current filter's events (JSONL and CSV), no more, no fewer."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?outcome=failure&since=24h")
    expected = {e.event_id for e in live.log.query("acme", outcome="failure", since="24h", limit=1000)}
    assert len(expected) == BURST + 1
    with page.expect_download() as download:
        page.click("#export-jsonl")
    lines = Path(download.value.path()).read_text().splitlines()
    assert {json.loads(line)["event_id"] for line in lines} == expected
    assert len(lines) == len(expected)
    assert download.value.suggested_filename == "acme-events.jsonl"
    response = page.request.get(live.base + page.locator("#export-csv").get_attribute("href"))
    rows = list(csv.DictReader(io.StringIO(response.text())))
    assert {row["event_id"] for row in rows} == expected
    assert {row["outcome"] for row in rows} == {"failure"}
    hostile = next(row for row in rows if row["event_id"] == live.xss_id)
    assert hostile["error_code"] == XSS  # a leading '<' is no formula: kept as is


def test_admin_switches_tenant(browser: Any, live: Live) -> None:
    """An admin key gets a tenant switcher; switching shows the other tenant's events only."""
    page = signed_in(browser, live, key=live.admin, tenant="acme")
    options = page.locator("#tenant-switch option").all_inner_texts()
    assert {"acme", "globex", XSS} <= set(options)
    page.select_option("#tenant-switch", "globex")
    page.click("form[action='/tenant'] button")
    page.wait_for_url(live.base + "/events")
    assert page.locator("#events tbody tr[data-event-id]").count() == 1
    assert "g-1" in page.locator("#events").inner_text()
    shoot(page, "viewer-admin.png")
    page.select_option("#tenant-switch", XSS)
    page.click("form[action='/tenant'] button")
    page.wait_for_url(live.base + "/events")
    assert XSS in page.locator("header .tenant").inner_text()
    assert page.dialogs == []
    keyed = signed_in(browser, live)
    assert keyed.locator("#tenant-switch").count() == 0


def test_hostile_text_in_every_field_renders_as_text(browser: Any, live: Live) -> None:
    """Markup in every field a sender controls is shown literally on the list, the event page and the
    pivots' lists, and never runs."""
    page = signed_in(browser, live)
    page.goto(live.base + "/events?action=content.publish")
    row = page.locator("#events tbody tr").first
    for cell in ("td.actor", "td.target", "td.context"):
        assert XSS in row.locator(cell).inner_text()
    page.locator("#events a.row-link").first.click()
    page.wait_for_load_state()
    fields = dict(zip(page.locator("#fields th").all_text_contents(), page.locator("#fields td").all_inner_texts(),
                      strict=True))
    for name in ("actor_type", "actor_id", "target_type", "target_id", "user_agent", "request_id", "correlation_id",
                 "span_id", "parent_event_id", "source", "error_code", "error_message"):
        assert fields[name] == XSS, name
    assert page.locator("#metadata").text_content().count(json.dumps(XSS)) == 4  # a key, a value, two nested
    assert json.dumps(XSS) in page.locator("#proof").inner_text()
    assert json.dumps(XSS) in page.locator(".diff").inner_text()
    page.locator("a.pivot[data-field=actor_id]").click()
    page.wait_for_load_state()
    assert page.locator("#events tbody tr[data-event-id]").count() == 1
    assert XSS in page.locator(".chips").inner_text()
    assert page.locator("img[src=x]").count() == 0
    assert page.dialogs == []


PAGES = ("signin", "list", "event", "checkpoint")


def test_axe_finds_no_serious_or_critical_violation(browser: Any, live: Live) -> None:
    """axe-core (from npm, injected) on the sign-in, list, event and checkpoint pages."""
    assert AXE.exists(), f"{AXE} is missing: run `npm ci` in tests/server"
    page = browser.new_page(viewport={"width": 1360, "height": 900}, bypass_csp=True)  # to inject axe itself
    found: dict[str, list[Any]] = {}
    page.goto(live.base + "/")
    found["signin"] = _axe(page)
    shoot(page, "viewer-signin.png")
    page.fill("input[name=api_key]", live.key)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_url(live.base + "/events")
    found["list"] = _axe(page)
    page.goto(live.base + f"/events/{live.xss_id}")
    found["event"] = _axe(page)
    shoot(page, "viewer-event-hostile.png")
    page.goto(live.base + "/checkpoint")
    found["checkpoint"] = _axe(page)
    shoot(page, "viewer-checkpoint.png")
    assert set(found) == set(PAGES)
    assert all(found[name] == [] for name in PAGES), found


def _axe(page: Any) -> list[Any]:
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""")
    return list(violations)


def test_keyboard_moves_between_events_with_visible_focus(browser: Any, live: Live) -> None:
    """j and k move the focus from event to event (shown with an outline); / goes to the filter."""
    page = signed_in(browser, live)
    page.keyboard.press("j")
    page.keyboard.press("j")
    focused = page.evaluate("document.activeElement.className")
    assert focused == "row-link"
    assert page.locator("#events tr.current").count() == 1
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "action"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "actor_id"
