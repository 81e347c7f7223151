"""Faults and abuse (issue #11): inputs that used to be 500s, and a database connection that dies
under a request. Each answer must be JSON with the right status, and nothing half-written."""

from __future__ import annotations

import uuid

import pytest

HUGE = 9223372036854775807
DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("path", ["/api/events", "/api/tickets/status", "/api/notifications"])
def test_page_numbers_are_bounded(client, make_user, path):
    user = make_user()
    for query in (f"page={HUGE}", "page=10001", f"page_size={HUGE}", "page=0", "page=1.5"):
        r = client.get(f"{path}?{query}", headers=user["headers"])
        assert r.status_code == 422 and r.is_json and r.json["code"] == 422, (query, r.data[:200])
    assert client.get(f"{path}?page=10000", headers=user["headers"]).status_code == 200


@pytest.mark.parametrize("path", ["/api/auth/register", "/api/auth/login", "/api/auth/refresh",
                                  "/api/notifications/register", "/api/tickets/reserve", "/api/events"])
def test_deeply_nested_json_is_a_400_before_any_parser_recurses(client, make_user, path):
    user = make_user(admin=True)
    r = client.post(path, data=DEEP, headers={**user["headers"], "Content-Type": "application/json"})
    assert r.status_code == 400 and r.is_json and r.json["reason"] == "json_too_deep", r.data[:200]
    # a string full of brackets is not nesting
    r = client.post("/api/auth/login", json={"email": "x@example.com", "password": "[" * 200})
    assert r.status_code == 401


def test_integers_are_strict_in_every_json_body(client, make_user, make_event, admin):
    event = make_event()
    r = client.patch(f"/api/queue/{event['id']}", json={"max_active": 2.9}, headers=admin["headers"])
    assert r.status_code == 422 and "max_active" in r.json["errors"]
    r = client.patch(f"/api/queue/{event['id']}", json={"admit_per_minute": "60"}, headers=admin["headers"])
    assert r.status_code == 422 and "admit_per_minute" in r.json["errors"]
    r = client.post(f"/api/events/{event['id']}/sections", headers=admin["headers"],
                    json={"name": "Pit", "price_cents": 1000.5, "currency": "EUR", "capacity": 10})
    assert r.status_code == 422 and "price_cents" in r.json["errors"]
    user = make_user()
    r = client.post("/api/tickets/reserve", json={"event_id": event["id"], "section_id": 1, "quantity": 1.5},
                    headers={**user["headers"], "X-Admission-Token": "x", "Idempotency-Key": "k-strict"})
    assert r.status_code == 422


def test_a_killed_database_connection_is_a_json_503_and_the_next_request_works(app, client, make_event):
    """MariaDB KILLs the connection a request is using (a failover, an operator, a timeout). The
    answer is a JSON 503 with Retry-After, not gunicorn's HTML 500 from the session's teardown; the
    dead connection is discarded and the next request gets a fresh one."""
    from sqlalchemy import text

    from app.extensions import db

    event = make_event()
    with app.app_context():
        # the test client runs requests on this thread: they share this thread's session, which
        # now holds a connection inside a transaction
        victim = db.session.scalar(text("SELECT CONNECTION_ID()"))
        with db.engine.connect() as killer:
            killer.execute(text(f"KILL {int(victim)}"))
        r = client.get(f"/api/events/{event['id']}")
        assert r.status_code == 503 and r.is_json, r.data[:300]
        assert r.json["reason"] == "unavailable" and r.headers["Retry-After"]
    r = client.get(f"/api/events/{event['id']}")
    assert r.status_code == 200 and r.json["id"] == event["id"]


