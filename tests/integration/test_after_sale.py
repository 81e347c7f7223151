"""After the sell-out: refunds and the waitlist, through the API, a real Celery worker (the hold
writer, the notification and refund tasks), MariaDB and Redis."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests
from sqlalchemy import func, select

from app.booking.models import Refund, Reservation
from app.catalogue.models import Section
from app.extensions import db, redis_store
from app.notifications.models import Device, Notification
from tests.helpers import admitted_pass, events_of, wait_reservation
from tests.support import wait_for


def reserve(client, user, event_id, section_id, quantity=1, *, admission=None, offer=None):
    headers = {**user["headers"], "Idempotency-Key": uuid.uuid4().hex}
    if admission:
        headers["X-Admission-Token"] = admission
    if offer:
        headers["X-Offer-Token"] = offer
    return client.post("/api/tickets/reserve", headers=headers,
                       json={"event_id": event_id, "section_id": section_id, "quantity": quantity})


def buy(client, app, event_id, section_id, user, quantity=1, payment="tok_ok_visa") -> str:
    """Admitted, reserved, held and paid: the reservation id of a confirmed ticket."""
    token = admitted_pass(client, app, event_id, user)
    r = reserve(client, user, event_id, section_id, quantity, admission=token)
    assert r.status_code == 202, r.json
    held = wait_reservation(client, user, r.json["reservation_id"])
    assert held["status"] == "held", held
    paid = client.post(f"/api/tickets/{held['reservation_id']}/confirm", json={"payment_token": payment},
                       headers=user["headers"])
    assert paid.status_code == 200, paid.json
    return held["reservation_id"]


def hold(client, app, event_id, section_id, user, quantity=1) -> str:
    token = admitted_pass(client, app, event_id, user)
    r = reserve(client, user, event_id, section_id, quantity, admission=token)
    assert r.status_code == 202, r.json
    assert wait_reservation(client, user, r.json["reservation_id"])["status"] == "held"
    return r.json["reservation_id"]


def counts(app, section_id):
    with app.app_context():
        row = db.session.get(Section, section_id)
        out = (row.sold, row.held, row.capacity)
        db.session.rollback()
        return out


def tick(app):
    from app.booking.flows import tick as run

    with app.app_context():
        return run()


def waitlisted(client, app, event_id, section_id, user, quantity=1) -> dict:
    """Admitted, refused (sold out), and on the waitlist: the 201 body."""
    token = admitted_pass(client, app, event_id, user)
    refused = reserve(client, user, event_id, section_id, quantity, admission=token)
    assert refused.status_code == 409 and refused.json["reason"] == "sold_out", refused.json
    url = refused.json["links"]["waitlist"]
    assert url == f"/api/events/{event_id}/sections/{section_id}/waitlist"
    joined = client.post(url, json={"quantity": quantity}, headers=user["headers"])
    assert joined.status_code == 201, joined.json
    return joined.json


def add_email(app, user) -> None:
    from app.db import utcnow
    from app.notifications.services import target_hash

    with app.app_context():
        target = user["email"]
        db.session.add(Device(user_id=user["id"], channel="email", target=target, target_hash=target_hash(target),
                              enabled=True, verified_at=utcnow()))
        db.session.commit()


# --- refunds -------------------------------------------------------------------------------------

def test_owner_refunds_within_the_policy_and_the_units_go_back(app, client, worker, make_event, make_user):
    from app.inventory.gate import gate_key

    event = make_event(sections=[{"name": "Floor", "capacity": 5}], refund_fee_percent=10)
    section = event["sections"][0]["id"]
    owner, stranger = make_user(), make_user()
    add_email(app, owner)
    rid = buy(client, app, event["id"], section, owner, quantity=2)
    assert counts(app, section)[0] == 2
    with app.app_context():
        gate_before = int(redis_store.client.get(gate_key(event["id"], section)))

    assert client.post(f"/api/tickets/{rid}/refund", headers=stranger["headers"]).status_code == 404
    r = client.post(f"/api/tickets/{rid}/refund", headers=owner["headers"])
    assert r.status_code == 200, r.json
    assert r.json["status"] == "succeeded" and r.json["amount_cents"] == 9000 and r.json["fee_cents"] == 1000
    again = client.post(f"/api/tickets/{rid}/refund", headers=owner["headers"])
    assert again.status_code == 200 and again.json["refund_id"] == r.json["refund_id"]
    assert client.get(f"/api/tickets/status/{rid}", headers=owner["headers"]).json["status"] == "refunded"
    assert counts(app, section)[0] == 0
    with app.app_context():
        assert int(redis_store.client.get(gate_key(event["id"], section))) == gate_before + 2
    refunded = [e for e in events_of(app, "TicketRefunded") if e["reservation_id"] == rid]
    assert len(refunded) == 1 and refunded[0]["amount_cents"] == 9000 and refunded[0]["quantity"] == 2

    def notified():
        with app.app_context():
            rows = db.session.scalars(select(Notification).where(Notification.user_id == owner["id"],
                                                                 Notification.kind == "refunded")).all()
            db.session.rollback()
            return rows if rows and rows[0].status in {"sent", "logged"} else None

    assert len(wait_for(notified, timeout=20, message="the owner's refund notice")) == 1


def test_refund_after_the_deadline_is_refused_and_a_declined_refund_keeps_the_ticket(app, client, worker,
                                                                                       make_event, make_user):
    from app.db import utcnow

    late = make_event(sections=[{"name": "Floor", "capacity": 5}], refund_deadline=utcnow() - timedelta(minutes=1))
    owner = make_user()
    rid = buy(client, app, late["id"], late["sections"][0]["id"], owner)
    r = client.post(f"/api/tickets/{rid}/refund", headers=owner["headers"])
    assert r.status_code == 409 and r.json["reason"] == "refund_deadline_passed" and "closed at" in r.json["message"]

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    fan = make_user()
    rid2 = buy(client, app, event["id"], event["sections"][0]["id"], fan, payment="tok_ok_norefund")
    declined = client.post(f"/api/tickets/{rid2}/refund", headers=fan["headers"])
    assert declined.status_code == 402 and declined.json["reason"] == "refund_declined_by_issuer"
    assert client.get(f"/api/tickets/status/{rid2}", headers=fan["headers"]).json["status"] == "confirmed"
    assert counts(app, event["sections"][0]["id"])[0] == 1
    held_only = hold(client, app, event["id"], event["sections"][0]["id"], make_user())
    r = client.post(f"/api/tickets/{held_only}/refund", headers=make_user(admin=True)["headers"])
    assert r.status_code == 409 and r.json["reason"] == "not_refundable"  # only a paid ticket
    assert not events_of(app, "TicketRefunded")


def test_concurrent_refunds_of_one_ticket_give_one_refund(app, live_api, worker, client, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    section = event["sections"][0]["id"]
    owner = make_user()
    rid = buy(client, app, event["id"], section, owner, quantity=3)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: requests.post(f"{live_api.url}/api/tickets/{rid}/refund",
                                                        headers=owner["headers"], timeout=20), range(20)))
    assert {r.status_code for r in replies} == {200}, [r.text for r in replies if r.status_code != 200]
    assert len({r.json()["refund_id"] for r in replies}) == 1
    assert {r.json()["status"] for r in replies} == {"succeeded"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.reservation_id == rid)) == 1
        db.session.rollback()
    assert counts(app, section)[0] == 0  # sold went down by 3 once, not 20 times
    assert len([e for e in events_of(app, "TicketRefunded") if e["reservation_id"] == rid]) == 1


def test_a_refund_interrupted_after_its_intent_is_finished_by_the_sweeper(app, client, worker, make_event,
                                                                         make_user):
    from app.booking import flows, refunds
    from app.db import transaction

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    owner = make_user()
    rid = buy(client, app, event["id"], event["sections"][0]["id"], owner)
    with app.app_context():
        # the process dies after recording the intent, before (or while) the provider answers
        with transaction():
            refund = refunds.record_intent(rid, owner["id"], admin=False, reason=None)
        assert refund.status == "pending"
        assert flows.sweep_pending_refunds(older_than_seconds=0) == 1
        assert flows.sweep_pending_refunds(older_than_seconds=0) == 0
        assert db.session.get(Refund, refund.id).status == "succeeded"
        assert db.session.get(Reservation, rid).status == "refunded"
        db.session.rollback()
    assert counts(app, event["sections"][0]["id"])[0] == 0


def test_an_admin_refunds_a_whole_event_as_a_task_with_progress(app, client, worker, make_event, make_user, admin):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], refund_fee_percent=50,
                       refund_deadline=None)
    section = event["sections"][0]["id"]
    fans = [make_user() for _ in range(4)]
    ids = [buy(client, app, event["id"], section, fan) for fan in fans[:3]]
    ids.append(buy(client, app, event["id"], section, fans[3], payment="tok_ok_norefund"))
    assert client.post(f"/api/events/{event['id']}/refunds", headers=fans[0]["headers"]).status_code == 403
    started = client.post(f"/api/events/{event['id']}/refunds", headers=admin["headers"])
    assert started.status_code == 202, started.json
    url = started.json["status_url"]

    def finished():
        body = client.get(url, headers=admin["headers"]).json
        return body if body["state"] == "SUCCESS" else None

    body = wait_for(finished, timeout=60, interval=0.3, message="the event's refund job")
    assert body["progress"] == {"done": 4, "total": 4, "refunded": 3, "declined": 1, "skipped": 0}
    statuses = {client.get(f"/api/tickets/status/{rid}", headers=fan["headers"]).json["status"]
                for rid, fan in zip(ids, fans, strict=True)}
    assert statuses == {"refunded", "confirmed"}
    with app.app_context():
        refunds_rows = db.session.scalars(select(Refund).where(Refund.event_id == event["id"])).all()
        assert {r.fee_cents for r in refunds_rows} == {0}  # an admin refunds in full
        db.session.rollback()
    assert client.get(f"/api/events/{event['id']}/refunds/nope", headers=admin["headers"]).status_code == 404


# --- the waitlist -------------------------------------------------------------------------------

def test_a_sold_out_fan_joins_the_waitlist_is_offered_a_cancelled_ticket_and_buys_it(app, client, worker,
                                                                                     make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 2}], offer_window_seconds=600)
    eid, section = event["id"], event["sections"][0]["id"]
    first, second, late, poller = make_user(), make_user(), make_user(), make_user()
    add_email(app, late)
    rid_first = hold(client, app, eid, section, first)
    hold(client, app, eid, section, second)
    url = f"/api/events/{eid}/sections/{section}/waitlist"
    # not admitted: no place on the waitlist
    r = client.post(url, json={"quantity": 1}, headers=make_user()["headers"])
    assert r.status_code == 403 and r.json["reason"] == "admission_inactive"
    joined = waitlisted(client, app, eid, section, late)
    assert joined["status"] == "waiting" and joined["position"] == 1
    assert joined["eta_seconds"] is None and joined["eta_status"] == "unknown"
    assert client.post(url, json={"quantity": 1}, headers=late["headers"]).status_code == 200  # the same place
    poller_pass = admitted_pass(client, app, eid, poller)

    cancelled = client.post(f"/api/tickets/{rid_first}/cancel", headers=first["headers"])
    assert cancelled.status_code == 200
    # the released ticket is kept for the waitlist: someone polling reserve cannot take it
    r = reserve(client, poller, eid, section, admission=poller_pass)
    assert r.status_code == 409 and r.json["reason"] == "sold_out"
    assert tick(app)["made"] == 1
    place = client.get(url, headers=late["headers"]).json
    assert place["status"] == "offered" and place["offer"]["quantity"] == 1
    # someone else cannot use the offer
    stolen = reserve(client, poller, eid, section, offer=place["offer"]["offer_token"])
    assert stolen.status_code == 403 and stolen.json["reason"] == "offer_wrong_user"
    bought = reserve(client, late, eid, section, offer=place["offer"]["offer_token"])
    assert bought.status_code == 202, bought.json
    held = wait_reservation(client, late, bought.json["reservation_id"])
    assert held["status"] == "held"
    paid = client.post(f"/api/tickets/{held['reservation_id']}/confirm", json={"payment_token": "tok_ok_visa"},
                       headers=late["headers"])
    assert paid.status_code == 200 and paid.json["status"] == "confirmed"
    again = reserve(client, late, eid, section, offer=place["offer"]["offer_token"])
    assert again.status_code == 409 and again.json["reason"] == "offer_gone"
    assert [e["user_id"] for e in events_of(app, "WaitlistJoined")] == [late["id"]]
    assert [e["user_id"] for e in events_of(app, "OfferMade")] == [late["id"]]
    assert [e["user_id"] for e in events_of(app, "OfferClaimed")] == [late["id"]]

    def offer_notice():
        with app.app_context():
            rows = db.session.scalars(select(Notification).where(Notification.user_id == late["id"],
                                                                 Notification.kind == "offer")).all()
            db.session.rollback()
            return rows if rows and rows[0].status in {"sent", "logged"} else None

    assert len(wait_for(offer_notice, timeout=20, message="the offer notice")) == 1
    sold, held_units, capacity = counts(app, section)
    assert sold + held_units <= capacity


def test_the_waitlist_needs_a_sold_out_general_admission_section(app, client, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 5}, {"name": "Balcony", "rows": 1, "seats_per_row": 2}])
    eid = event["id"]
    fan = make_user()
    admitted_pass(client, app, eid, fan)
    floor, balcony = (s["id"] for s in event["sections"])
    r = client.post(f"/api/events/{eid}/sections/{floor}/waitlist", json={"quantity": 1}, headers=fan["headers"])
    assert r.status_code == 409 and r.json["reason"] == "not_sold_out"
    r = client.post(f"/api/events/{eid}/sections/{balcony}/waitlist", json={"quantity": 1}, headers=fan["headers"])
    assert r.status_code == 422 and r.json["reason"] == "waitlist_not_available"
    r = client.post(f"/api/events/{eid}/sections/{floor}/waitlist", json={"quantity": 9}, headers=fan["headers"])
    assert r.status_code == 422
    r = client.post(f"/api/events/{eid}/sections/{floor}/waitlist", json={"quantity": "2"}, headers=fan["headers"])
    assert r.status_code == 422
    assert client.get(f"/api/events/{eid}/sections/{floor}/waitlist", headers=fan["headers"]).status_code == 404
    assert client.delete(f"/api/events/{eid}/sections/{floor}/waitlist", headers=fan["headers"]).status_code == 404


def test_partial_fit_skips_to_the_next_fan_who_fits_and_keeps_the_first_fans_place(app, client, worker,
                                                                                   make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 3}])
    eid, section = event["id"], event["sections"][0]["id"]
    holders = [make_user() for _ in range(3)]
    held = [hold(client, app, eid, section, u) for u in holders]
    wants_three, wants_one = make_user(), make_user()
    waitlisted(client, app, eid, section, wants_three, quantity=3)
    waitlisted(client, app, eid, section, wants_one, quantity=1)
    client.post(f"/api/tickets/{held[0]}/cancel", headers=holders[0]["headers"])
    tick(app)
    url = f"/api/events/{eid}/sections/{section}/waitlist"
    assert client.get(url, headers=wants_one["headers"]).json["status"] == "offered"
    first = client.get(url, headers=wants_three["headers"]).json
    assert first["status"] == "waiting" and first["position"] == 1
    for i in (1, 2):
        client.post(f"/api/tickets/{held[i]}/cancel", headers=holders[i]["headers"])
    tick(app)  # two released: still short of three, and nobody else waits: they stay kept
    assert client.get(url, headers=wants_three["headers"]).json["status"] == "waiting"
    client.delete(url, headers=wants_one["headers"])  # declines: its unit passes on at once
    place = client.get(url, headers=wants_three["headers"]).json
    assert place["status"] == "offered" and place["offer"]["quantity"] == 3
    assert [e["reason"] for e in events_of(app, "OfferExpired")] == ["declined"]


def test_an_expired_offer_passes_to_the_next_fan_who_is_notified_once(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 1}], offer_window_seconds=30)
    eid, section = event["id"], event["sections"][0]["id"]
    holder, a, b = make_user(), make_user(), make_user()
    add_email(app, b)
    rid = hold(client, app, eid, section, holder)
    waitlisted(client, app, eid, section, a)
    waitlisted(client, app, eid, section, b)
    client.post(f"/api/tickets/{rid}/cancel", headers=holder["headers"])
    tick(app)
    url = f"/api/events/{eid}/sections/{section}/waitlist"
    token_a = client.get(url, headers=a["headers"]).json["offer"]["offer_token"]
    with app.app_context():  # a's window lapses (moved back instead of waiting 30 s)
        from app.redis.keys import QueueKeys

        keys = QueueKeys(eid)
        offer_id = redis_store.client.hget(keys.waitlist(section, "useroffer"), a["id"])
        user, qty, _exp = redis_store.client.hget(keys.waitlist(section, "offers"), offer_id).split(":")
        redis_store.client.hset(keys.waitlist(section, "offers"), offer_id, f"{user}:{qty}:1")
        redis_store.client.zadd(keys.waitlist(section, "offerexp"), {offer_id: 1})
    assert tick(app) == {"made": 1, "expired": 1}
    assert tick(app) == {"made": 0, "expired": 0}
    late = reserve(client, a, eid, section, offer=token_a)
    assert late.status_code == 409 and late.json["reason"] == "offer_gone"
    assert client.get(url, headers=b["headers"]).json["status"] == "offered"
    assert [e["user_id"] for e in events_of(app, "OfferExpired")] == [a["id"]]

    def notices():
        with app.app_context():
            rows = db.session.scalars(select(Notification).where(Notification.user_id == b["id"],
                                                                 Notification.kind == "offer")).all()
            db.session.rollback()
            return rows if rows and all(r.status in {"sent", "logged"} for r in rows) else None

    assert len(wait_for(notices, timeout=20, message="b's offer notice")) == 1


def test_a_worker_killed_between_making_and_announcing_an_offer_loses_nothing(app, client, worker, make_event,
                                                                             make_user):
    """MAKE_OFFERS ran (the offer exists in Redis) and the process died before announcing it: the
    next tick announces it, once."""
    from app.redis import calls

    event = make_event(sections=[{"name": "Floor", "capacity": 1}])
    eid, section = event["id"], event["sections"][0]["id"]
    holder, fan = make_user(), make_user()
    add_email(app, fan)
    rid = hold(client, app, eid, section, holder)
    waitlisted(client, app, eid, section, fan)
    client.post(f"/api/tickets/{rid}/cancel", headers=holder["headers"])
    with app.app_context():
        made = calls.make_offers(calls.WaitlistKeys.of(eid, section), now=time.time(), window_seconds=600, scan=10)
        assert made[0].user_id == fan["id"]  # ... and here the worker was SIGKILLed
    assert events_of(app, "OfferMade") == []
    tick(app)
    tick(app)
    assert [e["user_id"] for e in events_of(app, "OfferMade")] == [fan["id"]]

    def notices():
        with app.app_context():
            rows = db.session.scalars(select(Notification).where(Notification.user_id == fan["id"],
                                                                 Notification.kind == "offer")).all()
            db.session.rollback()
            return rows or None

    assert len(wait_for(notices, timeout=20, message="the offer notice")) == 1


def test_50_waitlisted_20_released_by_expiry_cancel_and_refund_go_in_order_and_never_twice(
        app, client, worker, make_event, make_user):
    from app.booking.flows import sweep_expired_holds
    from app.db import utcnow

    event = make_event(sections=[{"name": "Floor", "capacity": 20}], max_per_user=1)
    eid, section = event["id"], event["sections"][0]["id"]
    owners = [make_user() for _ in range(20)]
    held = [hold(client, app, eid, section, u) for u in owners[:14]]
    bought = [buy(client, app, eid, section, u) for u in owners[14:]]
    fans = [make_user() for _ in range(50)]
    for fan in fans:
        waitlisted(client, app, eid, section, fan)
    # 7 holds expire, 7 are cancelled, 6 tickets are refunded
    with app.app_context():
        db.session.execute(Reservation.__table__.update().where(Reservation.id.in_(held[:7]))
                           .values(hold_expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert sweep_expired_holds() == 7
    for rid, owner in zip(held[7:], owners[7:14], strict=True):
        assert client.post(f"/api/tickets/{rid}/cancel", headers=owner["headers"]).status_code == 200
    for rid, owner in zip(bought, owners[14:], strict=True):
        assert client.post(f"/api/tickets/{rid}/refund", headers=owner["headers"]).status_code == 200
    assert tick(app)["made"] == 20
    url = f"/api/events/{eid}/sections/{section}/waitlist"
    places = [client.get(url, headers=fan["headers"]).json for fan in fans]
    assert [p["status"] for p in places] == ["offered"] * 20 + ["waiting"] * 30  # in waitlist order
    assert [p["position"] for p in places[20:]] == list(range(1, 31))
    assert places[20]["eta_status"] == "estimated" and places[20]["eta_seconds"] > 0

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda fp: reserve(client, fp[0], eid, section, offer=fp[1]["offer"]["offer_token"]),
                                zip(fans[:20], places[:20], strict=True)))
    assert [r.status_code for r in replies] == [202] * 20
    for fan, r in zip(fans[:20], replies, strict=True):
        assert wait_reservation(client, fan, r.json["reservation_id"])["status"] == "held"
    sold, held_units, capacity = counts(app, section)
    assert sold + held_units == capacity == 20
    with app.app_context():
        live = db.session.scalar(select(func.count()).select_from(Reservation).where(
            Reservation.event_id == eid, Reservation.status.in_(("held", "confirmed"))))
        db.session.rollback()
    assert live == 20
    stats = client.get(f"/api/events/{eid}/waitlists", headers=make_user(admin=True)["headers"]).json
    assert stats[0]["waiting"] == 30 and stats[0]["offers_made"] == 20 and stats[0]["offers_claimed"] == 20
    assert stats[0]["conversion"] == 1.0 and stats[0]["units_released"] == 20


def test_200_concurrent_claims_and_releases_never_oversell(app, live_api, worker, client, make_event, make_user):
    """100 fans claim their offers while 100 holders cancel at the same moment; the waitlist goes on
    offering what comes back. At the end MySQL never holds or sells more than the capacity, and
    every unit is in exactly one place."""
    from app.inventory.gate import gate_key
    from app.redis.keys import QueueKeys

    event = make_event(sections=[{"name": "Floor", "capacity": 200}], max_per_user=1)
    eid, section = event["id"], event["sections"][0]["id"]
    holders = [make_user() for _ in range(200)]
    held = [hold(client, app, eid, section, u) for u in holders]
    fans = [make_user() for _ in range(200)]
    for fan in fans:
        waitlisted(client, app, eid, section, fan)
    for rid, owner in zip(held[:100], holders[:100], strict=True):
        client.post(f"/api/tickets/{rid}/cancel", headers=owner["headers"])
    tick(app)
    url = f"/api/events/{eid}/sections/{section}/waitlist"
    offers = [client.get(url, headers=f["headers"]).json["offer"]["offer_token"] for f in fans[:100]]
    stop = threading.Event()

    def ticking():
        while not stop.is_set():
            tick(app)
            stop.wait(0.05)

    ticker = threading.Thread(target=ticking)
    ticker.start()

    def claim(i: int) -> int:
        headers = {**fans[i]["headers"], "Idempotency-Key": uuid.uuid4().hex, "X-Offer-Token": offers[i]}
        return requests.post(f"{live_api.url}/api/tickets/reserve", headers=headers, timeout=20,
                             json={"event_id": eid, "section_id": section, "quantity": 1}).status_code

    def release(i: int) -> int:
        return requests.post(f"{live_api.url}/api/tickets/{held[100 + i]}/cancel", headers=holders[100 + i]["headers"],
                             timeout=20).status_code

    try:
        with ThreadPoolExecutor(32) as pool:
            claims = pool.map(claim, range(100))
            releases = pool.map(release, range(100))
            assert set(claims) == {202} and set(releases) == {200}
        with app.app_context():
            wait_for(lambda: not redis_store.client.hlen(QueueKeys(eid).pending()), timeout=30,
                     message="every claim written")
        wait_for(lambda: client.get(url, headers=fans[-1]["headers"]).json["status"] == "offered", timeout=20,
                 message="the last fan's offer")
    finally:
        stop.set()
        ticker.join()
    sold, held_units, capacity = counts(app, section)
    assert sold + held_units <= capacity
    with app.app_context():
        keys = QueueKeys(eid)
        client_ = redis_store.client
        gate = int(client_.get(gate_key(eid, section)) or 0)
        pool_units = int(client_.get(keys.waitlist(section, "pool")) or 0)
        offered = int(client_.get(keys.waitlist(section, "offered")) or 0)
    assert held_units == 100 and offered == 100 and gate == 0 and pool_units == 0
    assert held_units + offered + gate + pool_units == capacity


def test_an_admin_raising_capacity_offers_the_new_tickets_to_the_waitlist_first(app, client, worker, make_event,
                                                                                make_user, admin):
    event = make_event(sections=[{"name": "Floor", "capacity": 1}])
    eid, section = event["id"], event["sections"][0]["id"]
    rid = buy(client, app, eid, section, make_user())
    fans = [make_user() for _ in range(3)]
    for fan in fans:
        waitlisted(client, app, eid, section, fan)
    url = f"/api/events/{eid}/sections/{section}"
    assert client.patch(url, json={"capacity": 3}, headers=fans[0]["headers"]).status_code == 403
    r = client.patch(url, json={"capacity": 3}, headers=admin["headers"])
    assert r.status_code == 200 and r.json["capacity"] == 3
    tick(app)
    wl = f"{url}/waitlist"
    assert [client.get(wl, headers=f["headers"]).json["status"] for f in fans] == ["offered", "offered", "waiting"]
    stats = client.get(f"/api/queue/{eid}/stats", headers=admin["headers"]).json["waitlists"]
    assert stats[0]["waiting"] == 1 and stats[0]["offers_out"] == 2
    assert client.patch(url, json={"capacity": 0}, headers=admin["headers"]).status_code == 422
    assert client.get(f"/api/tickets/status/{rid}", headers=admin["headers"]).status_code == 404  # not theirs
