"""Presale lanes and access codes in the browser (issue #31): the organiser adds a lane with a VIP
section and makes a batch of codes in the console; a fan joins with a code from the event page
and waits in the lane; a wrong code is refused with the way into the general line."""

from __future__ import annotations

from tests.browser import Tab, log_in, session


def test_the_console_makes_a_presale_lane_and_codes_and_a_fan_joins_the_lane_with_one(
        app, live_stream, browser, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 100}, {"name": "VIP", "capacity": 10}],
                       admit_per_minute=1, max_active=100)
    eid = event["id"]
    admin = make_user(admin=True)
    with session(browser, live_stream.url, "console-lanes") as context:
        log_in(context, admin)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/console/events/{eid}")
        page.wait_for_selector("#no-lanes:not([hidden])")
        page.fill("#lane-name", "presale")
        page.fill("#lane-share", "30")
        page.locator("#lane-sections label", has_text="VIP").locator("input").check()
        page.fill("#lane-release", "2030-01-01T10:00")
        page.click("#new-lane button[type=submit]")
        page.wait_for_selector("#lanes tbody tr[data-lane=presale]")
        page.select_option("#codes-lane", "presale")
        page.fill("#codes-count", "3")
        page.fill("#codes-limit", "2")
        page.click("#new-codes button[type=submit]")
        page.wait_for_selector("#codes-made:not([hidden])")
        codes = page.input_value("#codes-text").split("\n")
        assert len(codes) == 3 and all(len(code) == 14 for code in codes)
        assert page.locator("#codes-csv").get_attribute("href").startswith("blob:")
        row = page.locator("#lanes tbody tr[data-lane=presale] td")
        assert row.nth(1).inner_text() == "30 %" and row.nth(4).inner_text() == "3 (3)"
        tab.check()
        tab.shot("console-lanes")

    fan = make_user()
    with session(browser, live_stream.url, "presale-fan") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}")
        page.fill("#code", codes[0].lower())
        page.click("#access-code button[type=submit]")
        page.wait_for_function("document.getElementById('position').textContent === '1'")
        assert page.inner_text("#lane") == "Your access code's lane: presale"
        tab.check()

    stranger = make_user()
    with session(browser, live_stream.url, "wrong-code") as context:
        log_in(context, stranger)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}/queue?code=NOPE-NOPE-NOPE")
        page.wait_for_selector("#code-refused:not([hidden])")
        assert page.inner_text("#state") == "This access code is not valid for this sale"
        page.click("#code-refused a")
        page.wait_for_function("document.getElementById('position').textContent === '1'")
        assert page.locator("#lane").is_hidden()  # the general line: a line of its own, first in it
        tab.check()

    with session(browser, live_stream.url, "console-lanes-after") as context:
        log_in(context, admin)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/console/events/{eid}")
        page.wait_for_function("""() => { const cells = document.querySelectorAll(
            '#lanes tbody tr[data-lane=presale] td'); return cells.length && cells[5].textContent === '1'
            && cells[6].textContent === '1'; }""")


def test_a_fan_enters_the_lottery_wins_checks_the_draw_and_joins_the_presale_with_the_code(
        app, client, live_stream, worker, browser, make_event, make_user):
    """The organiser opens a lottery in the console and draws it; the fan enters on the lottery
    page, then sees the code, the draw verified in the browser, and joins the presale lane."""
    event = make_event(sections=[{"name": "Floor", "capacity": 100}], admit_per_minute=1, max_active=100)
    eid = event["id"]
    admin = make_user(admin=True)
    assert client.post(f"/api/events/{eid}/lanes", headers=admin["headers"],
                       json={"name": "fanclub", "share_percent": 50}).status_code == 201
    with session(browser, live_stream.url, "console-lottery") as context:
        log_in(context, admin)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/console/events/{eid}")
        page.wait_for_selector("#new-lottery:not([hidden])")
        page.select_option("#lottery-lane", "fanclub")
        page.fill("#lottery-winners", "1")
        page.fill("#lottery-closes", "2030-01-01T10:00")
        page.select_option("#lottery-losers", "waitlist")
        page.click("#new-lottery button[type=submit]")
        page.wait_for_selector("#lottery-actions:not([hidden])")
        assert page.inner_text("#lottery-state").startswith("Registration open until")
        tab.check()

    fan = make_user()
    with session(browser, live_stream.url, "lottery-fan") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}")
        page.click("text=Presale lottery: register before")
        page.wait_for_selector("#enter:not([hidden])")
        page.click("#enter")
        page.wait_for_selector("#my-entrant:not([hidden])")
        assert page.inner_text("#entry").startswith("You are in the draw")
        assert page.inner_text("#registered") == "1"
        tab.check()

    with session(browser, live_stream.url, "console-lottery-draw") as context:
        log_in(context, admin)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/console/events/{eid}")
        page.wait_for_selector("#lottery-actions:not([hidden])")
        page.click("#lottery-draw")
        page.wait_for_function("document.getElementById('lottery-state').textContent.startsWith('Drawn; entrants: 1')")
        tab.check()

    with session(browser, live_stream.url, "lottery-winner") as context:
        log_in(context, fan)
        tab = Tab(context, live_stream.url)
        page = tab.go(f"/events/{eid}/lottery")
        page.wait_for_selector("#my-code:not([hidden])")
        page.wait_for_selector("#verdict.ok")
        code = page.inner_text("#code")
        assert len(code) == 14 and page.inner_text("#place") == "1"
        tab.check()
        tab.shot("lottery")
        page.click("#join-presale")
        page.wait_for_function("document.getElementById('position').textContent === '1'")
        assert page.inner_text("#lane") == "Your access code's lane: fanclub"
        tab.check()
