"""Booking through the real API, a real Celery worker, MariaDB and Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select

from app.booking.models import Reservation
from app.catalogue.models import Seat, Section
from app.extensions import db
from app.outbox.models import OutboxEvent
from tests.helpers import admitted_pass, wait_reservation
from tests.support import wait_for


def reserve(client, user, body, token, key=None):
    headers = {**user["headers"], "Idempotency-Key": key or uuid.uuid4().hex}
    if token is not None:
        headers["X-Admission-Token"] = token
    return client.post("/api/tickets/reserve", json=body, headers=headers)


def held_reservation(client, app, event, user, **selection) -> dict:
    """Admitted, reserved in the event's first section, and held: the reservation view."""
    token = admitted_pass(client, app, event["id"], user)
    r = reserve(client, user, {"event_id": event["id"], "section_id": event["sections"][0]["id"], **selection},
                token)
    assert r.status_code == 202, r.json
    held = wait_reservation(client, user, r.json["reservation_id"])
    assert held["status"] == "held", held
    return held


def section_row(app, section_id):
    from types import SimpleNamespace

    with app.app_context():
        row = db.session.get(Section, section_id)
        counts = SimpleNamespace(sold=row.sold, held=row.held, capacity=row.capacity)
        db.session.rollback()
        return counts


def test_general_admission_reserve_hold_confirm(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    r = reserve(client, user, {"event_id": event["id"], "section_id": section["id"], "quantity": 2}, token)
    assert r.status_code == 202, r.json
    assert r.json["status"] == "pending" and r.json["status_url"] == f"/api/tickets/status/{r.json['reservation_id']}"
    held = wait_reservation(client, user, r.json["reservation_id"])
    assert held["status"] == "held" and held["amount_cents"] == 10000 and held["currency"] == "EUR"
    assert held["hold_expires_at"]
    # the writer commits the hold, then retires the pending units in Redis: between the two, the
    # page counts the units twice and shows less (never more) than is free
    assert wait_for(lambda: client.get(f"/api/events/{event['id']}").json["sections"][0]["available"] == 8,
                    timeout=10, message="the held units counted once")

    url = f"/api/tickets/{held['reservation_id']}/confirm"
    declined = client.post(url, json={"payment_token": "tok_declined"}, headers=user["headers"])
    assert declined.status_code == 402 and declined.json["reason"] == "card_declined"
    assert client.get(held["status_url"], headers=user["headers"]).json["status"] == "held"
    ok = client.post(url, json={"payment_token": "tok_ok_visa"}, headers=user["headers"])
    assert ok.status_code == 200 and ok.json["status"] == "confirmed" and ok.json["confirmed_at"]
    again = client.post(url, json={"payment_token": "tok_ok_visa"}, headers=user["headers"])
    assert again.status_code == 200 and again.json["confirmed_at"] == ok.json["confirmed_at"]
    row = section_row(app, section["id"])
    assert (row.sold, row.held) == (2, 0)
    with app.app_context():
        types = db.session.scalars(select(OutboxEvent.type).where(
            OutboxEvent.aggregate_id == held["reservation_id"]).order_by(OutboxEvent.id)).all()
    assert types == ["SeatsHeld", "ReservationConfirmed"]
    # the purchase frees the active waiting-room slot, which revokes the pass
    r = reserve(client, user, {"event_id": event["id"], "section_id": section["id"], "quantity": 1}, token)
    assert r.status_code == 403 and r.json["reason"] == "admission_inactive"


def test_seated_reserve_and_seat_map(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Balcony", "rows": 2, "seats_per_row": 5}])
    section = event["sections"][0]
    seats = client.get(f"/api/events/{event['id']}/sections/{section['id']}/seats").json["seats"]
    wanted = [seats[1]["id"], seats[2]["id"]]
    user = make_user()
    held = held_reservation(client, app, event, user, seat_ids=wanted)
    assert [s["label"] for s in held["seats"]] == ["A2", "A3"]
    states = {s["id"]: s["state"] for s in client.get(
        f"/api/events/{event['id']}/sections/{section['id']}/seats").json["seats"]}
    assert states[wanted[0]] == "held" and states[seats[0]["id"]] == "available"
    client.post(f"/api/tickets/{held['reservation_id']}/confirm", json={"payment_token": "tok_ok"},
                headers=user["headers"])
    states = {s["id"]: s["state"] for s in client.get(
        f"/api/events/{event['id']}/sections/{section['id']}/seats").json["seats"]}
    assert states[wanted[0]] == "sold" and states[wanted[1]] == "sold"


def test_idempotency_key_replay(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    body = {"event_id": event["id"], "section_id": section["id"], "quantity": 1}
    first = reserve(client, user, body, token, key="key-1")
    second = reserve(client, user, body, token, key="key-1")
    assert first.status_code == second.status_code == 202
    assert first.json["reservation_id"] == second.json["reservation_id"]
    other = reserve(client, user, {**body, "quantity": 2}, token, key="key-1")
    assert other.status_code == 422 and other.json["reason"] == "idempotency_key_reused"
    wait_reservation(client, user, first.json["reservation_id"])
    with app.app_context():
        assert db.session.query(Reservation).count() == 1
        db.session.rollback()
    assert section_row(app, section["id"]).held == 1


def test_admission_pass_is_required_and_bound(app, client, make_event, make_user):
    e1 = make_event(sections=[{"name": "Floor", "capacity": 10}])
    e2 = make_event(sections=[{"name": "Floor", "capacity": 10}])
    a, b = make_user(), make_user()
    token_a = admitted_pass(client, app, e1["id"], a)
    admitted_pass(client, app, e2["id"], a)
    body = {"event_id": e1["id"], "section_id": e1["sections"][0]["id"], "quantity": 1}
    assert reserve(client, a, body, None).json["reason"] == "admission_required"
    r = reserve(client, b, body, token_a)
    assert r.status_code == 403 and r.json["reason"] == "admission_wrong_user"
    body2 = {"event_id": e2["id"], "section_id": e2["sections"][0]["id"], "quantity": 1}
    r = reserve(client, a, body2, token_a)
    assert r.status_code == 403 and r.json["reason"] == "admission_wrong_event"
    assert reserve(client, a, body, "garbage").status_code == 403


def test_invalid_reservations_are_422(app, client, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}, {"name": "Seats", "rows": 1,
                                                                     "seats_per_row": 4}],
                       max_per_user=3)
    other = make_event(sections=[{"name": "Seats", "rows": 1, "seats_per_row": 2}])
    ga, seated = event["sections"]
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    base = {"event_id": event["id"], "section_id": ga["id"]}
    assert reserve(client, user, {**base, "quantity": 0}, token).status_code == 422
    r = reserve(client, user, {**base, "quantity": 4}, token)
    assert r.status_code == 422 and r.json["reason"] == "limit_exceeded"
    assert reserve(client, user, base, token).status_code == 422
    assert reserve(client, user, {**base, "seat_ids": [1]}, token).status_code == 422
    seat_base = {"event_id": event["id"], "section_id": seated["id"]}
    assert reserve(client, user, {**seat_base, "quantity": 1}, token).status_code == 422
    with app.app_context():
        foreign = db.session.scalars(select(Seat.id).where(Seat.section_id == other["sections"][0]["id"])).first()
        db.session.rollback()
    assert reserve(client, user, {**seat_base, "seat_ids": [foreign]}, token).status_code == 422
    headers = {**user["headers"], "X-Admission-Token": token}
    r = client.post("/api/tickets/reserve", json={**base, "quantity": 1}, headers=headers)
    assert r.status_code == 422 and "Idempotency-Key" in r.json["errors"]
    r = reserve(client, user, {**base, "section_id": 999999, "quantity": 1}, token)
    assert r.status_code == 404
    with app.app_context():
        assert db.session.query(Reservation).count() == 0
        db.session.rollback()


def test_per_user_limit_counts_live_reservations(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}], max_per_user=3)
    section = event["sections"][0]
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    body = {"event_id": event["id"], "section_id": section["id"]}
    assert reserve(client, user, {**body, "quantity": 2}, token).status_code == 202
    r = reserve(client, user, {**body, "quantity": 2}, token)
    assert r.status_code == 422 and r.json["reason"] == "limit_exceeded"
    assert reserve(client, user, {**body, "quantity": 1}, token).status_code == 202


