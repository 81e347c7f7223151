"""The web app in a real browser: Playwright driving Debian's chromium against the live stack (the
gevent server that `make run` runs, serving pages, API and SSE; a real worker; MariaDB; Redis).

Every page is checked for requests leaving the host, console errors and axe-core's serious or
critical accessibility violations (axe vendored from its npm package: tests/browser_vendor). On a
failure the screenshot and the Playwright trace are kept in var/browser/. The screenshots in
docs/screenshots/ are written by these tests, so the README shows what the code does.
"""

from __future__ import annotations

import re
import uuid

from tests.browser import Tab, join_by_api, log_in, session
from tests.helpers import advance, code_sent_to
from tests.support import wait_for


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
        # after admission: what to do now and how long the turn lasts, no more "you can close this page"
        assert re.search(r"\d", page.text_content("#admission-timer")) and page.is_hidden("#leave")
        assert page.is_hidden("#figures")
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


def test_swagger_ui_works_with_no_network_and_sends_the_authorized_token(live_stream, browser, make_user):
    fan = make_user()
    with session(browser, live_stream.url, "swagger") as context:
        tab = Tab(context, live_stream.url)
        page = tab.go("/api/docs")
        page.wait_for_selector(".swagger-ui .info .title")
        assert "Ticket reservation platform" in page.text_content(".swagger-ui .info .title")
        # Authorize with a bearer token, then try GET /api/auth/me: it answers for that user
        page.click(".swagger-ui .btn.authorize")
        page.fill(".swagger-ui .modal-ux input[type=text]", fan["token"])
        page.click(".swagger-ui .modal-ux .auth-btn-wrapper .btn.authorize")
        page.click(".swagger-ui .modal-ux .btn-done")
        operation = page.locator(".opblock-get", has=page.locator('[data-path="/api/auth/me"]')).first
        operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
        operation.locator(".execute").click()
        answer = operation.locator(".live-responses-table tr.response").first
        answer.wait_for()
        assert answer.locator(".response-col_status").text_content().strip() == "200"
        assert fan["email"] in answer.locator(".response-col_description").text_content()
        assert not tab.outside, tab.outside
        assert not tab.errors, tab.errors  # its one inline script runs under the page's nonce


def test_the_language_choice_survives_navigation_and_login(app, live_stream, browser, make_event, make_user):
    from app.auth.models import User
    from app.extensions import db

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    fan = make_user(locale="en")
    with session(browser, live_stream.url, "lang-anonymous") as context:  # no account: the cookie keeps it
        tab = Tab(context, live_stream.url)
        page = tab.go("/")
        page.click("form.lang button[value=ko]")
        page.wait_for_function("document.documentElement?.lang === 'ko'")  # null while the page is replaced
        page = tab.go(f"/events/{event['id']}")
        assert page.evaluate("document.documentElement.lang") == "ko"
        tab.check()
    with session(browser, live_stream.url, "lang-account") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go("/tickets")
        assert page.evaluate("document.documentElement.lang") == "en"
        page.click("form.lang button[value=ko]")
        page.wait_for_function("document.documentElement?.lang === 'ko'")  # null while the page is replaced
        page = tab.go("/account")
        assert page.evaluate("document.documentElement.lang") == "ko"
        tab.check()
    with app.app_context():
        assert db.session.get(User, fan["id"]).locale == "ko"  # on the account: e-mails follow it too
        db.session.rollback()
    with session(browser, live_stream.url, "lang-next-login") as context:  # another browser, logged in
        log_in(context, fan)
        page = Tab(context, live_stream.url).go("/")
        assert page.evaluate("document.documentElement.lang") == "ko"


def test_the_seat_map_draws_rows_as_rows_under_the_stage_and_works_on_a_phone(app, live_stream, worker, browser,
                                                                             make_event, make_user):
    event = make_event(sections=[{"name": "Hall", "rows": 2, "seats_per_row": 20}], max_active=100)
    fan = make_user()
    join_by_api(live_stream, event["id"], [fan])
    advance(app, event["id"], force=1)
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
             "device_scale_factor": 3}
    with session(browser, live_stream.url, "seat-map-phone", **phone) as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{event['id']}/checkout")
        page.wait_for_selector("#seats .seat-row")
        rows = page.eval_on_selector_all("#seats .seat-row",
                                         "rows => rows.map(r => r.querySelectorAll('.seat').length)")
        assert rows == [20, 20]  # A1-A20 on one line, B1-B20 on the next
        tops = page.evaluate("""() => ['A1', 'A20', 'B1'].map(label => [...document.querySelectorAll('#seats .seat')]
            .find(b => b.textContent === label).getBoundingClientRect().top)""")
        assert tops[0] == tops[1] < tops[2]
        assert page.is_visible(".stage")
        # the page itself never scrolls sideways; the seat map does, inside its box
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.click("#seats button:has-text('A20')")
        page.click("#reserve")
        page.wait_for_selector("#hold:not([hidden])")
        assert "A20" in page.text_content("#summary")
        tab.shot("seat-map-phone")
        tab.check()