def test_open_streams_are_capped_per_user_and_per_sale_and_a_closed_one_frees_its_lease(app, live_stream, make_event,
                                                                                        make_user):
    """One account held 600 streams and starved everyone on the worker. Now: at most
    SSE_MAX_STREAMS_PER_USER (3) per user and sale, 429 with Retry-After beyond, and a stream's lease
    goes when the client closes it."""
    import requests

    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    event = make_event(admit_per_minute=1, max_active=1)
    blocker, user = make_user(), make_user()
    url = f"{live_stream.url}/api/queue/{event['id']}"
    for u in (blocker, user):
        requests.post(f"{url}/join", headers=u["headers"], timeout=5).raise_for_status()
    opened = []  # (response, its line iterator): a discarded iterator makes urllib3 close the connection
    tabs = [requests.Session() for _ in range(4)]  # one per stream: a session closed on return would close it
    try:
        for tab in tabs[:3]:
            r = tab.get(f"{url}/stream", headers=user["headers"], stream=True, timeout=10)
            assert r.status_code == 200
            lines = r.iter_lines()
            next(lines)  # the first event: the stream is open and holds its lease
            opened.append((r, lines))
        r = requests.get(f"{url}/stream", headers=user["headers"], stream=True, timeout=10)
        assert r.status_code == 429 and r.json()["reason"] == "too_many_streams" and r.headers["Retry-After"]
        # another fan of the same sale is not affected by this one's streams
        other = requests.get(f"{url}/stream", headers=blocker["headers"], stream=True, timeout=10)
        assert other.status_code == 200
        other.close()
        opened.pop()[0].close()

        def lease_count() -> int:
            with app.app_context():
                return redis_store.client.zcard(QueueKeys(event["id"]).user_streams(user["id"]))

        from tests.support import wait_for

        # the server notices a closed page at its next check (at most one SSE tick)
        wait_for(lambda: lease_count() == 2, timeout=15, message="the closed stream's lease to go")
        again = tabs[3].get(f"{url}/stream", headers=user["headers"], stream=True, timeout=10)
        assert again.status_code == 200
        opened.append((again, None))
    finally:
        for r, _ in opened:
            r.close()
        for tab in tabs:
            tab.close()


def test_a_sale_at_its_stream_cap_answers_429(app, make_event, make_user):
    from app.errors import TooManyRequests
    from app.queue import streams

    event = make_event()
    saved = app.config["SSE_MAX_STREAMS_PER_EVENT"]
    app.config["SSE_MAX_STREAMS_PER_EVENT"] = 2
    try:
        with app.app_context():
            leases = [streams.open_lease(event["id"], make_user()["id"]) for _ in range(2)]
            with pytest.raises(TooManyRequests) as caught:
                streams.open_lease(event["id"], make_user()["id"])
            assert caught.value.headers["Retry-After"]
            assert leases[0] != leases[1]
    finally:
        app.config["SSE_MAX_STREAMS_PER_EVENT"] = saved


def test_api_metrics_are_for_the_scraper_only(app, client):
    """Served to a direct request from a private address (an in-cluster Prometheus); refused with
    a JSON 403 when the request came through a proxy or from a public address; with METRICS_TOKEN
    set, only to its bearer."""
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    r = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403 and r.json["reason"] == "metrics_forbidden"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    app.config["METRICS_TOKEN"] = "s3cret-scrape-token"
    try:
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        r = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
        assert r.status_code == 200 and b"flask_http_request" in r.data
    finally:
        app.config["METRICS_TOKEN"] = ""


def test_logins_are_throttled_per_account_and_per_address(client, make_user):
    """200 wrong passwords then the right one used to give 200. Failed logins count per account:
    after 10, even the right password waits (429, Retry-After)."""
    user = make_user()
    for _ in range(10):
        r = client.post("/api/auth/login", json={"email": user["email"], "password": "wrong-Passw0rd"})
        assert r.status_code == 401
    r = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]})
    assert r.status_code == 429 and r.is_json and int(r.headers["Retry-After"]) > 0
    # the same account spelled differently is the same account
    r = client.post("/api/auth/login", json={"email": user["email"].upper(), "password": user["password"]})
    assert r.status_code == 429
    # another account from the same address still logs in
    other = make_user()
    r = client.post("/api/auth/login", json={"email": other["email"], "password": other["password"]})
    assert r.status_code == 200
    # per address: 30 a minute, whichever accounts they name
    codes = [client.post("/api/auth/login", json={"email": f"nobody{i}@example.com", "password": "x" * 8},
                         environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code for i in range(31)]
    assert codes[:30] == [401] * 30 and codes[30] == 429


def test_registration_and_refresh_are_throttled_per_address(client, make_user):
    codes = [client.post("/api/auth/register", environ_base={"REMOTE_ADDR": "198.51.100.8"},
                         json={"email": f"bot{i}@example.com", "password": "fan-s3cret-2026",
                               "name": "Bot"}).status_code
             for i in range(11)]
    assert codes[:10] == [201] * 10 and codes[10] == 429
    # a different address registers fine
    assert client.post("/api/auth/register", environ_base={"REMOTE_ADDR": "198.51.100.9"},
                       json={"email": "human@example.com", "password": "fan-s3cret-2026",
                             "name": "H"}).status_code == 201
    user = make_user()
    login = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]}).json
    refresh = login["refresh_token"]
    for _ in range(60):
        r = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {refresh}"},
                        environ_base={"REMOTE_ADDR": "198.51.100.10"})
        assert r.status_code == 200
        refresh = r.json["refresh_token"]
    r = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {refresh}"},
                    environ_base={"REMOTE_ADDR": "198.51.100.10"})
    assert r.status_code == 429 and r.headers["Retry-After"]