def test_sold_out_gate_answers_409_at_once(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 2}])
    section = event["sections"][0]
    a, b = make_user(), make_user()
    ta = admitted_pass(client, app, event["id"], a)
    tb = admitted_pass(client, app, event["id"], b)
    body = {"event_id": event["id"], "section_id": section["id"], "quantity": 2}
    assert reserve(client, a, body, ta).status_code == 202
    r = reserve(client, b, {**body, "quantity": 1}, tb)
    assert r.status_code == 409 and r.json["reason"] == "sold_out"


def test_expired_hold_is_not_counted_and_cannot_be_confirmed(app, client, worker, make_event, make_user):
    from app.booking.flows import sweep_expired_holds

    event = make_event(sections=[{"name": "Floor", "capacity": 1}], hold_seconds=1)
    section = event["sections"][0]
    a, b = make_user(), make_user()
    body = {"event_id": event["id"], "section_id": section["id"], "quantity": 1}
    held = held_reservation(client, app, event, a, quantity=1)
    assert client.get(f"/api/events/{event['id']}").json["sections"][0]["available"] == 0
    time.sleep(1.2)
    # before any sweeper: the user sees it expired and the unit is available again
    assert client.get(held["status_url"], headers=a["headers"]).json["status"] == "expired"
    assert client.get(f"/api/events/{event['id']}").json["sections"][0]["available"] == 1
    # and another buyer can take it at once (the gate reclaims it, the hold releases it in MySQL)
    tb = admitted_pass(client, app, event["id"], b)
    rb = reserve(client, b, body, tb)
    assert rb.status_code == 202, rb.json
    assert wait_reservation(client, b, rb.json["reservation_id"])["status"] == "held"
    r = client.post(f"/api/tickets/{held['reservation_id']}/confirm", json={"payment_token": "tok_ok"},
                    headers=a["headers"])
    assert r.status_code == 409 and r.json["reason"] in {"hold_expired", "reservation_expired"}
    with app.app_context():
        sweep_expired_holds()
        assert db.session.get(Reservation, held["reservation_id"]).status == "expired"
        db.session.rollback()
    row = section_row(app, section["id"])
    assert (row.held, row.sold) == (1, 0)