def test_an_admin_creates_a_seated_sale_opens_it_and_runs_it_from_the_console(app, client, live_stream, worker,
                                                                             browser, make_user):
    """Create a sale with a seated section, open it, edit it, see its waitlist panel, find a fan's
    order, refund it and download the attendees, all in the console."""
    from app.catalogue.models import Event, Section
    from app.db import utcnow
    from app.extensions import db
    from tests.integration.test_orders_checkin import buy_seats

    admin = make_user(admin=True)
    name = f"Console Gala {uuid.uuid4().hex[:6]}"
    with session(browser, live_stream.url, "console-new") as context:
        log_in(context, admin)
        tab = Tab(context, live_stream.url)
        page = tab.go("/console")
        page.click("text=New event")
        page.wait_for_url(f"{live_stream.url}/console/events/new")
        page.fill("#ev-name", name)
        page.fill("#ev-venue", "Lotte Concert Hall")
        page.fill("#ev-starts", "2031-05-01T19:30")
        page.fill("#ev-opens", "2030-04-01T10:00")
        page.fill("#ev-refund-fee", "10")
        page.click("#add-seated")
        spec = page.locator(".section-spec").last
        spec.locator(".s-name").fill("Stalls")
        spec.locator(".s-price").fill("88000")
        spec.locator(".s-rows").fill("3")
        spec.locator(".s-per-row").fill("12")
        page.click("#add-ga")
        spec = page.locator(".section-spec").last
        spec.locator(".s-name").fill("Standing")
        spec.locator(".s-price").fill("55000")
        spec.locator(".s-capacity").fill("200")
        tab.shot("console-new-event")
        tab.check()
        page.click("#create")
        page.wait_for_url(re.compile(r".*/console/events/\d+$"))
        event_id = int(page.url.rsplit("/", 1)[1])
        page.wait_for_selector("#sections tr")
        assert "Stalls" in page.text_content("#sections") and "Standing" in page.text_content("#sections")
        tab.check()
        with app.app_context():
            event = db.session.get(Event, event_id)
            sections = {s.name: s for s in db.session.query(Section).filter_by(event_id=event_id)}
            assert event.name == name and event.venue == "Lotte Concert Hall" and event.refund_fee_percent == 10
            assert (sections["Stalls"].kind, sections["Stalls"].capacity, sections["Stalls"].price_cents,
                    sections["Stalls"].currency) == ("seated", 36, 88_000, "KRW")
            assert (sections["Standing"].kind, sections["Standing"].capacity) == ("general", 200)
            assert event.sale_opens_at > utcnow()  # 2030: not open yet
            stalls = sections["Stalls"].id
            db.session.rollback()

        page.click("#open-now")
        page.wait_for_function("document.getElementById('control-message').textContent === 'Saved.'")
        page.fill("#edit-venue", "Lotte Concert Hall, Seoul")
        page.click("#edit-event button[type=submit]")
        page.wait_for_function("document.getElementById('control-message').textContent === 'Saved.'")
        assert page.is_visible("#no-waitlist")  # the waitlist panel, empty so far
        # an adaptive proof of work, from the settings form; its figure is on the panel
        page.wait_for_function("document.getElementById('pow-max').value === '17'")
        page.fill("#pow-threshold", "500")
        page.click("#settings button[type=submit]")
        wait_for(lambda: client.get(f"/api/events/{event_id}").json["pow_adaptive_threshold"] == 500, timeout=10)
        assert page.text_content('[data-key="pow_difficulty"] output') == "0"
        # the sale is open: a fan buys two seats
        fan = make_user(email=f"console-{uuid.uuid4().hex[:6]}@example.com")
        paid = buy_seats(client, app, event_id, stalls, fan, ["A1", "A2"])
        page.fill("#order-q", paid["order_number"])
        page.click("#order-search button[type=submit]")
        page.wait_for_selector(f"#orders td:has-text('{fan['email']}')")
        with page.expect_download() as download:
            page.click("#attendees-csv")
        exported = open(download.value.path(), encoding="utf-8").read()
        assert fan["email"] in exported and paid["order_number"] in exported and ",A2," in exported
        page.click("#orders button")
        page.wait_for_selector("#orders td:has-text('Refunded')")
        tab.check()
    with app.app_context():
        event = db.session.get(Event, event_id)
        assert event.sale_opens_at <= utcnow() and event.venue == "Lotte Concert Hall, Seoul"
        db.session.rollback()
    assert client.get("/api/orders", headers=fan["headers"]).json["items"][0]["refund_state"] == "succeeded"


