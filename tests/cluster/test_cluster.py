"""The waiting room and the booking path on a 3-master Redis Cluster: every Lua script stays in one
slot, no oversell, two sales on two nodes advance independently, and a master killed mid-sale
gives its sale's users clear 503s (and nothing sold twice) while the other sale goes on."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import requests
from redis.crc import key_slot
from sqlalchemy import func, select

from tests.helpers import admitted_pass, advance, wait_reservation
from tests.support import wait_for


def _reserve(client, event_id: int, section_id: int, user: dict[str, Any], quantity: int = 1, **headers: str):
    return client.post("/api/tickets/reserve", json={"event_id": event_id, "section_id": section_id,
                                                      "quantity": quantity},
                       headers={**user["headers"], "Idempotency-Key": uuid.uuid4().hex, **headers})


@pytest.fixture()
def script_calls(monkeypatch) -> list[tuple[str, list[str]]]:
    """Every Lua script call made in this process: (script source's first line, its keys)."""
    from redis.commands.core import Script

    calls: list[tuple[str, list[str]]] = []
    real = Script.__call__

    def recording(self: Script, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        calls.append((self.script, list(keys or [])))
        return real(self, keys=keys, args=args, client=client)

    monkeypatch.setattr(Script, "__call__", recording)
    return calls


def test_every_script_keeps_to_one_slot_through_a_whole_sale(app, client, admin, make_event, make_user,
                                                             script_calls):
    from flask_jwt_extended import decode_token

    from app import verification
    from app.auth import sessions
    from app.booking import flows
    from app.booking.writer import HoldWriter
    from app.inventory import gate
    from app.notifications import flows as notices
    from app.queue import services, streams
    from app.queue.draws import draw_prequeue
    from app.redis import calls, scripts
    from app.redis.keys import QueueKeys

    event = make_event(sections=[{"name": "Floor", "capacity": 2}], admit_per_minute=6000)
    eid, sid = event["id"], event["sections"][0]["id"]
    buyers = [make_user() for _ in range(4)]
    passes = [admitted_pass(client, app, eid, u) for u in buyers]  # JOIN, STATUS, ADVANCE
    writer = HoldWriter(app, name="test-writer")
    r1 = _reserve(client, eid, sid, buyers[0], **{"X-Admission-Token": passes[0]})
    r2 = _reserve(client, eid, sid, buyers[1], **{"X-Admission-Token": passes[1]})
    assert r1.status_code == r2.status_code == 202, (r1.json, r2.json)
    with app.app_context():
        writer.drain()
    rid1, rid2 = r1.json["reservation_id"], r2.json["reservation_id"]
    assert wait_reservation(client, buyers[0], rid1)["status"] == "held"
    # sold out: the third buyer waits on the waitlist; the first cancels and the unit is offered
    sold_out = _reserve(client, eid, sid, buyers[2], **{"X-Admission-Token": passes[2]})
    assert sold_out.status_code == 409 and sold_out.json["reason"] == "sold_out"
    joined = client.post(f"/api/events/{eid}/sections/{sid}/waitlist", json={"quantity": 1},
                         headers=buyers[2]["headers"])
    assert joined.status_code == 201, joined.json
    client.post(f"/api/events/{eid}/sections/{sid}/waitlist", json={"quantity": 1}, headers=buyers[3]["headers"])
    assert client.post(f"/api/tickets/{rid1}/cancel", headers=buyers[0]["headers"]).status_code == 200
    with app.app_context():
        flows.tick()  # EXPIRE_OFFERS, MAKE_OFFERS
    offer = client.get(f"/api/events/{eid}/sections/{sid}/waitlist", headers=buyers[2]["headers"]).json
    claim = _reserve(client, eid, sid, buyers[2], **{"X-Offer-Token": offer["offer"]["offer_token"]})
    assert claim.status_code == 202, claim.json  # CLAIM_OFFER
    assert client.delete(f"/api/events/{eid}/sections/{sid}/waitlist",
                         headers=buyers[3]["headers"]).status_code == 204  # LEAVE_WAITLIST, DECLINE_OFFER
    assert client.post(f"/api/tickets/{rid2}/confirm", json={"payment_token": "tok_ok_visa"},
                       headers=buyers[1]["headers"]).status_code == 200  # RELEASE_HOLD
    assert client.delete(f"/api/queue/{eid}", headers=buyers[3]["headers"]).status_code in {200, 204}  # LEAVE
    raised = client.patch(f"/api/events/{eid}/sections/{sid}", json={"capacity": 3}, headers=admin["headers"])
    assert raised.status_code == 200  # GIVE
    with app.app_context():
        writer.drain()
        gate.reconcile([eid])  # RESET
        draw_prequeue(eid)  # SHUFFLE
        streams.open_lease(eid, buyers[0]["id"])  # OPEN_STREAM
        # SERVING, as a stream process's ticker calls it: its lease and its fans' heartbeats too
        keys = QueueKeys(eid)
        services.serving(eid, calls.ProcessLease.of(keys, streams.process_id(),
                                                 time.time() + 30, 60), [buyers[0]["id"]])
        verification.check(f"email:{buyers[0]['id']}", verification.issue(f"email:{buyers[0]['id']}"))
        _sid, refresh = sessions.start(buyers[0]["id"])
        sessions.rotate(buyers[0]["id"], decode_token(refresh))  # ROTATE_SESSION
        notices.forget_owed_notices(eid, [(buyers[0]["id"], 1.0)])  # FORGET_NOTICES
    calls = [(source, keys) for source, keys in script_calls if keys]
    cross = [(source.strip().splitlines()[0], keys) for source, keys in calls
             if len({key_slot(k.encode()) for k in keys}) > 1]
    assert cross == []
    registry = {name: text for name, text in vars(scripts).items()
                if name.isupper() and not name.startswith("_") and isinstance(text, str)}
    called = {name for name, text in registry.items() if any(source == text for source, _ in calls)}
    assert set(registry) - called == set()  # every script of the registry ran here, each on one slot


def test_no_oversell_when_200_buyers_race_for_20_tickets(app, client, live_api, worker, make_event, make_user):
    from app.booking.models import Reservation
    from app.catalogue.models import Section
    from app.extensions import db

    event = make_event(sections=[{"name": "Floor", "capacity": 20}], admit_per_minute=60000, max_active=1000)
    eid, sid = event["id"], event["sections"][0]["id"]
    buyers = [make_user() for _ in range(200)]
    for u in buyers:
        assert client.post(f"/api/queue/{eid}/join", headers=u["headers"]).status_code == 202
    advance(app, eid, force=200)
    passes = [client.get(f"/api/queue/{eid}/status", headers=u["headers"]).json["admission_token"] for u in buyers]
    answers: list[int] = []

    def buy(u: dict[str, Any], token: str) -> None:
        r = requests.post(f"{live_api.url}/api/tickets/reserve", json={"event_id": eid, "section_id": sid,
                                                                       "quantity": 1},
                          headers={**u["headers"], "Idempotency-Key": uuid.uuid4().hex,
                                   "X-Admission-Token": token}, timeout=30)
        answers.append(r.status_code)

    threads = [threading.Thread(target=buy, args=pair) for pair in zip(buyers, passes, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count(202) == 20 and answers.count(409) == 180, sorted(set(answers))

    def settled() -> bool:
        with app.app_context():
            held = db.session.scalar(select(func.count(Reservation.id)).where(Reservation.status == "held"))
            db.session.rollback()
            return held == 20

    wait_for(settled, timeout=30, message="20 holds written")
    with app.app_context():
        section = db.session.get(Section, sid)
        assert section.held == 20 and section.held + section.sold <= section.capacity
        db.session.rollback()


def _events_on_two_nodes(make_event) -> tuple[dict, dict]:
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    client = redis_store.client
    first = make_event(sections=[{"name": "Floor", "capacity": 10}], admit_per_minute=6000)
    node = client.get_node_from_key(QueueKeys(first["id"]).line).port
    for _ in range(20):
        other = make_event(sections=[{"name": "Floor", "capacity": 10}], admit_per_minute=6000)
        if client.get_node_from_key(QueueKeys(other["id"]).line).port != node:
            return first, other
    raise AssertionError("20 events all hashed to one node")


def test_two_sales_on_two_nodes_advance_independently_and_a_dead_master_stops_only_its_sale(
        app, client, cluster, make_event, make_user):
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    a, b = _events_on_two_nodes(make_event)
    a_node = redis_store.client.get_node_from_key(QueueKeys(a["id"]).line).port
    fans_a = [make_user() for _ in range(3)]
    fans_b = [make_user() for _ in range(3)]
    for u in fans_a:
        assert client.post(f"/api/queue/{a['id']}/join", headers=u["headers"]).status_code == 202
    for u in fans_b:
        assert client.post(f"/api/queue/{b['id']}/join", headers=u["headers"]).status_code == 202
    assert advance(app, a["id"], force=2).status == "ok"  # only sale A moves
    states_a = [client.get(f"/api/queue/{a['id']}/status", headers=u["headers"]).json["status"] for u in fans_a]
    states_b = [client.get(f"/api/queue/{b['id']}/status", headers=u["headers"]).json["status"] for u in fans_b]
    assert states_a.count("admitted") == 2 and states_b.count("admitted") == 0

    cluster.kill(a_node)  # sale A's master dies mid-sale (no replica here)
    try:
        down = client.get(f"/api/queue/{a['id']}/status", headers=fans_a[2]["headers"])
        assert down.status_code == 503 and down.json["reason"] == "unavailable", down.json
        assert down.headers.get("Retry-After")
        late = make_user()
        assert client.post(f"/api/queue/{a['id']}/join", headers=late["headers"]).status_code == 503
        # sale B lives on another master: it is served and advances as if nothing happened
        assert advance(app, b["id"], force=1).status == "ok"
        after = [client.get(f"/api/queue/{b['id']}/status", headers=u["headers"]) for u in fans_b]
        assert [r.status_code for r in after] == [200, 200, 200]
        assert [r.json["status"] for r in after].count("admitted") == 1
    finally:
        cluster.restart(a_node)
    # the master is back with its slots (its data was in memory only: a replica is the production answer)
    wait_for(lambda: client.get(f"/api/queue/{a['id']}/status", headers=fans_a[0]["headers"]).status_code != 503,
             timeout=30, message="sale A served again")


def test_a_master_killed_during_a_burst_never_oversells(app, client, live_api, worker, cluster, make_event,
                                                        make_user):
    from app.booking.models import Reservation
    from app.catalogue.models import Section
    from app.extensions import db, redis_store
    from app.redis.keys import QueueKeys

    event = make_event(sections=[{"name": "Floor", "capacity": 15}], admit_per_minute=60000, max_active=1000)
    eid, sid = event["id"], event["sections"][0]["id"]
    node = redis_store.client.get_node_from_key(QueueKeys(eid).line).port
    buyers = [make_user() for _ in range(60)]
    for u in buyers:
        client.post(f"/api/queue/{eid}/join", headers=u["headers"])
    advance(app, eid, force=60)
    passes = [client.get(f"/api/queue/{eid}/status", headers=u["headers"]).json["admission_token"] for u in buyers]
    answers: list[tuple[int, str]] = []

    def buy(u: dict[str, Any], token: str) -> None:
        try:
            r = requests.post(f"{live_api.url}/api/tickets/reserve",
                              json={"event_id": eid, "section_id": sid, "quantity": 1},
                              headers={**u["headers"], "Idempotency-Key": uuid.uuid4().hex,
                                       "X-Admission-Token": token}, timeout=30)
            answers.append((r.status_code, r.json().get("reason", "")))
        except requests.RequestException as exc:
            answers.append((0, type(exc).__name__))

    threads = [threading.Thread(target=buy, args=pair) for pair in zip(buyers, passes, strict=True)]
    for i, t in enumerate(threads):
        t.start()
        if i == 20:
            cluster.kill(node)  # the sale's master dies a third of the way into the burst
    for t in threads:
        t.join()
    cluster.restart(node)
    codes = {code for code, _ in answers}
    assert codes <= {202, 409, 503}, answers  # every answer is one a client understands: no 500
    assert any(code == 503 for code, _ in answers)
    assert all(reason == "unavailable" for code, reason in answers if code == 503)
    time.sleep(3)  # whatever the writer could still read is written by now
    with app.app_context():
        section = db.session.get(Section, sid)
        holds = db.session.scalar(select(func.count(Reservation.id)).where(Reservation.section_id == sid))
        assert section.held + section.sold <= section.capacity
        assert holds <= section.capacity
        db.session.rollback()


def test_a_worker_killed_mid_burst_loses_no_accepted_request(app, client, live_api, worker, make_event, make_user):
    import signal

    from tests.cluster import conftest
    from tests.support import start_worker

    event = make_event(sections=[{"name": "Floor", "capacity": 40}], admit_per_minute=60000, max_active=1000)
    eid, sid = event["id"], event["sections"][0]["id"]
    buyers = [make_user() for _ in range(40)]
    for u in buyers:
        client.post(f"/api/queue/{eid}/join", headers=u["headers"])
    advance(app, eid, force=40)
    accepted: list[tuple[dict, str]] = []
    for u in buyers:
        token = client.get(f"/api/queue/{eid}/status", headers=u["headers"]).json["admission_token"]
        r = requests.post(f"{live_api.url}/api/tickets/reserve", json={"event_id": eid, "section_id": sid,
                                                                       "quantity": 1},
                          headers={**u["headers"], "Idempotency-Key": uuid.uuid4().hex,
                                   "X-Admission-Token": token}, timeout=30)
        assert r.status_code == 202, r.json()
        accepted.append((u, r.json()["reservation_id"]))
        if len(accepted) == 20:
            worker.stop(signal.SIGKILL)  # the hold writer dies with the burst half-written
    conftest._state["worker"] = start_worker(name="cluster-worker-2")  # its successor claims the rest
    for user, rid in accepted:
        assert wait_reservation(client, user, rid, timeout=60)["status"] == "held"
