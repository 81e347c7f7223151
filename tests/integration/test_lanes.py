"""Presale codes and priority lanes (issue #31): an organiser makes a lane and a batch of codes,
fans redeem them at join, the presale opens first and is then served at its share beside the
general line, a VIP section is its fans' alone until its release, and codes cannot be guessed or
shared beyond their uses."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from app.db import utcnow
from tests.helpers import advance, events_of
from tests.support import wait_for


def _sale(client, admin) -> dict:
    opens = utcnow() + timedelta(minutes=30)
    r = client.post("/api/events", headers=admin["headers"], json={
        "name": "Presale night", "venue": "Arena", "starts_at": (opens + timedelta(days=5)).isoformat(),
        "sale_opens_at": opens.isoformat(), "admit_per_minute": 600, "max_active": 1000, "prequeue_minutes": 60,
        "max_per_user": 4})
    assert r.status_code == 201, r.json
    event_id = r.json["id"]
    general = client.post(f"/api/events/{event_id}/sections", headers=admin["headers"],
                          json={"name": "Floor", "capacity": 200, "price_cents": 5000, "currency": "EUR"})
    vip = client.post(f"/api/events/{event_id}/sections", headers=admin["headers"],
                      json={"name": "VIP", "capacity": 20, "price_cents": 20000, "currency": "EUR"})
    assert general.status_code == vip.status_code == 201, (general.json, vip.json)
    return {"id": event_id, "floor": general.json["id"], "vip": vip.json["id"]}


def _join(client, event_id: int, fan: dict, code: str | None = None):
    """A join as a client does it: again after a 429 rate_limited (the per-second limit, which
    comes before any code is looked at)."""
    def answered():
        r = client.post(f"/api/queue/{event_id}/join", headers=fan["headers"], json={"code": code} if code else None)
        return None if r.status_code == 429 and r.json["reason"] == "rate_limited" else r

    return wait_for(answered, timeout=10, interval=0.05, message="a join past the per-second limit")


def _reserve(client, event_id: int, section_id: int, fan: dict, token: str, quantity: int = 1):
    return client.post("/api/tickets/reserve", json={"event_id": event_id, "section_id": section_id,
                                                     "quantity": quantity},
                       headers={**fan["headers"], "X-Admission-Token": token, "Idempotency-Key": str(uuid.uuid4())})


def test_a_presale_lane_opens_first_is_served_at_its_share_and_keeps_its_vip_section_until_released(
        app, client, admin, make_user):
    sale = _sale(client, admin)
    event_id = sale["id"]
    lane = client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"], json={
        "name": "presale", "share_percent": 30, "opens_at": (utcnow() + timedelta(minutes=10)).isoformat(),
        "sections": [sale["vip"]], "sections_released_at": (utcnow() + timedelta(days=1)).isoformat()})
    assert lane.status_code == 201, lane.json
    assert lane.json["sections"] == [sale["vip"]] and lane.json["share_percent"] == 30
    too_much = client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"],
                           json={"name": "fanclub", "share_percent": 61})
    assert too_much.status_code == 422 and too_much.json["reason"] == "share_too_large"
    assert client.post(f"/api/events/{event_id}/lanes", headers=make_user()["headers"],
                       json={"name": "x", "share_percent": 5}).status_code == 403

    batch = client.post(f"/api/events/{event_id}/codes", headers=admin["headers"],
                        json={"lane": "presale", "count": 12, "ticket_limit": 2, "batch": "fanclub-1"})
    assert batch.status_code == 201, batch.json
    codes = [c["code"] for c in batch.json["codes"]]
    assert len(set(codes)) == 12 and batch.json["batch"] == "fanclub-1"
    assert client.post(f"/api/events/{event_id}/codes", headers=admin["headers"],
                       json={"lane": "nope", "count": 1}).json["reason"] == "lane_not_found"

    presale = [make_user() for _ in range(12)]
    general = [make_user() for _ in range(20)]
    for fan, code in zip(presale, codes, strict=True):
        # typed as a fan would: lower case, spaces instead of dashes
        joined = _join(client, event_id, fan, code.lower().replace("-", " "))
        assert joined.status_code == 202, joined.json
        assert joined.json["reason"] == "pre_queue" and joined.json["lane"] == "presale"
        assert joined.json["ticket_limit"] == 2
    for fan in general:
        joined = _join(client, event_id, fan)
        assert joined.status_code == 202 and joined.json["lane"] is None
    # a used single-use code is refused to someone else, with its reason
    again = _join(client, event_id, make_user(), codes[0])
    assert again.status_code == 409 and again.json["reason"] == "access_code_used_up"

    # the presale opens: the draw places everyone, and only the presale lane is served
    opened = client.patch(f"/api/events/{event_id}/lanes/presale", headers=admin["headers"],
                          json={"opens_at": utcnow().isoformat()})
    assert opened.status_code == 200, opened.json
    step = advance(app, event_id, force=5)
    assert step.shuffled == 32
    served_first = set(step.admitted)
    presale_ids, general_ids = {fan["id"] for fan in presale}, {fan["id"] for fan in general}
    assert len(step.admitted) == 5 and set(step.admitted) <= presale_ids
    # each line counts its own fans: 7 presale fans wait, numbered 1..7 in the drawn order
    positions = sorted(client.get(f"/api/queue/{event_id}/status", headers=fan["headers"]).json["position"]
                       for fan in presale if fan["id"] not in step.admitted)
    assert positions == list(range(1, 8))
    # the console counts everyone waiting: 7 in the presale lane, 20 in the general line
    assert client.get(f"/api/queue/{event_id}/stats", headers=admin["headers"]).json["waiting"] == 27
    waiting_general = client.get(f"/api/queue/{event_id}/status", headers=general[0]["headers"]).json
    assert waiting_general["status"] == "waiting" and 1 <= waiting_general["position"] <= 20
    assert waiting_general["line_number"] is not None  # the general line keeps its signed place
    assert waiting_general["eta_seconds"] >= 25 * 60  # it moves from the sale's opening, 30 minutes away
    # the public figures are the general line's: served at 70 % of the rate while the presale holds anyone
    assert client.get(f"/api/queue/{event_id}/serving").json["configured_admit_per_minute"] == 420

    # the sale opens: both lines are served, the presale at its 30 % while it holds anyone
    assert client.patch(f"/api/queue/{event_id}", headers=admin["headers"],
                        json={"sale_opens_at": utcnow().isoformat()}).status_code == 200
    step = advance(app, event_id, force=20)
    from_presale = [user for user in step.admitted if user in presale_ids]
    assert len(step.admitted) == 20 and 5 <= len(from_presale) <= 7, from_presale  # 30 % of 20 is 6
    # whoever is left of either line comes next: 32 fans in all, each admitted once
    rest = advance(app, event_id, force=20).admitted
    assert sorted([*served_first, *step.admitted, *rest]) == sorted(presale_ids | general_ids)

    # the VIP section is the presale's until released; the code's ticket limit holds
    presale_fan = next(fan for fan in presale if fan["id"] in set(step.admitted))
    general_fan = next(fan for fan in general if fan["id"] in set(step.admitted))
    presale_pass = client.get(f"/api/queue/{event_id}/status", headers=presale_fan["headers"]).json
    general_pass = client.get(f"/api/queue/{event_id}/status", headers=general_fan["headers"]).json
    assert presale_pass["status"] == general_pass["status"] == "admitted"
    refused = _reserve(client, event_id, sale["vip"], general_fan, general_pass["admission_token"])
    assert refused.status_code == 403 and refused.json["reason"] == "section_reserved", refused.json
    over = _reserve(client, event_id, sale["vip"], presale_fan, presale_pass["admission_token"], quantity=3)
    assert over.status_code == 422 and over.json["reason"] == "limit_exceeded"
    held = _reserve(client, event_id, sale["vip"], presale_fan, presale_pass["admission_token"], quantity=2)
    assert held.status_code == 202, held.json
    released = client.patch(f"/api/events/{event_id}/lanes/presale", headers=admin["headers"],
                            json={"sections_released_at": utcnow().isoformat()})
    assert released.status_code == 200
    after = _reserve(client, event_id, sale["vip"], general_fan, general_pass["admission_token"])
    assert after.status_code == 202, after.json

    figures = client.get(f"/api/events/{event_id}/lanes", headers=admin["headers"]).json[0]
    assert (figures["redeemed"], figures["admitted"], figures["waiting"]) == (12, 12, 0)


def test_codes_bound_to_an_email_guessing_and_sharing_are_refused(app, client, admin, make_user):
    sale = _sale(client, admin)
    event_id = sale["id"]
    assert client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"],
                       json={"name": "cardholders", "share_percent": 20}).status_code == 201
    owner = make_user()
    bound = client.post(f"/api/events/{event_id}/codes", headers=admin["headers"],
                        json={"lane": "cardholders", "emails": [owner["email"].upper()]}).json["codes"][0]
    shared = client.post(f"/api/events/{event_id}/codes", headers=admin["headers"],
                         json={"lane": "cardholders", "count": 1, "uses": 2}).json["codes"][0]["code"]

    other = make_user()
    r = _join(client, event_id, other, bound["code"])
    assert r.status_code == 403 and r.json["reason"] == "access_code_other_email"
    assert _join(client, event_id, owner, bound["code"]).json["lane"] == "cardholders"

    first, second, third = make_user(), make_user(), make_user()
    assert _join(client, event_id, first, shared).json["lane"] == "cardholders"
    assert _join(client, event_id, second, shared).json["lane"] == "cardholders"
    r = _join(client, event_id, third, shared)
    assert r.status_code == 409 and r.json["reason"] == "access_code_used_up"
    # joining again keeps the lane and spends no use
    assert _join(client, event_id, first, shared).json["lane"] == "cardholders"

    guesser = make_user()
    lefts = []
    for _ in range(9):
        r = _join(client, event_id, guesser, "AAAA-BBBB-CCCC")
        assert r.status_code == 422 and r.json["reason"] == "access_code_invalid"
        lefts.append(r.json["errors"]["attempts_left"])
    assert lefts == list(range(9, 0, -1))
    assert _join(client, event_id, guesser, "AAAA-BBBB-CCCD").status_code == 422
    locked = _join(client, event_id, guesser, shared)
    assert locked.status_code == 429 and locked.json["reason"] == "access_code_attempts_exceeded"
    assert int(locked.headers["Retry-After"]) > 500
    assert _join(client, event_id, guesser).status_code == 202  # the general line stays open to them

    malformed = client.post(f"/api/queue/{event_id}/join", headers=make_user()["headers"], json={"code": ""})
    assert malformed.status_code == 422

    # the record: every redemption in MySQL (drained with its CodeRedeemed event), never a plain code
    with app.app_context():
        from app.extensions import db
        from app.queue.events import drain_sale
        from app.queue.models import AccessCode, CodeRedemption

        drain_sale(event_id)
        assert db.session.scalar(select(func.count()).select_from(CodeRedemption)
                                 .where(CodeRedemption.event_id == event_id)) == 3
        stored = set(db.session.scalars(select(AccessCode.digest).where(AccessCode.event_id == event_id)))
        assert shared not in stored and len(stored) == 2
        db.session.rollback()
    assert sorted(e["user_id"] for e in events_of(app, "CodeRedeemed", event_id)) == sorted(
        [owner["id"], first["id"], second["id"]])
    listed = client.get(f"/api/events/{event_id}/codes", headers=admin["headers"]).json["codes"]
    assert sorted(c["redeemed"] for c in listed) == [1, 2] and all("code" not in c for c in listed)
    lanes = client.get(f"/api/events/{event_id}/lanes", headers=admin["headers"]).json
    assert lanes[0]["redeemed"] == 3 and lanes[0]["codes"] == 2 and lanes[0]["uses"] == 3


def test_a_sale_redis_lost_keeps_each_codes_uses_from_the_mysql_record(app, client, admin, make_user):
    """Redis loses the sale (a restart without persistence): the next join copies the sale back,
    codes included, with the uses MySQL recorded as spent (the drained CodeRedeemed events)."""
    sale = _sale(client, admin)
    event_id = sale["id"]
    assert client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"],
                       json={"name": "presale", "share_percent": 30}).status_code == 201
    code = client.post(f"/api/events/{event_id}/codes", headers=admin["headers"],
                       json={"lane": "presale", "count": 1, "uses": 2}).json["codes"][0]["code"]
    assert _join(client, event_id, make_user(), code).json["lane"] == "presale"
    with app.app_context():
        from app.extensions import redis_store
        from app.queue.events import drain_sale
        from app.redis.keys import QueueKeys

        drain_sale(event_id)  # the use is recorded in MySQL
        client_ = redis_store.client
        lost = list(client_.scan_iter(match=QueueKeys(event_id).prefix + "*"))
        assert QueueKeys(event_id).codes in lost
        client_.delete(*lost)
    assert _join(client, event_id, make_user(), code).json["lane"] == "presale"  # the second and last use
    used_up = _join(client, event_id, make_user(), code)
    assert used_up.status_code == 409 and used_up.json["reason"] == "access_code_used_up"


def test_a_fan_in_the_general_line_who_brings_a_code_moves_to_the_tail_of_its_lane(client, admin, make_event,
                                                                                    make_user):
    event_id = make_event(admit_per_minute=1, max_active=100)["id"]
    assert client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"],
                       json={"name": "presale", "share_percent": 30}).status_code == 201
    code = client.post(f"/api/events/{event_id}/codes", headers=admin["headers"],
                       json={"lane": "presale", "count": 1}).json["codes"][0]["code"]
    ahead = [make_user() for _ in range(3)]
    for other in ahead:
        assert _join(client, event_id, other).json["lane"] is None
    fan, behind = make_user(), make_user()
    assert _join(client, event_id, fan).json["position"] == 4
    assert _join(client, event_id, behind).json["position"] == 5
    moved = _join(client, event_id, fan, code)
    assert moved.status_code == 202 and moved.json["lane"] == "presale" and moved.json["position"] == 1
    # the general line closes up behind them (a gap, as when anyone leaves)
    assert client.get(f"/api/queue/{event_id}/status", headers=behind["headers"]).json["position"] == 4
    assert client.get(f"/api/queue/{event_id}/stats", headers=admin["headers"]).json["waiting"] == 5
    again = _join(client, event_id, fan, code)  # once in the lane, the code is not spent again
    assert again.status_code == 202 and again.json["lane"] == "presale"
