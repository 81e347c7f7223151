"""The web app in a real browser: Playwright driving Debian's chromium against the live stack (the
gevent server that `make run` runs, serving pages, API and SSE; a real worker; MariaDB; Redis).

Every page is checked for requests leaving the host, console errors and axe-core's serious or
critical accessibility violations (axe vendored from its npm package: tests/browser_vendor). On a
failure the screenshot and the Playwright trace are kept in var/browser/. The screenshots in
docs/screenshots/ are written by these tests, so the README shows what the code does.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import advance, code_sent_to
from tests.support import ROOT, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser_vendor" / "axe-4.11.0.min.js"
ARTIFACTS = ROOT / "var" / "browser"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), "chromium is required: apt-get install chromium"
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Tab:
    """A page that records what would make the test fail: requests to other hosts, console
    errors, uncaught exceptions."""

    def __init__(self, context: Any, base: str) -> None:
        self.context, self.base = context, base
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:"))
                     else self.outside.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" and not _expected(m.text)
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a page, script, stylesheet or image that fails to load is an error (an API answer the
        # page handles, such as a refused seat, is not)
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}")
                     if r.status >= 400 and r.request.resource_type in {"document", "script", "stylesheet", "image"}
                     else None)

    def go(self, path: str) -> Any:
        """Open a page; every HTML page carries the headers of docs/security.md (a nonce CSP with no
        'unsafe-inline' script, no framing, nosniff). A CSP violation would be a console error."""
        response = self.page.goto(self.base + path)
        if "text/html" in response.headers.get("content-type", ""):
            csp = response.headers.get("content-security-policy", "")
            script_src = csp.split("script-src", 1)[-1].split(";", 1)[0]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, csp)
            assert "'nonce-" in script_src and "'unsafe-inline'" not in script_src, (path, csp)
            assert response.headers.get("x-content-type-options") == "nosniff", path
        return self.page

    def check(self) -> None:
        """No request left the host, nothing was logged as an error, axe finds nothing serious."""
        assert not self.outside, self.outside
        assert not self.errors, self.errors
        self.page.add_script_tag(path=str(AXE))
        violations = self.page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.filter(v => ["serious", "critical"].includes(v.impact))
                               .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" ")).join(", "));
        }""")
        assert not violations, violations

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _expected(text: str) -> bool:
    # the browser logs every non-2xx fetch; answers the page handles (a refused seat, the REST
    # server's 503 for a stream) are not errors of the page
    return "Failed to load resource" in text


@contextlib.contextmanager
def session(browser: Any, base: str, name: str, **options: Any) -> Iterator[Any]:
    """A browser context with tracing; on failure its trace and a screenshot stay in var/browser."""
    # Playwright's waiting helpers evaluate strings, which the pages' Content-Security-Policy
    # forbids (as it should); the header itself is checked in Tab.go
    context = browser.new_context(base_url=base, bypass_csp=True, **options)
    context.tracing.start(screenshots=True, snapshots=True)
    try:
        yield context
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(context.pages):
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"{name}-{i}.png"), full_page=True)
        context.tracing.stop(path=str(ARTIFACTS / f"{name}-trace.zip"))
        context.close()
        raise
    context.tracing.stop()
    context.close()


def log_in(context: Any, user: dict[str, Any]) -> None:
    r = context.request.post("/api/auth/session", data={"email": user["email"], "password": user["password"]})
    assert r.status == 200, r.text()


def join_by_api(live: Any, event_id: int, users: list[dict[str, Any]]) -> None:
    import requests

    for u in users:
        r = requests.post(f"{live.url}/api/queue/{event_id}/join", headers=u["headers"], timeout=5)
        assert r.status_code == 202, r.text