def test_channels_are_capped_and_unproved_ones_are_never_notified(app, client, worker, smtp_sink, make_user,
                                                                   make_event):
    """One account registered 30 SMS numbers and a stranger's e-mail, and one admission sent 31
    messages. Now: at most 5 channels; an address or number gets nothing but its code until the
    code comes back; 5 wrong codes void it."""
    from sqlalchemy import select

    from app.extensions import db
    from app.notifications.models import Notification
    from tests.helpers import advance, code_sent_to
    from tests.support import wait_for

    user = make_user()
    headers = user["headers"]
    stranger = client.post("/api/notifications/register", headers=headers,
                           json={"channel": "email", "address": "stranger@example.com"}).json
    assert stranger["verified"] is False
    phones = [client.post("/api/notifications/register", headers=headers,
                          json={"channel": "sms", "phone": f"+1555010{i:04d}"}) for i in range(5)]
    assert [r.status_code for r in phones] == [201, 201, 201, 201, 409]
    assert phones[-1].json["reason"] == "too_many_channels"
    # the same one again is not a new channel
    assert client.post("/api/notifications/register", headers=headers,
                       json={"channel": "sms", "phone": "+15550100000"}).status_code == 200

    # wrong codes: 5 tries, then the code is void
    code = wait_for(lambda: code_sent_to("stranger@example.com", smtp_sink), timeout=20, message="the code")
    wrong = "000000" if code != "000000" else "111111"
    url = f"/api/notifications/devices/{stranger['device_id']}/verify"
    assert [client.post(url, json={"code": wrong}, headers=headers).status_code for _ in range(5)] == [422] * 5
    r = client.post(url, json={"code": code}, headers=headers)
    assert r.status_code == 429 and r.json["reason"] == "too_many_attempts"
    assert client.post(url, json={"code": code}, headers=headers).json["reason"] == "code_expired"
    assert client.post(url, json={"code": "12ab56"}, headers=headers).status_code == 422  # not six digits

    # an admission tells nobody: none of the five channels was proved
    event = make_event(admit_per_minute=6000)
    client.post(f"/api/queue/{event['id']}/join", headers=headers)
    assert advance(app, event["id"]).admitted == [user["id"]]
    import time

    time.sleep(2)
    with app.app_context():
        assert db.session.scalars(select(Notification).where(Notification.user_id == user["id"])).all() == []
        db.session.rollback()
    # a new code, then the right one: the channel is proved
    resend = client.post(f"/api/notifications/devices/{stranger['device_id']}/code", headers=headers)
    assert resend.status_code == 202
    fresh = wait_for(lambda: (c := code_sent_to("stranger@example.com", smtp_sink)) != code and c, timeout=20,
                     message="a new code")
    assert client.post(url, json={"code": fresh}, headers=headers).json["verified"] is True


