"""The waiting room against real Redis: fairness, advancement, passes, expiry, SSE."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from app.db import utcnow
from app.errors import Forbidden
from tests.helpers import advance


def join(client, event_id, user):
    return client.post(f"/api/queue/{event_id}/join", headers=user["headers"])


def status(client, event_id, user):
    return client.get(f"/api/queue/{event_id}/status", headers=user["headers"])


def test_concurrent_joins_get_unique_contiguous_places(live_api, make_event, make_user):
    event = make_event()
    users = [make_user() for _ in range(120)]

    def do_join(user):
        r = requests.post(f"{live_api.url}/api/queue/{event['id']}/join", headers=user["headers"], timeout=10)
        assert r.status_code == 202, r.text
        return user["id"], r.json()["position"]

    with ThreadPoolExecutor(32) as pool:
        first = dict(pool.map(do_join, users))
        again = dict(pool.map(do_join, users))
    assert sorted(first.values()) == list(range(1, len(users) + 1))
    assert again == first  # joining again keeps the place, never a second one


def test_join_and_status_shape(client, make_event, make_user):
    event = make_event(admit_per_minute=60)
    a, b = make_user(), make_user()
    assert join(client, event["id"], a).status_code == 202
    r = join(client, event["id"], b)
    body = r.json
    assert body["status"] == "waiting" and body["position"] == 2 and body["ahead"] == 1
    assert body["eta_seconds"] == 2 * 60 // 60 and body["poll_after_ms"] >= 1000
    assert body["admission_token"] is None
    s = status(client, event["id"], b).json
    assert s["position"] == 2
    assert status(client, event["id"], make_user()).json["status"] == "not_in_queue"


def test_poll_interval_grows_with_distance(client, make_event, make_user):
    event = make_event(admit_per_minute=60, heartbeat_timeout_seconds=120)
    users = [make_user() for _ in range(100)]
    bodies = [join(client, event["id"], u).json for u in users]
    assert bodies[0]["poll_after_ms"] == 1000
    assert bodies[-1]["poll_after_ms"] > bodies[10]["poll_after_ms"] > bodies[0]["poll_after_ms"]
    assert bodies[-1]["eta_seconds"] == 100 * 60 // 60


def test_advancement_is_smoothed_at_the_configured_rate(app, client, make_event, make_user):
    event = make_event(admit_per_minute=120)  # 2 per second
    users = [make_user() for _ in range(40)]
    for u in users:
        join(client, event["id"], u)
    admitted: list[int] = []
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        admitted += advance(app, event["id"]).admitted
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    allowed = 2 + 2 * elapsed  # one second of burst plus the rate
    assert 2 * elapsed - 1 <= len(admitted) <= allowed + 0.5, (len(admitted), elapsed)
    assert admitted == [u["id"] for u in users[: len(admitted)]]  # strictly in order
    stats = client.get(f"/api/queue/{event['id']}/stats", headers=make_user(admin=True)["headers"]).json
    assert stats["admitted_total"] == len(admitted) and stats["active"] == len(admitted)
    # measured (the first second includes the bucket's burst), near the configured 120/min
    assert 60 <= stats["admit_rate_per_minute"] <= 300, stats


def test_max_active_caps_admissions_and_leaving_frees_a_slot(app, client, make_event, make_user):
    event = make_event(admit_per_minute=6000, max_active=5)
    users = [make_user() for _ in range(12)]
    for u in users:
        join(client, event["id"], u)
    assert len(advance(app, event["id"]).admitted) == 5
    time.sleep(0.2)
    assert advance(app, event["id"]).admitted == []
    assert client.delete(f"/api/queue/{event['id']}", headers=users[0]["headers"]).status_code == 204
    assert status(client, event["id"], users[0]).json["status"] == "not_in_queue"
    time.sleep(0.1)
    assert advance(app, event["id"]).admitted == [users[5]["id"]]


def test_concurrent_advancers_never_double_admit_or_exceed_the_rate(app, client, make_event, make_user):
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    event = make_event(admit_per_minute=600)  # 10 per second
    users = [make_user() for _ in range(300)]
    for u in users:
        join(client, event["id"], u)
    results: list[list[int]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 2.0

    def advancer():
        while time.monotonic() < stop_at:
            got = advance(app, event["id"]).admitted
            with lock:
                results.append(got)

    started = time.monotonic()
    threads = [threading.Thread(target=advancer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    everyone = [u for batch in results for u in batch]
    assert len(everyone) == len(set(everyone)), "a user was admitted twice"
    assert len(everyone) <= 10 + 10 * elapsed + 1, (len(everyone), elapsed)
    with app.app_context():
        assert redis_store.client.zcard(QueueKeys(event["id"]).active) == len(everyone)


def test_prequeue_is_shuffled_once_and_only_for_prequeue_joiners(app, client, make_event, make_user):
    from app.queue.draws import draw_prequeue

    opens = utcnow() + timedelta(seconds=2)
    event = make_event(sale_opens_at=opens, prequeue_minutes=15, admit_per_minute=60, max_active=1)
    early = [make_user() for _ in range(30)]
    for u in early:
        body = join(client, event["id"], u).json
        assert body["status"] == "waiting" and body["reason"] == "pre_queue" and body["position"] is None
        assert body["eta_seconds"] >= 1
    assert advance(app, event["id"]).status == "not_open"
    time.sleep(max(0.0, (opens - utcnow()).total_seconds()) + 0.1)
    late = make_user()
    assert join(client, event["id"], late).json["position"] == 1  # before the draw, alone in line
    result = advance(app, event["id"])
    assert result.shuffled == 30 and len(result.admitted) == 1
    assert result.admitted[0] in {u["id"] for u in early}
    positions = {u["id"]: status(client, event["id"], u).json for u in early}
    waiting = sorted(p["position"] for p in positions.values() if p["status"] == "waiting")
    assert waiting == list(range(1, 30))
    order = sorted((p["position"], uid) for uid, p in positions.items() if p["status"] == "waiting")
    assert [uid for _, uid in order] != [u["id"] for u in early if u["id"] != result.admitted[0]]
    assert status(client, event["id"], late).json["position"] == 30  # after every pre-queue joiner
    with app.app_context():
        assert draw_prequeue(event["id"]) is None  # exactly once


def test_pause_and_resume(app, client, make_event, make_user, admin):
    event = make_event(admit_per_minute=6000)
    users = [make_user() for _ in range(3)]
    for u in users:
        join(client, event["id"], u)
    r = client.post(f"/api/queue/{event['id']}/pause", headers=admin["headers"])
    assert r.status_code == 200 and r.json["paused"] is True
    assert advance(app, event["id"]).admitted == []
    assert status(client, event["id"], users[0]).json["paused"] is True
    assert client.post(f"/api/queue/{event['id']}/resume", headers=admin["headers"]).json["paused"] is False
    assert len(advance(app, event["id"]).admitted) == 3
    assert client.post(f"/api/queue/{event['id']}/pause", headers=users[0]["headers"]).status_code == 403


def test_the_estimate_has_a_range_learns_from_the_advancer_and_stops_counting_while_paused(
        app, client, make_event, make_user, admin):
    """The arithmetic is tests/unit/queue/test_eta.py's and the honesty `make bench-eta`'s; this is the wiring:
    advancer ticks reach the published speed, status shows an ETA with a range, none while paused."""
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    event = make_event(admit_per_minute=120, max_active=1000)
    users = [make_user() for _ in range(12)]
    for u in users:
        join(client, event["id"], u)
    body = status(client, event["id"], users[-1]).json
    low, high = body["eta_range_seconds"]
    assert body["ahead"] == 11 and low <= body["eta_seconds"] <= high and high > low
    advance(app, event["id"])
    time.sleep(1.1)  # one advancer period of line time, so the tick has something to measure
    advance(app, event["id"])
    with app.app_context():
        stats = redis_store.client.hgetall(QueueKeys(event["id"]).stats)
    assert float(stats["eta_rate"]) > 0 and json.loads(stats["eta_state"])["samples"]
    assert client.post(f"/api/queue/{event['id']}/pause", headers=admin["headers"]).status_code == 200
    advance(app, event["id"])  # a paused tick is remembered: the first estimate after resume moves freely
    paused = status(client, event["id"], users[-1]).json
    assert paused["paused"] is True and paused["status"] == "waiting"
    assert paused["eta_seconds"] is None and paused["eta_range_seconds"] is None and paused["poll_after_ms"] <= 5000
    assert client.post(f"/api/queue/{event['id']}/resume", headers=admin["headers"]).status_code == 200
    resumed = status(client, event["id"], users[-1]).json
    assert resumed["eta_seconds"] >= 1 and resumed["eta_range_seconds"]


def test_patch_settings_changes_the_live_sale(app, client, make_event, make_user, admin):
    event = make_event(admit_per_minute=60, max_active=1)
    r = client.patch(f"/api/queue/{event['id']}", json={"max_active": 3, "admit_per_minute": 6000},
                     headers=admin["headers"])
    assert r.status_code == 200 and r.json["max_active"] == 3 and r.json["configured_admit_per_minute"] == 6000
    for _ in range(5):
        join(client, event["id"], make_user())
    assert len(advance(app, event["id"]).admitted) == 3
    assert client.patch(f"/api/queue/{event['id']}", json={}, headers=admin["headers"]).status_code == 422
    assert client.patch(f"/api/queue/{event['id']}", json={"max_active": 0},
                        headers=admin["headers"]).status_code == 422


def test_admission_expires_and_frees_the_slot(app, client, make_event, make_user, admin):
    event = make_event(admit_per_minute=6000, max_active=1, admission_window_seconds=1)
    a, b = make_user(), make_user()
    join(client, event["id"], a)
    join(client, event["id"], b)
    assert advance(app, event["id"]).admitted == [a["id"]]
    body = status(client, event["id"], a).json
    assert body["status"] == "admitted" and body["admission_token"] and body["admitted_until"]
    time.sleep(1.2)
    body = status(client, event["id"], a).json
    assert body["status"] == "expired" and body["admission_token"] is None
    result = advance(app, event["id"])
    assert result.lapsed == 1 and result.admitted == [b["id"]]
    stats = client.get(f"/api/queue/{event['id']}/stats", headers=admin["headers"]).json
    assert stats["expired_total"] == 1 and stats["admitted_total"] == 2
    assert status(client, event["id"], a).json["reason"] == "window_lapsed"


def test_abandoned_places_are_skipped_unless_the_user_can_be_notified(app, client, make_event, make_user):
    event = make_event(admit_per_minute=6000, heartbeat_timeout_seconds=1)
    gone, notified, present = make_user(), make_user(), make_user()
    r = client.post("/api/notifications/register",
                    json={"channel": "push", "platform": "fcm", "token": "fcm-notifiable-1"},
                    headers=notified["headers"])
    assert r.status_code == 201
    for u in (gone, notified, present):
        join(client, event["id"], u)
    time.sleep(1.3)
    status(client, event["id"], present)  # polling is the heartbeat
    result = advance(app, event["id"])
    assert result.abandoned == 1
    assert result.admitted == [notified["id"], present["id"]]
    body = status(client, event["id"], gone).json
    assert body["status"] == "expired" and body["reason"] == "abandoned"
    # an expired user may take a new place at the back
    assert join(client, event["id"], gone).json["status"] == "waiting"


def test_admission_pass_is_bound_to_user_and_event(app, client, make_event, make_user):
    from app.queue import passes

    e1 = make_event(admit_per_minute=6000, sections=[{"name": "Floor", "capacity": 10}])
    e2 = make_event(admit_per_minute=6000)
    a, b = make_user(), make_user()
    join(client, e1["id"], a)
    join(client, e2["id"], b)
    advance(app, e1["id"])
    advance(app, e2["id"])
    token = status(client, e1["id"], a).json["admission_token"]
    with app.test_request_context():
        assert passes.decode(token, a["id"], e1["id"])["sub"] == str(a["id"])
        for user_id, event_id, reason in ((b["id"], e1["id"], "admission_wrong_user"),
                                          (a["id"], e2["id"], "admission_wrong_event")):
            with pytest.raises(Forbidden) as err:
                passes.decode(token, user_id, event_id)
            assert err.value.reason == reason
        with pytest.raises(Forbidden):
            passes.decode(token[:-3] + "abc", a["id"], e1["id"])
    # leaving revokes the pass at once: the reserve script finds the admission gone
    client.delete(f"/api/queue/{e1['id']}", headers=a["headers"])
    r = client.post("/api/tickets/reserve", headers={**a["headers"], "X-Admission-Token": token,
                                                      "Idempotency-Key": "k-revoked"},
                    json={"event_id": e1["id"], "section_id": e1["sections"][0]["id"], "quantity": 1})
    assert r.status_code == 403 and r.json["reason"] == "admission_inactive"


def test_queue_errors(client, make_event, make_user):
    user = make_user()
    r = join(client, 999999, user)
    assert r.status_code == 404 and r.json["reason"] == "event_not_found"
    assert status(client, 999999, user).status_code == 404
    assert client.delete("/api/queue/999999", headers=user["headers"]).status_code == 404
    later = make_event(sale_opens_at=utcnow() + timedelta(hours=2), prequeue_minutes=15)
    r = join(client, later["id"], user)
    assert r.status_code == 409 and r.json["reason"] == "not_open_yet"
    closed = make_event(sale_opens_at=utcnow() - timedelta(hours=2), sale_closes_at=utcnow() - timedelta(hours=1))
    r = join(client, closed["id"], user)
    assert r.status_code == 409 and r.json["reason"] == "sale_closed"
    assert client.post(f"/api/queue/{later['id']}/join").status_code == 401


def test_too_many_requests_is_429_with_retry_after(client, make_event, make_user):
    event = make_event()
    user = make_user()
    join(client, event["id"], user)
    codes = [status(client, event["id"], user) for _ in range(15)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert limited[0].headers["Retry-After"] == "1" and limited[0].json["reason"] == "rate_limited"


def test_sse_stream_follows_the_serving_figures_and_ends_on_admission(app, live_stream, make_event, make_user):
    """The stream works out its position from the sale's serving figures and its line number,
    never lower than the true one, and asks for its exact status once the line reaches it (the
    admission pass)."""
    from app.queue import services
    from tests.support import wait_for

    event = make_event(admit_per_minute=1, max_active=10)
    first, second, third = make_user(), make_user(), make_user()
    url = f"{live_stream.url}/api/queue/{event['id']}"
    for fan in (first, second, third):
        requests.post(f"{url}/join", headers=fan["headers"], timeout=5).raise_for_status()
    updates: list[dict] = []

    def listen():
        with requests.get(f"{url}/stream", headers=third["headers"], stream=True, timeout=30) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    updates.append(json.loads(line[6:]))

    listener = threading.Thread(target=listen)
    listener.start()
    wait_for(lambda: updates, timeout=10, message="the first update")
    assert (updates[0]["position"], updates[0]["line_number"]) == (3, 3) and updates[0]["place"]
    with app.app_context():
        services.admit_now(event["id"], 1)  # the first fan: served up to 1
    wait_for(lambda: updates[-1]["position"] == 2, timeout=10, message="position 2 from the serving figures")
    requests.delete(url, headers=second["headers"], timeout=5)  # the fan ahead leaves: truly first now
    with app.app_context():
        services.admit_now(event["id"], 1)  # the line reaches the third fan
    listener.join(15)
    assert not listener.is_alive(), "the stream did not end after admission"
    assert updates[-1]["status"] == "admitted" and updates[-1]["admission_token"]
    # shown positions only go down, and never below the truth (3, then 2 while one was ahead)
    shown = [u["position"] for u in updates if u["status"] == "waiting"]
    assert shown == sorted(shown, reverse=True) and shown[0] == 3 and min(shown) == 2


def test_the_rest_server_sends_streams_elsewhere_and_serves_the_poll(live_api, make_event, make_user):
    """granian (app/serve.py) runs a request per thread: an open stream would hold one for minutes.
    It answers the stream path with a JSON 503 that says what to do, and the poll works."""
    event = make_event(admit_per_minute=1, max_active=1)
    user = make_user()
    url = f"{live_api.url}/api/queue/{event['id']}"
    assert requests.post(f"{url}/join", headers=user["headers"], timeout=5).status_code == 202
    r = requests.get(f"{url}/stream", headers=user["headers"], timeout=5)
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["reason"] == "stream_unavailable" and "poll" in r.json()["message"]
    assert r.headers["Retry-After"] == "5"
    polled = requests.get(f"{url}/status", headers=user["headers"], timeout=5)
    assert polled.status_code == 200 and polled.json()["status"] == "waiting" and polled.json()["poll_after_ms"] > 0


def test_queue_events_reach_the_outbox_once(app, client, make_event, make_user):
    from sqlalchemy import select

    from app.db import transaction
    from app.extensions import db
    from app.outbox.models import OutboxEvent
    from app.queue.events import drain_events

    event = make_event(admit_per_minute=6000)
    user = make_user()
    join(client, event["id"], user)
    advance(app, event["id"])
    with app.app_context():
        with transaction():
            assert drain_events(event["id"]) == 2
        with transaction():
            assert drain_events(event["id"]) == 0
        rows = db.session.scalars(select(OutboxEvent).where(OutboxEvent.aggregate_type == "queue")
                                  .order_by(OutboxEvent.id)).all()
        assert [r.type for r in rows] == ["QueueJoined", "UserAdmitted"]
        assert rows[1].data["user_id"] == user["id"] and rows[1].topic == "tickets.queue"
        assert rows[1].aggregate_id == str(event["id"])


def test_a_finished_sale_leaves_the_advancer(app, client, make_event, make_user):
    from app.extensions import db
    from app.queue.services import sync_meta
    from app.redis.keys import REGISTRY_KEY

    event = make_event(admit_per_minute=6000)
    user = make_user()
    join(client, event["id"], user)
    assert advance(app, event["id"]).admitted == [user["id"]]
    with app.app_context():
        from app.catalogue.models import Event
        from app.extensions import redis_store

        assert redis_store.client.sismember(REGISTRY_KEY, event["id"])
        row = db.session.get(Event, event["id"])
        row.starts_at = utcnow() - timedelta(minutes=1)  # the concert has begun
        db.session.commit()
        sync_meta(row)
    assert advance(app, event["id"]).status == "ok"  # the admitted user still holds an active slot
    client.delete(f"/api/queue/{event['id']}", headers=user["headers"])
    assert advance(app, event["id"]).status == "ended"
    with app.app_context():
        assert not redis_store.client.sismember(REGISTRY_KEY, event["id"])


def test_revoked_token_is_refused_by_the_lean_queue_endpoints(client, make_event):
    """status and join read the revocation in the same round trip as their script: still a 401."""
    event = make_event()
    client.post("/api/auth/register", json={"email": "lean@example.com", "password": "fan-s3cret-2026", "name": "L"})
    token = client.post("/api/auth/login", json={"email": "lean@example.com", "password": "fan-s3cret-2026"}
                        ).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    joined = client.post(f"/api/queue/{event['id']}/join", headers=headers)
    assert joined.status_code == 202 and joined.json["status"] == "waiting"
    assert client.get(f"/api/queue/{event['id']}/status", headers=headers).status_code == 200
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    for r in (client.get(f"/api/queue/{event['id']}/status", headers=headers),
              client.post(f"/api/queue/{event['id']}/join", headers=headers)):
        assert r.status_code == 401 and r.json["reason"] == "token_revoked"


def test_serving_figures_are_public_cacheable_and_answer_304(client, make_event, make_user):
    event = make_event(admit_per_minute=60)
    fans = [make_user() for _ in range(3)]
    for fan in fans:
        join(client, event["id"], fan)
    url = f"/api/queue/{event['id']}/serving"
    r = client.get(url)  # no token: the same answer for everyone
    assert r.status_code == 200 and r.headers["Cache-Control"] == "public, max-age=1" and r.headers["ETag"]
    assert (r.json["served_up_to"], r.json["waiting"], r.json["paused"]) == (0, 3, False)
    assert r.json["configured_admit_per_minute"] == 60 and r.json["heartbeat_timeout_seconds"] == 60
    again = client.get(url, headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    from tests.helpers import advance

    advance(client.application, event["id"], force=1)
    moved = client.get(url, headers={"If-None-Match": r.headers["ETag"]})
    assert moved.status_code == 200 and moved.json["served_up_to"] == 1 and moved.json["admitted_total"] == 1
    missing = client.get("/api/queue/987654321/serving")
    assert missing.status_code == 404 and missing.json["reason"]


def test_the_position_worked_out_from_the_serving_figures_is_never_lower_than_the_true_one(app, make_event):
    """Fans join a pre-queue, the draw numbers it, more fans join, some leave at random and the
    line is served in random steps. At every step, every waiting fan's position from their line
    number and the public figures alone is at least their true position (an overestimate is the
    price of asking Redis nothing per fan)."""
    import random

    from app.extensions import redis_store
    from app.queue import services
    from app.redis.keys import QueueKeys

    event = make_event(sale_opens_at=utcnow() + timedelta(minutes=5), admit_per_minute=1)  # the steps serve
    keys = QueueKeys(event["id"])
    rng = random.Random(7)
    fans = iter(range(900_001, 901_000))
    samples = over = 0
    with app.app_context():
        client = redis_store.client
        for _ in range(40):
            assert services.join(event["id"], next(fans)).reason == "pre_queue"
        client.hset(keys.meta, "opens_at", f"{time.time() - 1:.6f}")  # the sale opens: the next step draws
        services.advance(event["id"], max_batch=0)
        for step in range(30):
            for _ in range(rng.randint(0, 8)):
                services.join(event["id"], next(fans))
            line = client.zrange(keys.line, 0, -1)
            for leaver in rng.sample(line, k=min(len(line), rng.randint(0, 3))):
                services.leave(event["id"], int(leaver))
            services.advance(event["id"], force=rng.randint(0, 4))
            figures = services.serving(event["id"])
            for rank, (user, number) in enumerate(client.zrange(keys.line, 0, -1, withscores=True)):
                shown = services.estimate(int(number), figures, time.time()).position
                assert shown >= rank + 1, (step, user, number, figures.served_up_to)
                samples += 1
                over += shown > rank + 1
    assert samples > 500 and over > 0  # fans left ahead of others: some estimates are pessimistic


def test_a_stream_opened_with_a_place_takes_only_the_callers_own(app, live_stream, make_event, make_user):
    """The signed place opens a stream with no status call; a place signed for another fan, or
    one whose number was changed, is a 403."""
    import base64

    event = make_event(admit_per_minute=1)
    mine, theirs = make_user(), make_user()
    url = f"{live_stream.url}/api/queue/{event['id']}"
    places = {}
    for fan in (theirs, mine):
        body = requests.post(f"{url}/join", headers=fan["headers"], timeout=5).json()
        places[fan["id"]] = body["place"]
    borrowed = requests.get(f"{url}/stream", params={"place": places[theirs["id"]]}, headers=mine["headers"],
                            timeout=5)
    assert borrowed.status_code == 403 and borrowed.json()["reason"] == "place_wrong_user"
    header, payload, signature = places[mine["id"]].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["num"] == 2
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "num": 1}).encode()).rstrip(b"=").decode()
    moved = requests.get(f"{url}/stream", params={"place": f"{header}.{forged}.{signature}"}, headers=mine["headers"],
                         timeout=5)
    assert moved.status_code == 403 and moved.json()["reason"] == "place_invalid"
    with requests.get(f"{url}/stream", params={"place": places[mine["id"]]}, headers=mine["headers"], stream=True,
                      timeout=10) as own:
        assert own.status_code == 200
        first = next(line for line in own.iter_lines(decode_unicode=True) if line.startswith("data: "))
        assert json.loads(first[6:])["position"] == 2


def test_nginx_serves_the_serving_figures_from_its_micro_cache(app, live_api, make_event, make_user):
    """docker/nginx.conf in front of the REST server: within a second every poll is answered from
    the cache, and a moved line shows within about a second."""
    from tests.integration.test_rolling_restart import Nginx
    from tests.support import wait_for

    event = make_event(admit_per_minute=60)
    for _ in range(2):
        requests.post(f"{live_api.url}/api/queue/{event['id']}/join", headers=make_user()["headers"], timeout=5)
    nginx = Nginx([live_api.port], live_api.port)
    try:
        url = f"{nginx.url}/api/queue/{event['id']}/serving"
        answers = [requests.get(url, timeout=5) for _ in range(30)]
        assert all(a.status_code == 200 and a.json()["waiting"] == 2 for a in answers)
        caches = [a.headers["X-Cache-Status"] for a in answers]
        assert caches[0] == "MISS" and caches.count("HIT") >= 20, caches
        assert "Set-Cookie" not in answers[-1].headers
        from tests.helpers import advance

        advance(app, event["id"], force=1)
        wait_for(lambda: requests.get(url, timeout=5).json()["served_up_to"] == 1, timeout=5,
                 message="the moved line through the cache")
    finally:
        nginx.stop()


def test_an_open_stream_keeps_its_fans_place_without_polls_and_a_silent_fan_is_dropped(app, live_stream, make_event,
                                                                                      make_user):
    """The stream process heartbeats its fans in its one SERVING call per sale (a third of the
    heartbeat timeout apart): a fan whose page holds a stream keeps the place with no poll of its
    own, while a fan who neither polls nor streams is dropped as abandoned at the front."""
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys
    from tests.helpers import advance
    from tests.support import wait_for

    event = make_event(admit_per_minute=1, heartbeat_timeout_seconds=3)
    silent, streaming = make_user(), make_user()
    url = f"{live_stream.url}/api/queue/{event['id']}"
    for fan in (silent, streaming):
        requests.post(f"{url}/join", headers=fan["headers"], timeout=5).raise_for_status()
    keys = QueueKeys(event["id"])
    updates: list[dict] = []

    def listen():
        with requests.get(f"{url}/stream", headers=streaming["headers"], stream=True, timeout=30) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    updates.append(json.loads(line[6:]))

    listener = threading.Thread(target=listen)
    listener.start()

    def beats() -> dict[str, float]:
        with app.app_context():
            return {user: time.time() - float(at) for user, at in redis_store.client.hgetall(keys.hb).items()}

    # the silent fan's last sign of life is older than the timeout, the streaming fan's is not
    ages = wait_for(lambda: (a := beats()).get(str(silent["id"]), 0) > 3.5 and a, timeout=15,
                    message="the silent fan's heartbeat to lapse")
    assert ages[str(streaming["id"])] < 3, ages
    step = advance(app, event["id"], force=2)
    assert step.admitted == [streaming["id"]] and step.abandoned == 1
    listener.join(15)
    assert not listener.is_alive() and updates[-1]["status"] == "admitted"
    silent_view = requests.get(f"{url}/status", headers=silent["headers"], timeout=5).json()
    assert (silent_view["status"], silent_view["reason"]) == ("expired", "abandoned")


def test_an_operators_admit_now_waits_for_the_tick_in_progress(app, client, make_event, make_user):
    """`queue advance --count N` met beat's tick holding the sale's advance lock: it waits for
    the tick instead of admitting nobody ("locked")."""
    from app.extensions import redis_store
    from app.queue import services
    from app.redis.keys import QueueKeys

    event = make_event(admit_per_minute=1, max_active=10)
    fans = [make_user() for _ in range(3)]
    for fan in fans:
        assert join(client, event["id"], fan).status_code == 202
    with app.app_context():
        tick = redis_store.client.lock(QueueKeys(event["id"]).advance_lock(), timeout=1.0)
        assert tick.acquire(blocking=False)  # a tick in progress; it ends within the second (its TTL)
        result = services.admit_now(event["id"], 3)
    assert (result.status, len(result.admitted)) == ("ok", 3)
    assert all(status(client, event["id"], fan).json["status"] == "admitted" for fan in fans)
