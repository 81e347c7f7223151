"""A paid order end to end in a real browser (issue #26): the checkout page with Stripe.js (served
by localstripe, a real process), the REST server as deployed with PAYMENT_PROVIDER=stripe, a real
worker, MariaDB and Redis; and the staff's scanner page at the door."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from app.booking.orders.models import Order
from app.extensions import db
from tests.browser import Tab, join_by_api, log_in, session
from tests.helpers import advance
from tests.integration.test_after_sale import buy
from tests.integration.test_stripe import CARDS
from tests.support import wait_for

NUMBER = re.compile(r"^[0-9A-Z]{3}-[0-9A-Z]{4}-[0-9A-Z]{3}$")
# localstripe's test Stripe.js draws plain unlabeled inputs where Stripe draws its own labelled iframe
NOT_OURS = ("#card-element",)


def at_checkout(app, stack: dict[str, Any], context: Any, make_event, make_user, **event: Any) -> tuple[Tab, Any, int]:
    """A verified fan, admitted, on the checkout page of a fresh general-admission sale."""
    sale = make_event(sections=[{"name": "Floor", "capacity": 10, "price_cents": 45_000, "currency": "KRW"}],
                      max_active=100, **event)
    fan = make_user()
    join_by_api(stack["api"], sale["id"], [fan])
    advance(app, sale["id"], force=1)
    log_in(context, fan)
    tab = Tab(context, stack["api"].url, allowed=(stack["server"].url,))
    page = tab.go(f"/events/{sale['id']}/checkout")
    page.wait_for_selector("#card-element input", state="attached")  # Stripe.js mounted its card form
    return tab, page, fan


def hold_two(page: Any) -> None:
    page.wait_for_selector("#reserve:not([disabled])")
    page.fill("#quantity", "2")
    page.click("#reserve")
    page.wait_for_selector("#hold:not([hidden])")


def enter_card(page: Any, number: str) -> None:
    for field, value in (("number", number), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123"),
                         ("postal_code", "04524")):
        page.fill(f"#card-element input[placeholder={field}]", value)


def orders_of(app, user_id: int) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
        db.session.rollback()
        return count


def test_a_fan_pays_with_stripe_sees_the_order_then_gets_the_receipt_and_one_qr_per_ticket(
        app, worker, smtp_sink, stripe_stack, browser, make_event, make_user):
    with session(browser, stripe_stack["api"].url, "stripe-pay") as context:
        tab, page, fan = at_checkout(app, stripe_stack, context, make_event, make_user, name="Winter Live",
                                     venue="KSPO Dome")
        hold_two(page)
        # the order summary before paying: section, quantity, unit price, fees, total
        summary = page.text_content("#summary")
        assert "Floor" in summary and "2 × ₩45,000" in summary and "₩90,000" in summary and "₩0" in summary
        enter_card(page, CARDS["visa"])
        tab.shot("checkout-summary")
        page.click("#pay-button")
        page.wait_for_selector("#done:not([hidden])")
        number = page.text_content("#order-number")
        assert NUMBER.match(number), number
        assert page.inner_text("main").count("Confirmed") == 1  # one confirmation, with the number
        tab.check(skip=NOT_OURS)

        receipt = wait_for(lambda: next((m["data"] for m in smtp_sink.messages if fan["email"] in m["to"]
                                         and number in m["data"]), None), timeout=30, message="the receipt")
        assert "event.ics" in receipt and "Winter Live" in receipt

        page = tab.go("/tickets")
        page.wait_for_selector("img.qr")
        qrs = page.query_selector_all("img.qr")
        assert len(qrs) == 2
        for qr in qrs:
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=qr)
        text = page.text_content("#orders")
        for expected in ("Winter Live", "KSPO Dome", number, "Floor", "GA 1", "GA 2", "₩45,000", "₩90,000"):
            assert expected in text, expected
        tab.check()
        page.click("a.print >> nth=0")  # the printable ticket
        page.wait_for_selector(".ticket-sheet svg")
        assert "KSPO Dome" in page.text_content(".ticket-sheet") and number in page.text_content(".ticket-sheet")
        tab.check()
    assert orders_of(app, fan["id"]) == 1


def test_the_checkout_page_allows_stripe_js_and_nothing_else(stripe_stack, make_event):
    import requests

    sale = make_event(sections=[{"name": "Floor", "capacity": 10}])
    r = requests.get(f"{stripe_stack['api'].url}/events/{sale['id']}/checkout", timeout=10)
    directives = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";") if d.strip())
    origin = stripe_stack["server"].url
    assert origin in directives["script-src"] and origin in directives["connect-src"]
    assert "'unsafe-inline'" not in directives["script-src"] and directives["default-src"] == "'self'"
    assert f'<script src="{origin}/js.stripe.com/v3/">' in r.text
    other = requests.get(f"{stripe_stack['api'].url}/events/{sale['id']}", timeout=10)
    assert origin not in other.headers["Content-Security-Policy"]  # only checkout loads it


def test_a_3d_secure_card_goes_through_the_challenge(app, worker, stripe_stack, browser, make_event, make_user):
    with session(browser, stripe_stack["api"].url, "stripe-3ds") as context:
        tab, page, fan = at_checkout(app, stripe_stack, context, make_event, make_user)
        hold_two(page)
        enter_card(page, CARDS["3ds"])
        page.click("#pay-button")
        page.click("text=Complete authentication")  # the bank's challenge (localstripe's Stripe.js draws it)
        page.wait_for_selector("#done:not([hidden])")
        assert NUMBER.match(page.text_content("#order-number"))
        tab.check(skip=NOT_OURS)
    assert orders_of(app, fan["id"]) == 1


def test_a_failed_challenge_and_a_declining_card_say_why_and_the_hold_stays_payable(
        app, worker, stripe_stack, browser, make_event, make_user):
    with session(browser, stripe_stack["api"].url, "stripe-decline") as context:
        tab, page, fan = at_checkout(app, stripe_stack, context, make_event, make_user)
        hold_two(page)
        enter_card(page, CARDS["declined"])
        page.click("#pay-button")
        page.wait_for_function("document.getElementById('message').textContent.includes('declined')")
        assert page.is_visible("#hold") and page.is_enabled("#pay-button")
        enter_card(page, CARDS["3ds"])
        page.click("#pay-button")
        page.click("text=Fail authentication")
        page.wait_for_function("document.getElementById('message').textContent.includes('3-D Secure check failed')")
        assert page.is_enabled("#pay-button")
        tab.check(skip=NOT_OURS)
    assert orders_of(app, fan["id"]) == 0


def test_a_browser_lost_between_charge_and_apply_still_gets_one_order_from_the_webhook(
        app, worker, stripe_stack, browser, make_event, make_user):
    """The card passed 3-D Secure and was charged, and the page's call that applies the outcome
    never arrived (the tab crashed, the network dropped): Stripe's payment_intent.succeeded
    webhook confirms the order, exactly once, and the fan finds it under My tickets."""
    with session(browser, stripe_stack["api"].url, "stripe-webhook") as context:
        tab, page, fan = at_checkout(app, stripe_stack, context, make_event, make_user)
        hold_two(page)
        page.route("**/api/payments/*/complete", lambda route: route.abort())  # the lost call
        enter_card(page, CARDS["3ds"])
        page.click("#pay-button")
        page.click("text=Complete authentication")
        wait_for(lambda: orders_of(app, fan["id"]) == 1, timeout=30, message="the webhook's order")
        page = tab.go("/tickets")
        page.wait_for_selector("img.qr")
        assert len(page.query_selector_all("img.qr")) == 2
    assert orders_of(app, fan["id"]) == 1


SCANNER_WORDS = {"en": ("Admitted", "Already used", "Not a valid"), "ko": ("입장 허용", "이미 사용된", "유효하지 않은")}


@pytest.mark.parametrize("locale", ["en", "ko"])
def test_the_staff_scanner_admits_a_ticket_once_by_manual_entry(app, client, live_stream, worker, browser,
                                                                 make_event, make_user, locale):
    admitted, used, invalid = SCANNER_WORDS[locale]
    sale = make_event(sections=[{"name": "Floor", "capacity": 10}], name="Door Night")
    fan, admin, staff = make_user(), make_user(admin=True), make_user(locale=locale)
    assert client.post(f"/api/events/{sale['id']}/staff", json={"email": staff["email"]},
                       headers=admin["headers"]).status_code == 201
    buy(client, app, sale["id"], sale["sections"][0]["id"], fan, quantity=2)
    code = client.get("/api/orders", headers=fan["headers"]).json["items"][0]["tickets"][0]["code"]
    with session(browser, live_stream.url, "scanner") as context:
        log_in(context, staff)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/staff/events/{sale['id']}/scan")
        page.wait_for_function("document.getElementById('sold').textContent === '2'")
        page.fill("#code", code)
        page.click("#manual button[type=submit]")
        page.wait_for_selector("#result.ok")
        assert admitted in page.text_content("#result") and "GA 1" in page.text_content("#detail")
        page.wait_for_function("document.getElementById('checked-in').textContent === '1'")
        page.fill("#code", code)
        page.click("#manual button[type=submit]")
        page.wait_for_selector("#result.bad")
        assert used in page.text_content("#result") and "main" in page.text_content("#detail")
        if locale == "en":
            tab.shot("scanner")
        page.fill("#code", "not-a-ticket")
        page.click("#manual button[type=submit]")
        page.wait_for_function("(word) => document.getElementById('result').textContent.includes(word)",
                               arg=invalid)
        tab.check()
    with session(browser, live_stream.url, "scanner-fan") as context:  # a fan is not staff
        log_in(context, fan)
        r = Tab(context, live_stream.url).page.goto(f"{live_stream.url}/staff/events/{sale['id']}/scan")
        assert r.status == 403


@pytest.mark.parametrize(("locale", "refunded", "back"), [("en", "Refunded", "You get back"),
                                                           ("ko", "환불됨", "환불 금액")])
def test_a_fan_refunds_from_the_order_page_seeing_the_fee_first(app, client, live_stream, worker, browser,
                                                                make_event, make_user, locale, refunded, back):
    sale = make_event(sections=[{"name": "Floor", "capacity": 10, "price_cents": 40_000, "currency": "KRW"}],
                      refund_fee_percent=10)
    fan = make_user(locale=locale)  # logging in sets the page language from the account
    buy(client, app, sale["id"], sale["sections"][0]["id"], fan)
    number = client.get("/api/orders", headers=fan["headers"]).json["items"][0]["number"]
    with session(browser, live_stream.url, "refund") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/orders/{number}")
        offer = page.text_content("#refund")
        assert "₩36,000" in offer and "₩4,000" in offer and back in offer  # what comes back, before asking
        if locale == "en":
            tab.shot("order")
        tab.check()
        page.click("#refund-button")
        page.wait_for_selector("#refund-state")
        assert refunded in page.text_content("#refund-state")
        assert not page.query_selector("#refund") and not page.query_selector(".qr-box")
        tab.check()
    order = client.get("/api/orders", headers=fan["headers"]).json["items"][0]
    assert order["refund_state"] == "succeeded" and order["refund"]["amount_cents"] == 36_000


def test_an_organiser_finds_an_order_in_the_console_and_refunds_it(app, client, live_stream, worker, browser,
                                                                   make_event, make_user):
    sale = make_event(sections=[{"name": "Floor", "capacity": 10}])
    fan, admin = make_user(email=f"finder-{uuid.uuid4().hex[:6]}@example.com"), make_user(admin=True)
    buy(client, app, sale["id"], sale["sections"][0]["id"], fan)
    with session(browser, live_stream.url, "console-orders") as context:
        log_in(context, admin)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/console/events/{sale['id']}")
        page.fill("#order-q", fan["email"][:10])
        page.click("#order-search button[type=submit]")
        page.wait_for_selector(f"#orders td:has-text('{fan['email']}')")
        page.click("#orders button")
        page.wait_for_function("document.getElementById('orders-message').textContent.includes('Refunded')")
        page.wait_for_selector("#orders td:has-text('Refunded')")
        assert page.get_attribute("#attendees-csv", "href") == f"/api/events/{sale['id']}/attendees.csv"
        tab.check()
    order = client.get("/api/orders", headers=fan["headers"]).json["items"][0]
    assert order["refund_state"] == "succeeded" and order["refund"]["by"] == "organiser"


@pytest.mark.parametrize(("locale", "waitlist_word"), [("en", "waitlist"), ("ko", "대기자 명단")])
def test_a_sold_out_fan_joins_the_waitlist_gets_the_offer_and_buys(app, client, live_stream, worker, browser,
                                                                  push_service, make_event, make_user, locale,
                                                                  waitlist_word):
    """Checkout of a sold-out section offers the waitlist; a refund makes an offer; the waitlist
    page (where the offer's notice links) shows it with its countdown, and Buy goes straight to
    checkout with the offer's pass."""
    from tests.integration.test_after_sale import tick

    sale = make_event(sections=[{"name": "Floor", "capacity": 1}], max_active=100)
    first, fan = make_user(), make_user(locale=locale)
    rid = buy(client, app, sale["id"], sale["sections"][0]["id"], first)
    # the fan's browser subscribed to web push (headless chromium has no push service of its own)
    name, subscription = push_service.subscription()
    assert client.post("/api/notifications/register", headers=fan["headers"],
                       json={"channel": "webpush", "subscription": subscription}).status_code == 201
    join_by_api(live_stream, sale["id"], [fan])
    advance(app, sale["id"], force=1)
    with session(browser, live_stream.url, "waitlist") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{sale['id']}/checkout")
        page.wait_for_selector(".sold-out")
        page.wait_for_selector("#reserve:not([disabled])")
        page.click("#reserve")
        page.wait_for_selector("#waitlist-join:not([hidden])")
        assert waitlist_word in page.text_content("#message").lower()
        tab.check()
        page.click("#waitlist-button")
        page.wait_for_url(f"{live_stream.url}/events/{sale['id']}/waitlist")
        page.wait_for_function("document.querySelector('#places .state')?.textContent.includes(': 1')")
        tab.check()
        assert client.post(f"/api/tickets/{rid}/refund", headers=first["headers"]).status_code in (200, 201)
        wait_for(lambda: tick(app) is not None and client.get(
            f"/api/events/{sale['id']}/sections/{sale['sections'][0]['id']}/waitlist",
            headers=fan["headers"]).json.get("status") == "offered", timeout=30, message="the offer")
        offer = wait_for(lambda: [m for m in push_service.messages(name) if m["type"] == "waitlist_offer"],
                         timeout=30, message="the offer by web push")[0]
        assert offer["url"].endswith(f"/events/{sale['id']}/waitlist")  # the push opens the offer screen
        page = tab.go(urlsplit(offer["url"]).path)
        page.wait_for_selector("#places a.buy:not([hidden])")
        assert re.search(r"\d", page.text_content("#places .timer"))
        tab.check()
        page.click("#places a.buy")
        page.wait_for_selector("#reserve:not([disabled])")
        page.click("#reserve")
        page.wait_for_selector("#hold:not([hidden])")
        page.select_option("#card", "tok_ok_visa")
        page.click("#pay-button")
        page.wait_for_selector("#done:not([hidden])")
        assert NUMBER.match(page.text_content("#order-number"))
        tab.check()
    assert orders_of(app, fan["id"]) == 1