def test_buying_needs_a_verified_email_and_the_code_from_sign_up_proves_it(app, client, worker, smtp_sink,
                                                                           make_event):
    """fan+1@, fan+2@ were separate accounts, and ten bots held a section without paying. Now one
    account per mailbox, and reserve needs the e-mail proved (token claim, no extra round trip)."""
    from tests.helpers import admitted_pass, code_sent_to
    from tests.support import wait_for

    address = f"fan-{uuid.uuid4().hex[:8]}@example.com"

    r = client.post("/api/auth/register", json={"email": address, "password": "fan-s3cret-2026",
                                                "name": "Fan"})
    assert r.status_code == 201 and r.json["email_verified"] is False
    r = client.post("/api/auth/register", json={"email": address.replace("@", "+2@").upper(),
                                                "password": "fan-s3cret-2026",
                                                "name": "Fan again"})
    assert r.status_code == 409 and r.json["reason"] == "email_taken"
    tokens = client.post("/api/auth/login", json={"email": address, "password": "fan-s3cret-2026"}).json
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    user = {"id": client.get("/api/auth/me", headers=headers).json["id"], "headers": headers}
    event = make_event(sections=[{"name": "Floor", "capacity": 10}])
    admission = admitted_pass(client, app, event["id"], user)
    body = {"event_id": event["id"], "section_id": event["sections"][0]["id"], "quantity": 1}
    r = client.post("/api/tickets/reserve", json=body,
                    headers={**user["headers"], "X-Admission-Token": admission, "Idempotency-Key": "k1"})
    assert r.status_code == 403 and r.json["reason"] == "email_unverified"

    code = wait_for(lambda: code_sent_to(address, smtp_sink), timeout=20, message="the sign-up code")
    verified = client.post("/api/auth/verify-email", json={"code": code}, headers=user["headers"])
    assert verified.status_code == 200
    user["headers"] = {"Authorization": f"Bearer {verified.json['access_token']}"}
    assert client.get("/api/auth/me", headers=user["headers"]).json["email_verified"] is True
    r = client.post("/api/tickets/reserve", json=body,
                    headers={**user["headers"], "X-Admission-Token": admission, "Idempotency-Key": "k1"})
    assert r.status_code == 202, r.json


def test_a_sale_can_ask_for_proof_of_work_at_join(app, client, make_event, make_user, admin):
    """Queue-it's defence against bot armies: each join costs CPU. Checked inside the join script."""
    import hashlib

    from app.queue import pow as proof

    event = make_event()
    r = client.patch(f"/api/queue/{event['id']}", json={"pow_difficulty": 12}, headers=admin["headers"])
    assert r.status_code == 200
    assert client.get(f"/api/events/{event['id']}").json["pow_difficulty"] == 12
    user = make_user()
    url = f"/api/queue/{event['id']}/join"
    r = client.post(url, headers=user["headers"])
    assert r.status_code == 428 and r.json["reason"] == "proof_of_work_required"
    assert r.json["errors"]["difficulty"] == 12
    # a nonce that does not meet the difficulty is refused; one that does is accepted, and keeps working
    weak = next(str(n) for n in range(1000) if proof.leading_zero_bits(
        hashlib.sha1(f"{event['id']}:{user['id']}:{n}".encode()).hexdigest()) < 12)
    assert client.post(url, headers={**user["headers"], "X-Proof-Of-Work": weak}).status_code == 428
    nonce = proof.solve(event["id"], user["id"], 12)
    assert client.post(url, headers={**user["headers"], "X-Proof-Of-Work": nonce}).status_code == 202
    assert client.post(url, headers={**user["headers"], "X-Proof-Of-Work": nonce}).json["position"] == 1
    # the nonce is bound to the user: another account must do its own work
    other = make_user()
    assert client.post(url, headers={**other["headers"], "X-Proof-Of-Work": nonce}).status_code == 428
    # switched off again, joining needs nothing
    client.patch(f"/api/queue/{event['id']}", json={"pow_difficulty": 0}, headers=admin["headers"])
    assert client.post(url, headers=other["headers"]).status_code == 202


