"""Concurrency: the oversell stress through the real API and worker, killed writer and killed API
processes, and one Idempotency-Key sent 30 times at once."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select, text

from app.booking.models import Reservation
from app.catalogue.models import Seat, Section
from app.extensions import db
from tests.support import start_worker, wait_for


def test_no_oversell_under_200_concurrent_buyers(app, live_api, worker, make_event, make_user):
    from app.extensions import redis_store
    from app.inventory.gate import expected_units, gate_key
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

    def all_final() -> bool:  # every accepted request written by the hold writer, held or rejected
        with app.app_context():
            written = db.session.scalar(select(func.count()).select_from(Reservation)
                                        .where(Reservation.status.in_(("held", "rejected"))))
            db.session.rollback()
            return written == len(accepted)

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
        # nobody was turned away for nothing: every refused pair overlaps a seat that was sold
        # (a count such as "at least 26 seats" is not a guarantee: how many disjoint pairs fit
        # depends on the order in which overlapping requests arrive)
        sold_ids = {seat for seat, _ in sold}
        refused = db.session.scalars(select(Reservation).where(Reservation.section_id == seated["id"],
                                                               Reservation.status == "rejected")).all()
        assert refused and all(r.reason == "seats_unavailable" for r in refused)
        assert all(set(r.seat_ids) & sold_ids for r in refused), [r.seat_ids for r in refused
                                                                   if not set(r.seat_ids) & sold_ids]
        assert len(sold) >= 2
        for section_id in (ga["id"], seated["id"]):
            section = db.session.get(Section, section_id)
            gate = int(redis_store.client.get(gate_key(event["id"], section_id)))
            assert gate == expected_units(section), (section_id, gate)  # MySQL and Redis agree
        db.session.rollback()


def test_killed_writer_loses_nothing_and_yields_one_hold(app, make_event, make_user):
    """SIGKILL the worker whose hold writer is mid-batch (blocked inside its transaction): nothing
    is written, the entry stays pending in the consumer group, and another worker claims it and
    writes exactly one hold. The writers of this test use a Redis db of their own (the spare), so the session's
    worker cannot take the entry first."""


    from app.booking.writer import GROUP
    from app.redis.keys import QueueKeys
    from tests.integration.test_booking import accepted_record, leave_for_the_writers, spare_redis

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    record = accepted_record(event["id"], section["id"], make_user()["id"], quantity=2)
    private_url, private = spare_redis()
    keys = QueueKeys(event["id"])
    leave_for_the_writers(private, record)
    env = {"REDIS_URL": private_url, "HOLD_WRITER_CLAIM_IDLE_MS": "1000"}

    def own_worker(name: str):
        return start_worker(concurrency=1, name=name, queues=f"booking,{name}-{uuid.uuid4().hex[:6]}", env=env)

    locker = db.engine.connect()
    trans = locker.begin()
    try:
        # hold the section row so the writer blocks inside its transaction
        locker.execute(text("SELECT id FROM sections WHERE id = :id FOR UPDATE"), {"id": section["id"]})
        victim = own_worker("victim")
        wait_for(lambda: private.xpending(keys.reserve_stream(), GROUP)["pending"] == 1, timeout=20,
                 message="the writer read the entry")
        time.sleep(1.0)  # it now waits on our row lock, mid-transaction
        victim.stop(signal.SIGKILL)
        with app.app_context():
            assert db.session.get(Reservation, record["id"]) is None  # the killed attempt left nothing
            db.session.rollback()
    finally:
        trans.rollback()
        locker.close()

    rescuer = own_worker("rescuer")

    def held() -> bool:
        with app.app_context():
            res = db.session.get(Reservation, record["id"])
            db.session.rollback()
            return res is not None and res.status == "held"

    try:
        wait_for(held, timeout=60, interval=0.5, message="the claimed entry written")
        wait_for(lambda: private.xpending(keys.reserve_stream(), GROUP)["pending"] == 0, timeout=10,
                 message="the entry acknowledged")
        with app.app_context():
            assert db.session.get(Section, section["id"]).held == 2  # exactly one hold
            assert db.session.query(Reservation).count() == 1
            db.session.rollback()
        assert private.hlen(keys.pending()) == 0
    finally:
        rescuer.stop()
        private.flushdb()


def test_30_identical_requests_with_one_key_give_one_reservation(app, live_api, worker, make_event, make_user):
    """The same Idempotency-Key sent 30 times at once: one reservation, the same answer to all, no
    5xx, and the gate gives up the units once."""
    from app.extensions import redis_store
    from app.inventory.gate import gate_key
    from tests.helpers import admitted_pass

    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    section = event["sections"][0]
    user = make_user()
    token = admitted_pass(app.test_client(), app, event["id"], user)
    headers = {**user["headers"], "X-Admission-Token": token, "Idempotency-Key": "same-key-30"}
    body = {"event_id": event["id"], "section_id": section["id"], "quantity": 2}
    with ThreadPoolExecutor(30) as pool:
        replies = list(pool.map(lambda _: requests.post(f"{live_api.url}/api/tickets/reserve", json=body,
                                                        headers=headers, timeout=30), range(30)))
    assert {r.status_code for r in replies} == {202}
    assert len({r.json()["reservation_id"] for r in replies}) == 1

    def written() -> bool:
        with app.app_context():
            n = db.session.query(Reservation).count()
            db.session.rollback()
            return n == 1

    wait_for(written, timeout=20, message="the one reservation written")
    with app.app_context():
        assert db.session.scalar(select(Reservation.status)) == "held"
        assert int(redis_store.client.get(gate_key(event["id"], section["id"]))) == 8
        db.session.rollback()


def test_killed_api_loses_no_accepted_request(app, worker, make_event, make_user):
    """SIGKILL gunicorn (master and workers) while buyers reserve: every request that was answered
    202 is written; none is lost with the process."""
    from app.queue.services import admit_now, join, status
    from tests.support import LiveApi

    event = make_event(sections=[{"name": "Floor", "capacity": 1000}], admit_per_minute=60000)
    section = event["sections"][0]
    buyers = [make_user() for _ in range(60)]
    with app.test_request_context():
        for b in buyers:
            join(event["id"], b["id"])
        admit_now(event["id"], len(buyers))
        passes = [status(event["id"], b["id"]).admission_token for b in buyers]
    api = LiveApi()
    accepted: list[str] = []

    def buy(i: int) -> None:
        headers = {**buyers[i]["headers"], "X-Admission-Token": passes[i], "Idempotency-Key": uuid.uuid4().hex}
        try:
            r = requests.post(f"{api.url}/api/tickets/reserve", headers=headers, timeout=10,
                              json={"event_id": event["id"], "section_id": section["id"], "quantity": 1})
        except requests.RequestException:
            return  # the process died under this request: not accepted as far as the buyer knows
        if r.status_code == 202:
            accepted.append(r.json()["reservation_id"])

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(buy, i) for i in range(len(buyers))]
            wait_for(lambda: len(accepted) >= 10, timeout=30, message="some requests accepted")
            os.killpg(api.proc.pid, signal.SIGKILL)
            for f in futures:
                f.result()
    finally:
        api.stop()
    assert accepted

    def all_written() -> bool:
        with app.app_context():
            found = set(db.session.scalars(select(Reservation.id).where(Reservation.id.in_(accepted))))
            db.session.rollback()
            return found == set(accepted)

    wait_for(all_written, timeout=30, interval=0.5, message="every accepted request written")


def test_reconciler_rederives_the_gate_and_reports_drift(app, make_event):
    from app.extensions import redis_store
    from app.inventory.gate import gate_key, reconcile
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
