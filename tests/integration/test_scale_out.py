"""Every process run more than once against one stack: two REST servers and two workers sell
exactly the capacity; of two beats the stand-by takes over when the active one is SIGKILLed; two
outbox relays publish each event once, in order per aggregate."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from typing import Any

import requests
from sqlalchemy import func, select

from tests.helpers import advance
from tests.integration.test_outbox_kafka import consume
from tests.support import CeleryProcess, LiveApi, start_worker, wait_for


def test_two_apis_and_two_workers_sell_exactly_the_capacity(app, client, live_api, worker, make_event, make_user):
    from app.booking.models import Reservation
    from app.catalogue.models import Section
    from app.extensions import db

    second_api, second_worker = LiveApi(), start_worker(name="second")
    try:
        event = make_event(sections=[{"name": "Floor", "capacity": 30}], admit_per_minute=60000, max_active=1000)
        eid, sid = event["id"], event["sections"][0]["id"]
        buyers = [make_user() for _ in range(120)]
        for u in buyers:
            assert client.post(f"/api/queue/{eid}/join", headers=u["headers"]).status_code == 202
        advance(app, eid, force=120)
        passes = [client.get(f"/api/queue/{eid}/status", headers=u["headers"]).json["admission_token"]
                  for u in buyers]
        answers: list[int] = []

        def buy(i: int) -> None:
            base = (live_api, second_api)[i % 2].url  # the load balancer alternates
            r = requests.post(f"{base}/api/tickets/reserve", json={"event_id": eid, "section_id": sid, "quantity": 1},
                              headers={**buyers[i]["headers"], "Idempotency-Key": uuid.uuid4().hex,
                                       "X-Admission-Token": passes[i]}, timeout=30)
            answers.append(r.status_code)

        threads = [threading.Thread(target=buy, args=(i,)) for i in range(len(buyers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers.count(202) == 30 and answers.count(409) == 90, sorted(set(answers))

        def held() -> int:
            with app.app_context():
                n = db.session.scalar(select(func.count(Reservation.id)).where(Reservation.section_id == sid,
                                                                              Reservation.status == "held"))
                db.session.rollback()
                return n

        wait_for(lambda: held() == 30, timeout=30, message="30 holds, written by either worker")
        with app.app_context():
            section = db.session.get(Section, sid)
            assert section.held == 30 and section.sold == 0
            db.session.rollback()
    finally:
        second_api.stop()
        second_worker.stop()


def test_the_stand_by_beat_takes_over_within_its_lock_timeout_when_the_active_one_is_sigkilled(app):
    from app.settings import process_settings
    from celeryconfig import celery_settings

    lock_timeout = celery_settings(process_settings())["redbeat_lock_timeout"]
    env = {"REDBEAT_KEY_PREFIX": f"redbeat-takeover-{time.time_ns()}:"}
    beats = [CeleryProcess(["beat", "-l", "INFO", "--pidfile="], env=env, name=f"takeover{i}") for i in range(2)]

    def sent(beat: CeleryProcess) -> int:
        return beat.output().count("Sending due task advance-waiting-rooms")

    try:
        wait_for(lambda: any(sent(b) >= 2 for b in beats), timeout=40, message="one beat scheduling")
        active = next(b for b in beats if sent(b) >= 2)
        standby = next(b for b in beats if b is not active)
        assert sent(standby) == 0  # single-scheduled: the stand-by waits on RedBeat's lock
        active.stop(signal.SIGKILL)  # no clean release: the lock must expire
        killed_at = time.monotonic()
        wait_for(lambda: sent(standby) > 0, timeout=lock_timeout + 20, interval=0.2, message="the stand-by's takeover")
        took = time.monotonic() - killed_at
        assert took <= lock_timeout + 5, took  # its lock timeout, plus one loop of the stand-by
    finally:
        for b in beats:
            b.stop()


def test_two_relays_publish_each_event_once_and_in_order_per_aggregate(app, tansu):
    from app.db import transaction
    from app.outbox.relay import RelayError, relay
    from app.outbox.services import record_event

    run = uuid.uuid4().hex[:8]
    aggregates = [f"{run}-{i}" for i in range(8)]
    per_aggregate = 25
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:  # each aggregate's events in sequence, interleaved, while the relays run
        with app.app_context():
            for seq in range(per_aggregate):
                with transaction() as session:
                    for agg in aggregates:
                        record_event(session, "ScaleOutProbe", "reservation", agg, {"seq": seq})
                time.sleep(0.01)

    def relay_loop() -> None:
        with app.app_context():
            while not stop.is_set():
                try:
                    relay(batch=7, max_batches=3)
                except RelayError as exc:
                    errors.append(exc)
                time.sleep(0.005)

    relays = [threading.Thread(target=relay_loop) for _ in range(2)]
    producer = threading.Thread(target=produce)
    for t in (*relays, producer):
        t.start()
    producer.join()

    def all_published() -> bool:
        from app.extensions import db
        from app.outbox.models import OutboxEvent

        with app.app_context():
            left = db.session.scalar(select(func.count(OutboxEvent.id)).where(OutboxEvent.published_at.is_(None)))
            db.session.rollback()
            return left == 0

    try:
        wait_for(all_published, timeout=60, message="every probe published")
    finally:
        stop.set()
        for t in relays:
            t.join()
    assert errors == []
    seen: dict[str, list[int]] = {agg: [] for agg in aggregates}
    messages: list[dict[str, Any]] = consume(tansu.bootstrap, "tickets.reservations", timeout_ms=5000)
    for m in messages:
        if m["key"] in seen:
            seen[m["key"]].append(m["data"]["seq"])
    assert seen == {agg: list(range(per_aggregate)) for agg in aggregates}  # once each, in order
