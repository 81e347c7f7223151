"""Concurrency: the oversell stress through the real API and worker, and killed-worker redelivery."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select, text

from app.booking.models import Reservation
from app.catalogue.models import Seat, Section
from app.extensions import db
from tests.support import start_worker, wait_for


def test_no_oversell_under_200_concurrent_buyers(app, live_api, worker, make_event, make_user):
    from app.booking.gate import expected_units, gate_key
    from app.extensions import redis_store
    from app.queue.services import admit_now

    event = make_event(sections=[{"name": "Floor", "capacity": 50}, {"name": "Seats", "rows": 5,
                                                                      "seats_per_row": 10}],
                       admit_per_minute=60000, max_active=1000)
    ga, seated = event["sections"]
    seat_ids = [s["id"] for s in requests.get(
        f"{live_api.url}/api/events/{event['id']}/sections/{seated['id']}/seats", timeout=5).json()["seats"]]
    buyers = [make_user() for _ in range(200)]
    base = f"{live_api.url}/api"
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda u: requests.post(f"{base}/queue/{event['id']}/join", headers=u["headers"],
                                              timeout=10).raise_for_status(), buyers))
        with app.app_context():
            assert len(admit_now(event["id"], 200).admitted) == 200
        tokens = list(pool.map(lambda u: requests.get(f"{base}/queue/{event['id']}/status", headers=u["headers"],
                                                      timeout=10).json()["admission_token"], buyers))
    rng = random.Random(7)

    def buy(i: int):
        user, token = buyers[i], tokens[i]
        if i % 2 == 0:
            body = {"event_id": event["id"], "section_id": ga["id"], "quantity": 1}
        else:  # overlapping choices: pairs of neighbours among only 50 seats
            start = rng.randrange(0, 49)
            body = {"event_id": event["id"], "section_id": seated["id"], "seat_ids": seat_ids[start:start + 2]}
        headers = {**user["headers"], "X-Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex}
        r = requests.post(f"{base}/tickets/reserve", json=body, headers=headers, timeout=30)
        assert r.status_code in (202, 409), r.text
        return (user, r.json()["reservation_id"]) if r.status_code == 202 else None

    barrier_start = time.monotonic()
    with ThreadPoolExecutor(48) as pool:
        accepted = [x for x in pool.map(buy, range(200)) if x]
    assert time.monotonic() - barrier_start < 60

    def all_final() -> bool:
        with app.app_context():
            pending = db.session.scalar(select(func.count()).select_from(Reservation)
                                        .where(Reservation.status == "pending"))
            db.session.rollback()
            return pending == 0

    wait_for(all_final, timeout=90, interval=0.5, message="every reservation held or rejected")

    def confirm(item):
        user, rid = item
        r = requests.post(f"{base}/tickets/{rid}/confirm", json={"payment_token": "tok_ok"},
                          headers=user["headers"], timeout=30)
        return r.status_code

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(confirm, accepted))
    assert set(codes) <= {200, 409}

    with app.app_context():
        ga_row = db.session.get(Section, ga["id"])
        assert ga_row.sold == 50 and ga_row.held == 0  # exactly the capacity, never more
        confirmed_ga = db.session.scalar(select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
            Reservation.section_id == ga["id"], Reservation.status == "confirmed"))
        assert confirmed_ga == 50
        sold = db.session.execute(select(Seat.id, Seat.reservation_id).where(
            Seat.section_id == seated["id"], Seat.state == "sold")).all()
        confirmed = db.session.scalars(select(Reservation).where(Reservation.section_id == seated["id"],
                                                                 Reservation.status == "confirmed")).all()
        claimed = [seat for r in confirmed for seat in r.seat_ids]
        assert len(claimed) == len(set(claimed)), "a seat was sold twice"
        assert sorted(claimed) == sorted(seat for seat, _ in sold)
        assert {rid for _, rid in sold} == {r.id for r in confirmed}
        assert len(sold) >= 26  # disjoint pairs of 50 seats: at least half can always be sold
        for section_id in (ga["id"], seated["id"]):
            section = db.session.get(Section, section_id)
            gate = int(redis_store.client.get(gate_key(event["id"], section_id)))
            assert gate == expected_units(section), (section_id, gate)  # MySQL and Redis agree
        db.session.rollback()


def pending_reservation(app, event_id: int, section_id: int, user_id: int, quantity: int) -> str:
    """A pending reservation whose hold task was not sent: the test delivers it itself."""
    from app.booking.services import ReserveRequest, request_reservation
    from app.queue.services import admit_now, join, status

    app.config["CELERY_ENABLED"] = False
    try:
        with app.test_request_context():
            join(event_id, user_id)
            admit_now(event_id, 1)
            token = status(event_id, user_id).admission_token
            request = ReserveRequest(user_id, event_id, section_id, quantity, None, uuid.uuid4().hex, token)
            return request_reservation(request)[0].id
    finally:
        app.config["CELERY_ENABLED"] = True


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("mysql"),
                    reason="row locks held across connections need MySQL/MariaDB (CI runs this)")
def test_killed_worker_redelivers_and_yields_one_hold(app, make_event, make_user):
    from tasks.celery_app import celery

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    rid = pending_reservation(app, event["id"], section["id"], make_user()["id"], quantity=2)

    # a worker of our own on a private queue, so that we know which process to kill
    queue = f"killtest-{uuid.uuid4().hex[:6]}"
    victim = start_worker(concurrency=1, name="victim", queues=queue)
    locker = db.engine.connect()
    trans = locker.begin()
    try:
        # hold the section row so the task blocks inside its transaction
        locker.execute(text("SELECT id FROM sections WHERE id = :id FOR UPDATE"), {"id": section["id"]})
        celery.send_task("booking.hold", args=[rid], queue=queue)
        wait_for(lambda: "booking.hold" in victim.output(), timeout=20, message="task received")
        time.sleep(1.0)  # the child now waits on our row lock, mid-task
        children = victim.children()
        assert children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "WorkerLostError" in victim.output() or "exited prematurely" in victim.output(),
                 timeout=20, message="worker lost")
        with app.app_context():
            assert db.session.get(Reservation, rid).status == "pending"  # the killed attempt left nothing
            db.session.rollback()
    finally:
        trans.rollback()
        locker.close()

    def held() -> bool:
        with app.app_context():
            status_ = db.session.get(Reservation, rid).status
            db.session.rollback()
            return status_ == "held"

    try:
        wait_for(held, timeout=60, interval=0.5, message="redelivered hold")
        with app.app_context():
            assert db.session.get(Section, section["id"]).held == 2  # exactly one hold
            assert db.session.query(Reservation).count() == 1
            db.session.rollback()
    finally:
        victim.stop()


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("mysql"),
                    reason="lock wait timeouts need MySQL/MariaDB (CI runs this)")
def test_lock_timeouts_end_in_rejected_busy_never_stuck_pending(app, make_event, make_user):
    from tasks.booking import MAX_BUSY_RETRIES, hold

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    rid = pending_reservation(app, event["id"], section["id"], make_user()["id"], quantity=1)
    locker = db.engine.connect()
    trans = locker.begin()
    try:
        locker.execute(text("SELECT id FROM sections WHERE id = :id FOR UPDATE"), {"id": section["id"]})
        with app.app_context():
            # the last allowed attempt: a lock wait timeout now rejects instead of retrying again
            result = hold.apply(args=[rid], retries=MAX_BUSY_RETRIES, throw=True)
    finally:
        trans.rollback()
        locker.close()
    assert result.get() == "rejected"
    with app.app_context():
        res = db.session.get(Reservation, rid)
        assert (res.status, res.reason) == ("rejected", "busy")
        db.session.rollback()


def test_reconciler_rederives_the_gate_and_reports_drift(app, make_event):
    from app.booking.gate import gate_key, reconcile
    from app.extensions import redis_store
    from app.observability.metrics import GATE_DRIFT

    event = make_event(sections=[{"name": "Floor", "capacity": 7}])
    section_id = event["sections"][0]["id"]
    before = GATE_DRIFT._value.get()
    with app.app_context():
        redis_store.client.set(gate_key(event["id"], section_id), 3)  # drifted low: would refuse buyers
        assert reconcile([event["id"]]) == {section_id: -4}
        assert int(redis_store.client.get(gate_key(event["id"], section_id))) == 7
        assert reconcile([event["id"]]) == {}
    assert GATE_DRIFT._value.get() - before == 4