def test_sweeper_releases_expired_holds_in_batches(app, client, worker, make_event, make_user):
    from app.booking.flows import sweep_expired_holds
    from app.extensions import redis_store
    from app.inventory.gate import expected_units, gate_key

    event = make_event(sections=[{"name": "Seats", "rows": 1, "seats_per_row": 6}], hold_seconds=1)
    section = event["sections"][0]
    seats = [s["id"] for s in client.get(f"/api/events/{event['id']}/sections/{section['id']}/seats").json["seats"]]
    ids = []
    for i in range(3):
        user = make_user()
        token = admitted_pass(client, app, event["id"], user)
        r = reserve(client, user, {"event_id": event["id"], "section_id": section["id"],
                                   "seat_ids": seats[2 * i: 2 * i + 2]}, token)
        ids.append((user, r.json["reservation_id"]))
    for user, rid in ids:
        assert wait_reservation(client, user, rid)["status"] == "held"
    time.sleep(1.2)
    with app.app_context():
        assert sweep_expired_holds(batch=2) == 3
        assert sweep_expired_holds() == 0
        states = set(db.session.scalars(select(Seat.state).where(Seat.section_id == section["id"])))
        assert states == {"available"}
        row = db.session.get(Section, section["id"])
        assert int(redis_store.client.get(gate_key(event["id"], section["id"]))) == expected_units(row) == 6
        db.session.rollback()


def test_cancel_returns_inventory_and_frees_the_slot(app, client, worker, make_event, make_user):
    from app.extensions import redis_store
    from app.inventory.gate import gate_key

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    section = event["sections"][0]
    user = make_user()
    held = held_reservation(client, app, event, user, quantity=3)
    assert client.get(f"/api/events/{event['id']}").json["sections"][0]["available"] == 2
    c = client.post(f"/api/tickets/{held['reservation_id']}/cancel", headers=user["headers"])
    assert c.status_code == 200 and c.json["status"] == "cancelled"
    assert client.post(f"/api/tickets/{held['reservation_id']}/cancel", headers=user["headers"]).status_code == 200
    assert client.get(f"/api/events/{event['id']}").json["sections"][0]["available"] == 5
    with app.app_context():
        assert int(redis_store.client.get(gate_key(event["id"], section["id"]))) == 5
    assert section_row(app, section["id"]).held == 0
    status = client.get(f"/api/queue/{event['id']}/status", headers=user["headers"]).json
    assert status["status"] == "not_in_queue"
    r = client.post(f"/api/tickets/{held['reservation_id']}/confirm", json={"payment_token": "tok_ok"},
                    headers=user["headers"])
    assert r.status_code == 409