def test_a_fan_registers_waits_sees_the_line_move_picks_two_seats_pays_and_gets_the_qr_ticket(
        app, live_stream, worker, smtp_sink, browser, make_event, make_user):
    event = make_event(sections=[{"name": "Balcony", "rows": 2, "seats_per_row": 5}], admit_per_minute=1,
                       max_active=100, name="Spring Gala", venue="Seoul Arts Center")
    eid = event["id"]
    join_by_api(live_stream, eid, [make_user() for _ in range(3)])  # three fans are ahead
    email = f"fan-{uuid.uuid4().hex[:8]}@example.com"
    with session(browser, live_stream.url, "fan") as context:
        tab = Tab(context, live_stream.url)
        page = tab.go("/account")
        page.fill("#reg-name", "Fan")
        page.fill("#reg-email", email)
        page.fill("#reg-password", "fan-s3cret-2026-long")
        page.click("#register button[type=submit]")
        page.wait_for_url(live_stream.url + "/")
        tab.check()
        page = tab.go("/account")
        code = wait_for(lambda: code_sent_to(email, smtp_sink), timeout=20, message="the sign-up code")
        page.fill("#code", code)
        page.click("#verify button[type=submit]")
        page.wait_for_selector("#verify", state="hidden")

        page = tab.go(f"/events/{eid}")
        page.wait_for_function("document.querySelector('td.available').textContent.includes('/ 10')")
        tab.check()
        page.click("text=Join the waiting room")
        page.wait_for_function("document.getElementById('position').textContent === '4'")
        tab.shot("waiting-room")
        tab.check()
        advance(app, eid, force=1)
        page.wait_for_function("document.getElementById('position').textContent === '3'")
        advance(app, eid, force=3)
        page.wait_for_selector("#go:not([hidden])")
        page.click("#go a")
        page.wait_for_selector("#seats button.seat")
        page.click("#seats button:has-text('A1')")
        page.click("#seats button:has-text('A2')")
        tab.shot("seat-map")
        tab.check()
        page.click("#reserve")
        page.wait_for_selector("#hold:not([hidden])")
        assert re.search(r"\d", page.text_content("#hold-timer"))
        page.select_option("#card", "tok_declined")
        page.click("#pay-button")
        page.wait_for_function("document.getElementById('message').textContent.includes('declined')")
        tab.shot("checkout")
        page.select_option("#card", "tok_ok_visa")
        page.click("#pay-button")
        page.wait_for_selector("#done:not([hidden])")
        number = page.text_content("#order-number")
        assert re.fullmatch(r"[0-9A-Z]{3}-[0-9A-Z]{4}-[0-9A-Z]{3}", number), number
        tab.check()
        page = tab.go("/tickets")
        page.wait_for_selector("img.qr")
        qrs = page.query_selector_all("img.qr")
        assert len(qrs) == 2  # one per seat
        for qr in qrs:
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=qr)  # the SVG loaded
        text = page.text_content("#orders")
        assert "Spring Gala" in text and "Seoul Arts Center" in text and number in text
        assert "A1" in text and "A2" in text and "Balcony" in text
        tab.shot("ticket")
        tab.check()


def test_two_fans_race_for_one_seat_and_exactly_one_wins(app, live_stream, worker, browser, make_event, make_user):
    event = make_event(sections=[{"name": "Balcony", "rows": 1, "seats_per_row": 4}], max_active=100)
    eid = event["id"]
    fans = [make_user(), make_user()]
    join_by_api(live_stream, eid, fans)
    advance(app, eid, force=2)
    with session(browser, live_stream.url, "race-a") as a, session(browser, live_stream.url, "race-b") as b:
        tabs = []
        for context, fan in ((a, fans[0]), (b, fans[1])):
            log_in(context, fan)
            tab = Tab(context, live_stream.url)
            page = tab.go(f"/events/{eid}/checkout")
            page.click("#seats button:has-text('A3')")
            tabs.append(tab)
        for tab in tabs:  # both press at once
            tab.page.evaluate("document.getElementById('reserve').click()")
        for tab in tabs:
            tab.page.wait_for_function("document.getElementById('message').textContent.length > 0"
                                       " || !document.getElementById('hold').hidden")
        outcomes = []
        for tab in tabs:
            tab.page.wait_for_function("!document.getElementById('hold').hidden"
                                       " || document.getElementById('message').textContent.includes('faster')"
                                       " || document.getElementById('message').textContent.includes('taken')")
            outcomes.append("won" if tab.page.is_visible("#hold") else tab.page.text_content("#message"))
        assert sorted(o == "won" for o in outcomes) == [False, True], outcomes
        loser = next(o for o in outcomes if o != "won")
        assert "faster" in loser or "taken" in loser
        for tab in tabs:
            tab.check()


