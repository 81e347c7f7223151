"""Orders, tickets and the door (issue #26), through the API with a real worker, MariaDB and Redis:
a paid reservation becomes one order with a readable number, its lines and one ticket per seat or
unit; the receipt e-mail arrives once (also when its task was lost); the door admits a ticket
exactly once however many scanners race, and refuses refunded, foreign and forged ones."""

from __future__ import annotations

import email
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from email import policy

import requests
import segno
from sqlalchemy import func, select

from app.booking.orders.models import Order, Ticket
from app.checkin.models import Scan
from app.extensions import db
from app.notifications.models import Notification
from tests.helpers import admitted_pass, wait_reservation
from tests.integration.test_after_sale import buy, events_of
from tests.support import wait_for

NUMBER = re.compile(r"^[0-9A-HJKMNP-TV-Z]{3}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3}$")


def buy_seats(client, app, event_id: int, section_id: int, user: dict, labels: list[str]) -> dict:
    seats = client.get(f"/api/events/{event_id}/sections/{section_id}/seats").json["seats"]
    ids = [s["id"] for s in seats if s["label"] in labels]
    token = admitted_pass(client, app, event_id, user)
    r = client.post("/api/tickets/reserve", json={"event_id": event_id, "section_id": section_id, "seat_ids": ids},
                    headers={**user["headers"], "Idempotency-Key": uuid.uuid4().hex, "X-Admission-Token": token})
    assert r.status_code == 202, r.json
    assert wait_reservation(client, user, r.json["reservation_id"])["status"] == "held"
    paid = client.post(f"/api/tickets/{r.json['reservation_id']}/confirm", json={"payment_token": "tok_ok_visa"},
                       headers=user["headers"])
    assert paid.status_code == 200, paid.json
    return paid.json


def only_order(client, user: dict) -> dict:
    r = client.get("/api/orders", headers=user["headers"])
    assert r.status_code == 200 and r.json["total"] == 1, r.json
    return r.json["items"][0]


def test_two_seats_paid_make_one_order_with_a_readable_number_and_two_tickets(app, client, worker, make_event,
                                                                              make_user):
    event = make_event(sections=[{"name": "Balcony", "rows": 1, "seats_per_row": 6, "price_cents": 45_000,
                                  "currency": "KRW"}], name="Spring Gala", venue="Seoul Arts Center")
    fan, other, admin = make_user(), make_user(), make_user(admin=True)
    paid = buy_seats(client, app, event["id"], event["sections"][0]["id"], fan, ["A2", "A3"])
    assert NUMBER.match(paid["order_number"]), paid

    order = only_order(client, fan)
    assert order["number"] == paid["order_number"] and order["reservation_id"] == paid["reservation_id"]
    assert order["event"]["name"] == "Spring Gala" and order["event"]["venue"] == "Seoul Arts Center"
    assert order["lines"] == [{"section_id": event["sections"][0]["id"], "section": "Balcony", "kind": "seated",
                               "seats": ["A2", "A3"], "quantity": 2, "unit_price_cents": 45_000, "fee_cents": 0,
                               "amount_cents": 90_000}]
    assert (order["currency"], order["subtotal_cents"], order["fee_cents"], order["total_cents"]) == ("KRW", 90_000,
                                                                                                      0, 90_000)
    assert order["payment_state"] == "paid" and order["refund_state"] == "none" and order["refund"] is None
    tickets = order["tickets"]
    assert [(t["seat"], t["section"], t["price_cents"], t["status"]) for t in tickets] == [
        ("A2", "Balcony", 45_000, "valid"), ("A3", "Balcony", 45_000, "valid")]
    assert len({t["code"] for t in tickets}) == 2 and all(t["code"].startswith(f"T2.{event['id']}.") for t in tickets)

    # read over the phone: case and dashes do not matter; another fan cannot see it, support can
    spoken = order["number"].replace("-", "").lower()
    assert client.get(f"/api/orders/{spoken}", headers=fan["headers"]).json["number"] == order["number"]
    assert client.get(f"/api/orders/{order['number']}", headers=other["headers"]).status_code == 404
    assert client.get(f"/api/orders/{order['number']}", headers=admin["headers"]).status_code == 200
    assert client.get("/api/orders/NOT-AN-ORDER", headers=fan["headers"]).json["reason"] == "order_not_found"

    placed = [e for e in events_of(app, "OrderPlaced") if e["order_id"] == order["order_id"]]
    assert len(placed) == 1 and placed[0]["number"] == order["number"] and placed[0]["tickets"] == 2
    # paying again answers the same order: no second one, no second ticket
    again = client.post(f"/api/tickets/{paid['reservation_id']}/confirm", json={"payment_token": "tok_ok_visa"},
                        headers=fan["headers"])
    assert again.status_code == 200 and again.json["order_number"] == order["number"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ticket).join(Order, Ticket.order_id == Order.id)
                                 .where(Order.reservation_id == paid["reservation_id"])) == 2
        db.session.rollback()