def test_other_users_reservation_is_404_and_listing_is_paginated(app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    owner, stranger = make_user(), make_user()
    token = admitted_pass(client, app, event["id"], owner)
    rids = [reserve(client, owner, {"event_id": event["id"], "section_id": section["id"], "quantity": 1},
                    token).json["reservation_id"] for _ in range(3)]
    for path in (f"/api/tickets/status/{rids[0]}",):
        assert client.get(path, headers=stranger["headers"]).status_code == 404
    assert client.post(f"/api/tickets/{rids[0]}/confirm", json={"payment_token": "tok_ok"},
                       headers=stranger["headers"]).status_code == 404
    assert client.post(f"/api/tickets/{rids[0]}/cancel", headers=stranger["headers"]).status_code == 404
    page = client.get("/api/tickets/status?page=1&page_size=2", headers=owner["headers"]).json
    assert page["total"] == 3 and len(page["items"]) == 2
    assert client.get("/api/tickets/status", headers=stranger["headers"]).json["total"] == 0


def accepted_record(event_id: int, section_id: int, user_id: int, quantity: int) -> dict:
    """A request as the intake script records it (the test hands it to the writer itself)."""
    import time as time_

    return {"id": str(uuid.uuid4()), "user_id": user_id, "event_id": event_id, "section_id": section_id,
            "quantity": quantity, "seat_ids": None, "amount_cents": 5000 * quantity, "currency": "EUR",
            "idempotency_key": uuid.uuid4().hex, "request_hash": "x" * 64, "created_at": time_.time(),
            "request_id": None}


def spare_redis() -> tuple[str, Any]:
    """The spare Redis db (TEST_SPARE_REDIS_URL), emptied: a hold writer pointed at it is the only
    one that sees its sales, the session's worker reads the app's db."""
    import os

    import redis as redis_lib

    url = os.environ["TEST_SPARE_REDIS_URL"]
    client = redis_lib.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    return url, client


def leave_for_the_writers(client: Any, record: dict) -> None:
    """What RESERVE leaves for the hold writers: the sale registered, the pending record and the
    stream entry."""
    import json

    from app.redis.keys import REGISTRY_KEY, QueueKeys

    keys = QueueKeys(record["event_id"])
    client.sadd(REGISTRY_KEY, record["event_id"])
    client.hset(keys.pending(), record["id"], json.dumps(record))
    client.xadd(keys.reserve_stream(), {"r": json.dumps(record)})


def test_a_batch_written_twice_yields_one_hold(app, make_event, make_user):
    """A writer that dies between COMMIT and acknowledging leaves its entries to be claimed again:
    the second run finds the reservations written and only acknowledges."""
    import json

    from app.booking import writer

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    record = accepted_record(event["id"], section["id"], make_user()["id"], quantity=2)
    entries = [("1-1", {"r": json.dumps(record)})]
    with app.app_context():
        assert writer.process(event["id"], entries) == 1
        assert writer.process(event["id"], entries) == 1
        res = db.session.get(Reservation, record["id"])
        assert res.status == "held" and res.hold_expires_at is not None
        assert db.session.query(Reservation).count() == 1
        types = db.session.scalars(select(OutboxEvent.type).where(OutboxEvent.aggregate_id == record["id"])
                                   .order_by(OutboxEvent.id)).all()
        assert types == ["SeatsHeld"]
        db.session.rollback()
    assert section_row(app, section["id"]).held == 2


def test_one_batch_holds_in_arrival_order_and_rejects_only_the_losers(app, make_event, make_user):
    """General admission: one conditional UPDATE for what fits; seats: one claim; per-user limit
    checked in MySQL. Only the requests that do not fit are rejected."""
    import json

    from app.booking import writer

    event = make_event(sections=[{"name": "Floor", "capacity": 5}, {"name": "Seats", "rows": 1,
                                                                    "seats_per_row": 4}], max_per_user=3)
    ga, seated = event["sections"]
    users = [make_user()["id"] for _ in range(5)]
    with app.app_context():
        seats = list(db.session.scalars(select(Seat.id).where(Seat.section_id == seated["id"]).order_by(Seat.id)))
        db.session.rollback()
    records = [accepted_record(event["id"], ga["id"], users[0], 3),   # held (3 of 5)
               accepted_record(event["id"], ga["id"], users[1], 3),   # rejected: only 2 left
               accepted_record(event["id"], ga["id"], users[2], 2),   # held (the last 2)
               accepted_record(event["id"], ga["id"], users[0], 1)]   # rejected: over the user's limit
    for user, chosen in ((users[3], seats[0:2]), (users[4], seats[1:3]), (users[4], seats[2:4])):
        r = accepted_record(event["id"], seated["id"], user, 2)
        r["seat_ids"] = chosen
        records.append(r)  # held, rejected (seat 2 taken earlier in the batch), held
    with app.app_context():
        writer.process(event["id"], [(f"1-{i}", {"r": json.dumps(r)}) for i, r in enumerate(records)])
        got = {r.id: (r.status, r.reason) for r in db.session.scalars(select(Reservation))}
        db.session.rollback()
    assert [got[r["id"]] for r in records] == [
        ("held", None), ("rejected", "sold_out"), ("held", None), ("rejected", "limit_exceeded"),
        ("held", None), ("rejected", "seats_unavailable"), ("held", None)]
    assert section_row(app, ga["id"]).held == 5
    with app.app_context():
        owners = dict(db.session.execute(select(Seat.id, Seat.reservation_id)
                                         .where(Seat.section_id == seated["id"])).all())
        db.session.rollback()
    assert owners == {seats[0]: records[4]["id"], seats[1]: records[4]["id"],
                      seats[2]: records[6]["id"], seats[3]: records[6]["id"]}


def test_status_is_pending_from_the_202_until_the_writer_runs(app, client, worker, make_event, make_user):
    """The section row is locked, so the writer cannot commit: the user sees `pending` meanwhile."""
    from sqlalchemy import text

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    locker = db.engine.connect()
    trans = locker.begin()
    try:
        locker.execute(text("SELECT id FROM sections WHERE id = :id FOR UPDATE"), {"id": section["id"]})
        r = reserve(client, user, {"event_id": event["id"], "section_id": section["id"], "quantity": 2}, token)
        assert r.status_code == 202 and r.json["status"] == "pending"
        rid = r.json["reservation_id"]
        mine = client.get(f"/api/tickets/status/{rid}", headers=user["headers"])
        assert mine.status_code == 200 and mine.json["status"] == "pending" and mine.json["quantity"] == 2
        listing = client.get("/api/tickets/status", headers=user["headers"]).json
        assert listing["total"] == 1 and listing["items"][0]["reservation_id"] == rid
        stranger = make_user()
        assert client.get(f"/api/tickets/status/{rid}", headers=stranger["headers"]).status_code == 404
        cancel = client.post(f"/api/tickets/{rid}/cancel", headers=user["headers"])
        assert cancel.status_code == 409 and cancel.json["reason"] == "not_held_yet"
    finally:
        trans.rollback()
        locker.close()
    assert wait_reservation(client, user, rid)["status"] == "held"


def test_a_bad_entry_goes_to_the_dead_letter_stream_and_the_rest_are_written(app, make_event, make_user):
    import json

    from app.booking import writer
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    good = [accepted_record(event["id"], section["id"], make_user()["id"], 1) for _ in range(2)]
    bad = {**accepted_record(event["id"], section["id"], make_user()["id"], 1), "quantity": "two"}
    entries = [("1-1", {"r": json.dumps(good[0])}), ("1-2", {"r": json.dumps(bad)}),
               ("1-3", {"r": json.dumps(good[1])})]
    with app.app_context():
        assert writer.process(event["id"], entries) == 3
        written = set(db.session.scalars(select(Reservation.id)))
        db.session.rollback()
        dead = redis_store.client.xrange(QueueKeys(event["id"]).dead_letters())
    assert written == {good[0]["id"], good[1]["id"]}
    assert [json.loads(fields["r"])["id"] for _id, fields in dead] == [bad["id"]]
    assert section_row(app, section["id"]).held == 2


def test_a_sale_registered_after_the_writers_last_look_is_read_in_its_next_round(app, make_event, make_user):
    """The hold writer looks for new sales again right after a round that found nothing, not only
    once a second: a sale whose first reserves come just after its first join is not left waiting.
    The writer runs here on the spare Redis db, so the session's worker cannot take the entry."""
    from app.booking.writer import HoldWriter
    from app.extensions import redis_store

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    record = accepted_record(event["id"], section["id"], make_user()["id"], quantity=2)
    spare_url, spare = spare_redis()
    app_redis = (redis_store.url, redis_store.max_connections, redis_store.cluster)
    redis_store.init(spare_url)
    try:
        writer = HoldWriter(app, name="discovery")
        with app.app_context():
            assert writer.step(block_ms=10) == 0  # no sale yet: the writer has looked and found none
            leave_for_the_writers(spare, record)  # the sale's first join and first reserve
            assert writer.step(block_ms=10) == 1  # found at once, not at the next one-second look
            res = db.session.get(Reservation, record["id"])
            assert res is not None and res.status == "held" and res.quantity == 2
            db.session.rollback()
    finally:
        redis_store.init(*app_redis)
        spare.flushdb()