def test_the_proof_of_work_rises_with_a_flood_of_joins_and_falls_back_after_it(app, client, make_event, make_user,
                                                                              admin):
    """A sale with an adaptive proof of work: each tick after a flood of join attempts raises the
    difficulty, an honest fan still joins by solving it, one who has a place is not asked again,
    and once the flood stops it falls a bit per tick."""
    from app.queue import pow as proof
    from app.queue.gauges import gauges
    from tests.helpers import advance

    event = make_event()
    eid = event["id"]
    r = client.patch(f"/api/queue/{eid}", headers=admin["headers"],
                     json={"pow_adaptive_threshold": 20, "pow_max_difficulty": 10})
    assert r.status_code == 200 and r.json["pow_difficulty"] == 0
    bots = [make_user() for _ in range(30)]
    risen = [0]
    for _ in range(2):  # two floods, each measured from the tick before it
        assert advance(app, eid).status == "ok"
        for _ in range(4):  # 120 attempts well within the few seconds it would take to fall under 20 a second
            for bot in bots:
                assert client.post(f"/api/queue/{eid}/join", headers=bot["headers"]).status_code in (202, 428)
        advance(app, eid)
        stats = client.get(f"/api/queue/{eid}/stats", headers=admin["headers"]).json
        assert stats["join_attempts_per_second"] > 20, stats
        risen.append(stats["pow_difficulty"])
    assert 0 < risen[1] < risen[2] <= 10, risen
    risen = risen[2]
    with app.app_context():
        sampled = {m.name: {s.labels["event_id"]: s.value for s in m.samples} for m in gauges()}
    assert sampled["tickets_queue_pow_difficulty"][str(eid)] == risen
    fan = make_user()
    asked = client.post(f"/api/queue/{eid}/join", headers=fan["headers"])
    assert asked.status_code == 428 and asked.json["errors"]["difficulty"] == risen
    nonce = proof.solve(eid, fan["id"], risen)
    solved = {**fan["headers"], "X-Proof-Of-Work": nonce}
    assert client.post(f"/api/queue/{eid}/join", headers=solved).status_code == 202
    assert client.post(f"/api/queue/{eid}/join", headers=bots[0]["headers"]).status_code == 202  # has a place
    advance(app, eid)  # the tick that counts those three joins (back-to-back ticks make them a high rate)
    falling = [client.get(f"/api/queue/{eid}/stats", headers=admin["headers"]).json["pow_difficulty"]]
    assert falling[0] >= risen - 1
    for _ in range(falling[0]):  # the flood has stopped: one bit a tick
        advance(app, eid)
        falling.append(client.get(f"/api/queue/{eid}/stats", headers=admin["headers"]).json["pow_difficulty"])
    assert falling == list(range(falling[0], -1, -1))
    assert client.post(f"/api/queue/{eid}/join", headers=make_user()["headers"]).status_code == 202


def test_the_reference_solver_counts_bits_as_the_join_script_does():
    from app.queue.pow import leading_zero_bits

    assert leading_zero_bits("ffff") == 0 and leading_zero_bits("7fff") == 1 and leading_zero_bits("1fff") == 3
    assert leading_zero_bits("0fff") == 4 and leading_zero_bits("00ff") == 8 and leading_zero_bits("0001") == 15


def test_joining_a_sale_that_does_not_exist_writes_nothing(app, client, make_user):
    """300 joins to missing sales grew the user's set of joined sales to 300 entries."""
    from app.extensions import redis_store
    from app.redis.keys import user_queues_key

    user = make_user()
    for event_id in range(900_000, 900_030):
        assert client.post(f"/api/queue/{event_id}/join", headers=user["headers"]).status_code == 404
    with app.app_context():
        assert redis_store.client.scard(user_queues_key(user["id"])) == 0
        assert not redis_store.client.keys("q:{90000*")


def test_an_open_stream_on_a_descriptor_above_1023_is_not_taken_for_a_closed_page():
    """select() refuses descriptors above 1023, and the check took that for a closed page: every
    stream beyond a process's first thousand ended after its first event (bench/serving_bench.py)."""
    import os
    import socket

    from app.queue import streams

    server_end, client_end = socket.socketpair()
    high = socket.socket(fileno=os.dup2(server_end.fileno(), 1500))
    high.settimeout(0.0)  # as a carried stream's socket is
    server_end.close()
    try:
        assert high.fileno() == 1500 and not streams.client_gone(high)
        client_end.close()  # the fan closes the page
        assert streams.client_gone(high)
    finally:
        high.close()