def test_each_ticket_has_its_own_qr_and_printable_page_for_its_holder_only(app, client, worker, make_event,
                                                                          make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10, "price_cents": 5000, "currency": "EUR"}],
                       name="Summer Night", venue="Olympic Hall")
    fan, other = make_user(), make_user()
    buy(client, app, event["id"], event["sections"][0]["id"], fan, quantity=2)
    tickets = only_order(client, fan)["tickets"]
    assert [t["label"] for t in tickets] == ["GA 1", "GA 2"] and all(t["seat"] is None for t in tickets)
    for t in tickets:
        assert client.get(t["qr_url"]).status_code == 401
        assert client.get(t["qr_url"], headers=other["headers"]).status_code == 404
        svg = client.get(t["qr_url"], headers=fan["headers"])
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
        # the QR holds exactly the ticket's signed code
        assert b"<svg" in svg.data and _qr_modules(svg.data) == _qr_modules(_svg_of(t["code"]))
        page = client.get(t["print_url"], headers=fan["headers"])
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        for text in ("Summer Night", "Olympic Hall", "Floor", "General admission", "€50.00", t["label"]):
            assert text in html, text
        assert client.get(t["print_url"], headers=other["headers"]).status_code == 404
    assert "@media print" in client.get("/assets/app.css").get_data(as_text=True)


def _svg_of(code: str) -> bytes:
    import io

    out = io.BytesIO()
    segno.make(code, error="m").save(out, kind="svg", scale=4, border=2)
    return out.getvalue()


def _qr_modules(svg: bytes) -> str:
    """The path of dark modules in segno's SVG (what a scanner reads)."""
    return re.search(rb'<path[^>]* d="([^"]+)"', svg).group(1).decode()


def _receipts_to(smtp_sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_string(m["data"], policy=policy.default) for m in smtp_sink.messages
            if address in m["to"] and "order" in m["data"].lower() and "event.ics" in m["data"]]


def test_the_receipt_arrives_once_as_html_and_text_with_the_order_and_a_calendar_file(app, client, worker,
                                                                                      smtp_sink, make_event,
                                                                                      make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10, "price_cents": 45_000, "currency": "KRW"}],
                       name="Autumn Live")
    fan = make_user(locale="ko")
    buy(client, app, event["id"], event["sections"][0]["id"], fan, quantity=2)
    order = only_order(client, fan)
    receipts = wait_for(lambda: _receipts_to(smtp_sink, fan["email"]), timeout=30, message="the receipt")
    receipt = receipts[0]
    assert order["number"] in receipt["Subject"]
    text = receipt.get_body(("plain",)).get_content()
    html = receipt.get_body(("html",)).get_content()
    for body in (text, html):
        assert order["number"] in body and "Autumn Live" in body and "₩90,000" in body and "/tickets" in body
    assert "주문" in text  # the fan's language
    ics = next(part for part in receipt.iter_attachments() if part.get_filename() == "event.ics")
    calendar = ics.get_content()
    calendar = calendar.decode() if isinstance(calendar, bytes) else calendar
    assert "BEGIN:VEVENT" in calendar and "SUMMARY:Autumn Live" in calendar and order["number"] in calendar
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(Notification.subject_id == order["order_id"])).all()
        assert [(n.kind, n.status) for n in rows] == [("receipt", "sent")]
        db.session.rollback()
    assert len(_receipts_to(smtp_sink, fan["email"])) == 1