def test_anonymous_pages_ask_nothing_that_fails(live_stream, browser, make_event):
    """No 401 for the session check, no 404 for a favicon: an anonymous visit logs no failed request."""
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    with session(browser, live_stream.url, "anonymous") as context:
        tab = Tab(context, live_stream.url)
        failed: list[str] = []
        tab.page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        for path in ("/", f"/events/{event['id']}", "/account", "/api/docs"):
            page = tab.go(path)
            page.wait_for_load_state("networkidle")
        assert tab.page.request.get(f"{live_stream.url}/favicon.ico").status == 204
        assert not failed, failed


def test_where_streams_are_not_served_the_page_follows_the_cached_serving_figures(app, live_api, browser, make_event,
                                                                                 make_user):
    """Behind the REST server (no SSE), the page polls the public serving figures and works out
    its position from its line number; it asks for its exact status when the line reaches it."""
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], admit_per_minute=1, max_active=100)
    eid = event["id"]
    fan = make_user()
    join_by_api(live_api, eid, [make_user(), make_user()])
    with session(browser, live_api.url, "polling") as context:
        log_in(context, fan)
        tab = Tab(context, live_api.url)
        asked: list[str] = []
        tab.page.on("request", lambda r: asked.append(r.url.split("?")[0].rsplit("/", 1)[-1]))
        page = tab.go(f"/events/{eid}/queue")
        page.wait_for_function("document.getElementById('position').textContent === '3'")
        advance(app, eid, force=1)
        page.wait_for_function("document.getElementById('position').textContent === '2'")
        statuses_before = asked.count("status")
        assert asked.count("serving") >= 1
        advance(app, eid, force=2)
        page.wait_for_selector("#go:not([hidden])")
        assert asked.count("status") == statuses_before + 1  # once, when the line reached the fan
        tab.check()


def test_a_fan_checks_the_draw_in_the_browser_and_finds_their_own_place(app, client, admin, live_stream, browser,
                                                                        make_user):
    """The event page shows the commitment before the opening; after the draw the draw page checks
    the published order in the browser and shows the fan their entrant id and place."""
    from datetime import timedelta

    from app.db import utcnow

    opens = utcnow() + timedelta(minutes=30)
    created = client.post("/api/events", headers=admin["headers"], json={
        "name": "Lottery Night", "venue": "Arena", "starts_at": (opens + timedelta(days=3)).isoformat(),
        "sale_opens_at": opens.isoformat(), "admit_per_minute": 1, "max_active": 1, "prequeue_minutes": 60})
    eid = created.json["id"]
    commitment = client.get(f"/api/queue/{eid}/draw").json["commitment"]
    fans = [make_user() for _ in range(12)]
    join_by_api(live_stream, eid, fans)
    with session(browser, live_stream.url, "draw") as context:
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}")
        assert commitment[:16] in page.inner_text("main")
        page = tab.go(f"/events/{eid}/draw")
        assert page.inner_text("#commitment") == commitment and page.locator("#mine").is_hidden()
        tab.check()
    client.patch(f"/api/queue/{eid}", headers=admin["headers"], json={"sale_opens_at": utcnow().isoformat()})
    assert advance(app, eid).shuffled == 12
    fan = fans[5]
    mine = client.get(f"/api/queue/{eid}/draw/me", headers=fan["headers"]).json
    with session(browser, live_stream.url, "draw-fan") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}/draw")
        page.wait_for_selector("#verdict.ok")
        assert page.inner_text("#verdict").startswith("Verified")
        assert page.inner_text("#entrant") == mine["entrant_id"]
        assert page.inner_text("#place") == f"{mine['place']} / 12"
        tab.check()
        tab.shot("draw")


def test_the_waiting_page_solves_the_sales_proof_of_work_and_joins(app, client, admin, live_stream, browser,
                                                                   make_event, make_user):
    """A sale that asks a proof of work: the page is refused (428), solves it with Web Crypto and
    joins with the nonce."""
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], admit_per_minute=1, max_active=100)
    eid = event["id"]
    assert client.patch(f"/api/queue/{eid}", headers=admin["headers"], json={"pow_difficulty": 14}).status_code == 200
    fan = make_user()
    with session(browser, live_stream.url, "proof-of-work") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        joins: list[tuple[int, bool]] = []
        tab.page.on("response", lambda r: joins.append((r.status, "x-proof-of-work" in r.request.headers))
                    if r.url.endswith("/join") else None)
        page = tab.go(f"/events/{eid}/queue")
        page.wait_for_function("document.getElementById('position').textContent === '1'")
        assert joins == [(428, False), (202, True)]
        tab.check()