def test_a_hold_expires_on_screen(app, live_stream, worker, browser, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], hold_seconds=3, max_active=100)
    eid = event["id"]
    fan = make_user()
    join_by_api(live_stream, eid, [fan])
    advance(app, eid, force=1)
    with session(browser, live_stream.url, "expiry") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}/checkout")
        page.click("#reserve")
        page.wait_for_selector("#hold:not([hidden])")
        page.wait_for_function("document.getElementById('message').textContent.includes('expired')", timeout=10_000)
        assert page.is_disabled("#pay-button")
        tab.check()


def test_a_backgrounded_tab_is_told_when_the_fan_is_admitted(app, live_stream, worker, browser, make_event,
                                                              make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], admit_per_minute=1, max_active=100)
    eid = event["id"]
    fan = make_user()
    join_by_api(live_stream, eid, [make_user()])
    with session(browser, live_stream.url, "background", permissions=["notifications"]) as context:
        log_in(context, fan)
        # the tab goes to the background: the page sees document.hidden; notifications are recorded
        context.add_init_script("""
            Object.defineProperty(document, 'hidden', {get: () => window.__hidden === true});
            window.__shown = [];
            window.Notification = class extends EventTarget {
                static permission = 'granted';
                static requestPermission() { return Promise.resolve('granted'); }
                constructor(title, options) { super(); window.__shown.push(title); }
            };
        """)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}/queue")
        page.wait_for_function("document.getElementById('position').textContent === '2'")
        page.evaluate("window.__hidden = true")
        advance(app, eid, force=2)
        page.wait_for_function("window.__shown.length === 1")
        assert page.evaluate("window.__shown") == ["Your turn!"]
        assert page.title().startswith("✅")
        tab.check()


def test_the_console_pauses_the_sale_and_the_waiting_page_says_so(app, live_stream, worker, browser, make_event,
                                                                   make_user, admin):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], admit_per_minute=1, max_active=100,
                       name="Spring Gala", venue="Seoul Arts Center")
    eid = event["id"]
    fan = make_user()
    join_by_api(live_stream, eid, [make_user()])
    with session(browser, live_stream.url, "console") as ops, session(browser, live_stream.url, "waiting") as fans:
        log_in(ops, admin)
        log_in(fans, fan)
        fan_tab = Tab(fans, live_stream.url)
        waiting = fan_tab.go(f"/events/{eid}/queue")
        waiting.wait_for_function("document.getElementById('position').textContent === '2'")
        ops_tab = Tab(ops, live_stream.url)
        console = ops_tab.go(f"/console/events/{eid}")
        console.wait_for_function("document.querySelector('figure[data-key=waiting] output').textContent === '2'")
        console.click("#pause")
        console.wait_for_function("document.getElementById('console-state').textContent.startsWith('Paused')")
        waiting.wait_for_function("document.getElementById('state').textContent.includes('paused')")
        ops_tab.shot("console")
        ops_tab.check()
        fan_tab.check()


def test_a_korean_browser_gets_korean_pages(app, live_stream, browser, make_event):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    with session(browser, live_stream.url, "korean", locale="ko-KR") as context:
        tab = Tab(context, live_stream.url)
        page = tab.go("/")
        assert page.text_content("h1") == "공연"
        assert page.get_attribute("html", "lang") == "ko"
        tab.check()
        page = tab.go(f"/events/{event['id']}")
        assert "대기열 입장" in page.text_content("main")
        page = tab.go("/account")
        assert page.text_content("#login h2") == "로그인"
        tab.check()
        english = tab.go("/?lang=en")
        assert english.text_content("h1") == "Events"


def test_swagger_ui_works_with_no_network(live_stream, browser):
    with session(browser, live_stream.url, "swagger") as context:
        tab = Tab(context, live_stream.url)
        page = tab.go("/api/docs")
        page.wait_for_selector(".swagger-ui .info .title")
        assert "Ticket reservation platform" in page.text_content(".swagger-ui .info .title")
        assert not tab.outside, tab.outside
        assert not tab.errors, tab.errors  # its one inline script runs under the page's nonce