def test_a_receipt_whose_task_was_lost_is_sent_by_the_sweeper_once(app, client, worker, smtp_sink, make_event,
                                                                  make_user):
    """The order's transaction committed the receipt's row, and the task that should have sent it
    never ran (a broker blip): the row is put back as it was then, pending and two minutes old,
    with no task queued. The notification sweeper sends it, once."""
    from datetime import timedelta

    from sqlalchemy import delete

    from app.catalogue.models import Event
    from app.db import transaction, utcnow
    from app.notifications.flows import requeue_stale_sends
    from app.notifications.services import record_receipt

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    fan = make_user()
    buy(client, app, event["id"], event["sections"][0]["id"], fan)
    order = only_order(client, fan)
    wait_for(lambda: _receipts_to(smtp_sink, fan["email"]), timeout=30, message="the receipt")
    with app.app_context():
        with transaction() as session:
            session.execute(delete(Notification).where(Notification.subject_id == order["order_id"]))
            starts_at = session.get(Event, event["id"]).starts_at
            nid = record_receipt(session, fan["id"], event["id"], order["order_id"], starts_at)
            session.get(Notification, nid).created_at = utcnow() - timedelta(minutes=2)
        assert requeue_stale_sends(older_than_seconds=60) >= 1
    wait_for(lambda: len(_receipts_to(smtp_sink, fan["email"])) == 2, timeout=30, message="the recovered receipt")
    with app.app_context():
        assert db.session.get(Notification, nid).status == "sent"
        db.session.rollback()
    assert len(_receipts_to(smtp_sink, fan["email"])) == 2


# --- the door ------------------------------------------------------------------------------------

def grant_staff(client, admin: dict, event_id: int, staff: dict) -> None:
    r = client.post(f"/api/events/{event_id}/staff", json={"email": staff["email"]}, headers=admin["headers"])
    assert r.status_code == 201 and r.json["user_id"] == staff["id"], r.json


def scan(client, staff: dict, event_id: int, code: str, gate: str = "north") -> dict:
    r = client.post(f"/api/events/{event_id}/checkin", json={"code": code, "gate": gate}, headers=staff["headers"])
    assert r.status_code == 200, r.json
    return r.json


def test_twenty_scanners_racing_on_one_ticket_admit_it_exactly_once(app, client, live_api, worker, make_event,
                                                                    make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    fan, admin = make_user(), make_user(admin=True)
    scanners = [make_user() for _ in range(20)]
    for staff in scanners:
        grant_staff(client, admin, event["id"], staff)
    buy(client, app, event["id"], event["sections"][0]["id"], fan)
    ticket = only_order(client, fan)["tickets"][0]

    def one(i: int) -> dict:
        r = requests.post(f"{live_api.url}/api/events/{event['id']}/checkin", timeout=30,
                          json={"code": ticket["code"], "gate": f"gate-{i}"}, headers=scanners[i]["headers"])
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    results = sorted(a["result"] for a in answers)
    assert results == ["admitted"] + ["already_used"] * 19, results
    first = next(a for a in answers if a["admitted"])
    for a in answers:  # everyone is told when and where it was admitted
        assert a["gate"] == first["gate"] and a["checked_in_at"] == first["checked_in_at"]
    with app.app_context():
        rows = db.session.scalars(select(Scan).where(Scan.ticket_id == ticket["ticket_id"])).all()
        assert len(rows) == 20 and sorted(r.result for r in rows) == results
        assert {r.staff_user_id for r in rows} == {s["id"] for s in scanners}
        db.session.rollback()
    stats = client.get(f"/api/events/{event['id']}/checkin", headers=scanners[0]["headers"]).json
    assert (stats["checked_in"], stats["sold"]) == (1, 1)
    assert stats["sections"] == [{"section_id": event["sections"][0]["id"], "name": "Floor", "sold": 1,
                                  "checked_in": 1}]
    metrics = requests.get(f"{live_api.url}/metrics", timeout=10).text
    admitted = re.search(r'^tickets_checkins_total\{result="admitted"\} (\S+)$', metrics, re.M)
    used = re.search(r'^tickets_checkins_total\{result="already_used"\} (\S+)$', metrics, re.M)
    assert admitted and float(admitted.group(1)) >= 1 and used and float(used.group(1)) >= 19, [
        line for line in metrics.splitlines() if "checkin" in line and "flask" not in line]


def test_the_door_refuses_refunded_foreign_and_forged_tickets_and_strangers(app, client, worker, make_event,
                                                                             make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    elsewhere = make_event(sections=[{"name": "Floor", "capacity": 10}])
    fan, admin, staff, stranger = make_user(), make_user(admin=True), make_user(), make_user()
    grant_staff(client, admin, event["id"], staff)
    rid = buy(client, app, event["id"], event["sections"][0]["id"], fan, quantity=2)
    buy(client, app, elsewhere["id"], elsewhere["sections"][0]["id"], fan)
    orders = client.get("/api/orders", headers=fan["headers"]).json["items"]
    ours = next(o for o in orders if o["event"]["id"] == event["id"])["tickets"]
    theirs = next(o for o in orders if o["event"]["id"] == elsewhere["id"])["tickets"][0]

    assert scan(client, staff, event["id"], theirs["code"])["result"] == "wrong_event"
    forged = ours[0]["code"][:-4] + ("AAAA" if not ours[0]["code"].endswith("AAAA") else "BBBB")
    assert scan(client, staff, event["id"], forged) == {"result": "invalid", "admitted": False, "ticket": None}
    assert scan(client, staff, event["id"], "hello")["result"] == "invalid"
    # another account cannot scan: only the event's staff (granted by an admin) and admins
    refused = client.post(f"/api/events/{event['id']}/checkin", json={"code": ours[0]["code"]},
                          headers=stranger["headers"])
    assert refused.status_code == 403 and refused.json["reason"] == "not_staff"
    other_door = client.post(f"/api/events/{elsewhere['id']}/checkin", json={"code": theirs["code"]},
                             headers=staff["headers"])
    assert other_door.status_code == 403
    assert client.post(f"/api/events/{event['id']}/checkin", json={}, headers=staff["headers"]).status_code == 422
    assert client.post("/api/events/999999/checkin", json={"code": "x"}, headers=admin["headers"]).status_code == 404
    assert client.post(f"/api/events/{event['id']}/staff", json={"email": "nobody@example.com"},
                       headers=admin["headers"]).json["reason"] == "user_not_found"
    assert client.post(f"/api/events/{event['id']}/staff", json={"email": stranger["email"]},
                       headers=staff["headers"]).status_code == 403

    # the fan refunds the order: its tickets no longer open the door, and the order says so
    refund = client.post(f"/api/tickets/{rid}/refund", headers=fan["headers"])
    assert refund.status_code in (200, 201), refund.json
    assert scan(client, staff, event["id"], ours[0]["code"])["result"] == "refunded"
    order = next(o for o in client.get("/api/orders", headers=fan["headers"]).json["items"]
                 if o["event"]["id"] == event["id"])
    assert order["refund_state"] == "succeeded" and order["refund"]["by"] == "you"
    assert {t["status"] for t in order["tickets"]} == {"refunded"}
    stats = client.get(f"/api/events/{event['id']}/checkin", headers=staff["headers"]).json
    assert (stats["checked_in"], stats["sold"]) == (0, 0)

    # taking the role back closes the door to that account
    assert client.delete(f"/api/events/{event['id']}/staff/{staff['id']}", headers=admin["headers"]).status_code == 204
    assert client.post(f"/api/events/{event['id']}/checkin", json={"code": ours[1]["code"]},
                       headers=staff["headers"]).status_code == 403
    with app.app_context():
        results = db.session.scalars(select(Scan.result).where(Scan.event_id == event["id"])
                                     .order_by(Scan.id)).all()
        assert results == ["wrong_event", "invalid", "invalid", "refunded"]
        db.session.rollback()


# --- organisers ----------------------------------------------------------------------------------

def test_an_admin_finds_an_order_by_number_or_email_refunds_it_and_exports_the_attendees(app, client, worker,
                                                                                        make_event, make_user):
    import csv
    import io

    event = make_event(sections=[{"name": "Balcony", "rows": 1, "seats_per_row": 6}])
    admin = make_user(admin=True)
    ann, bob = make_user(email=f"ann-{uuid.uuid4().hex[:6]}@example.com"), make_user()
    buy_seats(client, app, event["id"], event["sections"][0]["id"], ann, ["A1", "A2"])
    buy_seats(client, app, event["id"], event["sections"][0]["id"], bob, ["A5"])
    listed = client.get(f"/api/events/{event['id']}/orders", headers=admin["headers"])
    assert listed.status_code == 200 and listed.json["total"] == 2
    anns = next(o for o in listed.json["items"] if o["buyer"]["email"] == ann["email"])
    by_number = client.get(f"/api/events/{event['id']}/orders?q={anns['number'].replace('-', '').lower()}",
                           headers=admin["headers"]).json
    by_email = client.get(f"/api/events/{event['id']}/orders?q={ann['email'][:7]}", headers=admin["headers"]).json
    assert [o["number"] for o in by_number["items"]] == [anns["number"]] == [o["number"] for o in by_email["items"]]
    assert client.get(f"/api/events/{event['id']}/orders?q=%25", headers=admin["headers"]).json["total"] == 0
    assert client.get(f"/api/events/{event['id']}/orders", headers=ann["headers"]).status_code == 403
    assert client.get(f"/api/events/{event['id']}/attendees.csv", headers=ann["headers"]).status_code == 403

    # one ticket of Ann's is scanned; the export says so, one row per ticket
    code = anns["tickets"][0]["code"]
    assert client.post(f"/api/events/{event['id']}/checkin", json={"code": code, "gate": "east"},
                       headers=admin["headers"]).json["result"] == "admitted"
    export = client.get(f"/api/events/{event['id']}/attendees.csv", headers=admin["headers"])
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert sorted((r["email"], r["order"], r["section"], r["seat"]) for r in rows) == sorted([
        (ann["email"], anns["number"], "Balcony", "A1"), (ann["email"], anns["number"], "Balcony", "A2"),
        (bob["email"], next(o["number"] for o in listed.json["items"] if o["number"] != anns["number"]),
         "Balcony", "A5")])
    scanned = next(r for r in rows if r["seat"] == "A1")
    assert scanned["checked_in_at"] and scanned["gate"] == "east" and scanned["name"] == "Test User"

    # a name that is a formula stays text in the organiser's spreadsheet (CSV injection)
    with app.app_context():
        from app.auth.models import User

        db.session.get(User, bob["id"]).name = '=HYPERLINK("http://evil.example","x")'
        db.session.commit()
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/events/{event['id']}/attendees.csv",
                                                      headers=admin["headers"]).get_data(as_text=True))))
    assert next(r for r in rows if r["email"] == bob["email"])["name"] == '\'=HYPERLINK("http://evil.example","x")'

    # the organiser refunds Ann's order in full; her order shows it, by the organiser
    refund = client.post(f"/api/tickets/{anns['reservation_id']}/refund", headers=admin["headers"])
    assert refund.status_code in (200, 201), refund.json
    mine = only_order(client, ann)
    assert mine["refund_state"] == "succeeded" and mine["refund"]["by"] == "organiser"
    assert mine["refund"]["amount_cents"] == mine["total_cents"] and mine["refund"]["fee_cents"] == 0
