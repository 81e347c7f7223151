"""What the attacker's probe found (issue #25), each as the probe did it: 500s from anonymous
input (chunked deep JSON, huge integers, lone surrogates), a lockout bypass through the cookie
login, code pumping, an open redirect, a racy channel cap, a deleted user's live tokens, a refund
job read under another event, and missing headers."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

ANONYMOUS_BODIES = {
    "deep": b"[" * 30_000 + b"]" * 30_000,
    "huge integer": b'{"email": "a@x.com", "password": "x", "n": 1' + b"0" * 5000 + b"}",
    "lone surrogate": b'{"email": "\\ud800@x.com", "password": "x"}',
}


def chunked(data: bytes):
    """A body sent with Transfer-Encoding: chunked (requests does so for a generator)."""
    for i in range(0, len(data), 4096):
        yield data[i:i + 4096]


@pytest.mark.parametrize("kind", sorted(ANONYMOUS_BODIES))
def test_no_anonymous_body_gets_a_500_whatever_its_transfer_encoding(live_api, kind):
    """1. 30,000 nested brackets sent chunked, a 5,000-digit integer, a lone surrogate: a 400 from
    every JSON endpoint, sent with Content-Length and sent chunked (before, the depth guard ran only
    with a Content-Length, and the others were 500s)."""
    body = ANONYMOUS_BODIES[kind]
    for path in ("/api/auth/login", "/api/auth/session", "/api/auth/register", "/api/tickets/reserve",
                 "/api/notifications/register", "/api/events/1/sections/1/waitlist"):
        for payload in (body, chunked(body)):
            r = requests.post(live_api.url + path, data=payload, timeout=30,
                              headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (kind, path, r.status_code, r.text[:200])
            assert r.json()["reason"] in {"json_too_deep", "invalid_json"}


def test_a_lone_surrogate_login_counts_against_the_limit_and_never_skips_it(client, make_user):
    """1. While the per-address limit was used up, a lone-surrogate login still got a 500 (the
    limiter's own error was swallowed and the limit skipped). Now such a body is a 400 before the
    limiter reads it, and a spent limit is a 429 for whatever comes next."""
    address = {"REMOTE_ADDR": "198.51.100.61"}
    for i in range(30):
        client.post("/api/auth/login", json={"email": f"n{i}@example.com", "password": "x" * 8}, environ_base=address)
    r = client.post("/api/auth/login", data=ANONYMOUS_BODIES["lone surrogate"], environ_base=address,
                    content_type="application/json")
    assert r.status_code == 400 and r.json["reason"] == "invalid_json"
    assert client.post("/api/auth/login", json={"email": "ok@example.com", "password": "x" * 8},
                       environ_base=address).status_code == 429


def test_login_and_session_share_their_limits_and_the_lockout(client, make_user):
    """2. Ten wrong passwords on /login and ten more on /session were all 401: twenty guesses a
    window, and after the lockout /session still let the right password in. Now both count
    against one budget per account and one per address."""
    user = make_user()
    for i in range(10):
        path = "/api/auth/login" if i % 2 else "/api/auth/session"
        assert client.post(path, json={"email": user["email"], "password": "wrong-Passw0rd"}).status_code == 401
    for path in ("/api/auth/login", "/api/auth/session"):
        r = client.post(path, json={"email": user["email"], "password": user["password"]})
        assert r.status_code == 429, (path, r.status_code)
    address = {"REMOTE_ADDR": "198.51.100.62"}
    codes = [client.post("/api/auth/login" if i < 15 else "/api/auth/session", environ_base=address,
                         json={"email": f"nobody{i}@example.com", "password": "x" * 8}).status_code for i in range(31)]
    assert codes[:30] == [401] * 30 and codes[30] == 429


@pytest.mark.parametrize("target", ["/\\evil.example/", "/\t/evil.example/", "//evil.example/",
                                    "https://evil.example/", "/\n/evil.example"])
def test_login_never_sends_the_browser_to_another_site(client, target):
    """4. `/account?next=/%5Cevil.example/` ended at http://evil.example/ after login (browsers read
    a backslash as a slash and drop tabs). Only a plain same-origin path survives."""
    page = client.get("/account", query_string={"next": target})
    assert page.status_code == 200
    assert 'data-next="/"' in page.get_data(as_text=True), target
    assert 'data-next="/events/3?x=1"' in client.get("/account?next=/events/3%3Fx%3D1").get_data(as_text=True)


def test_a_refund_job_is_not_readable_under_another_event(app, client, worker, admin, make_event):
    """7. The job of event A read as GET /api/events/B/refunds/<task_id> answered 200 with its
    progress once it had started. Now it is 404 under any other event, in every state."""
    from tests.support import wait_for

    mine, other = make_event(), make_event()
    job = client.post(f"/api/events/{mine['id']}/refunds", headers=admin["headers"]).json
    wait_for(lambda: client.get(job["status_url"], headers=admin["headers"]).json["state"] == "SUCCESS",
             timeout=30, message="the refund job finished")
    r = client.get(f"/api/events/{other['id']}/refunds/{job['task_id']}", headers=admin["headers"])
    assert r.status_code == 404 and r.json["reason"] == "refund_job_not_found"
    assert client.get(f"/api/events/{mine['id']}/refunds/{job['task_id']}",
                      headers=admin["headers"]).status_code == 200


def test_every_html_page_has_a_nonce_csp_no_framing_nosniff_and_a_referrer_policy(client, make_event):
    """8. /api/docs had no CSP and could be framed, the fan pages allowed 'unsafe-inline' scripts,
    and no response sent nosniff."""
    import re

    event = make_event()
    for path in ("/", f"/events/{event['id']}", "/account", "/api/docs"):
        r = client.get(path)
        assert r.status_code == 200 and r.mimetype == "text/html", path
        csp = r.headers["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]+)", csp).group(1)
        assert "'unsafe-inline'" not in script_src and "frame-ancestors 'none'" in csp, (path, csp)
        nonce = re.search(r"'nonce-([^']+)'", script_src).group(1)
        inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", r.get_data(as_text=True))
        assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline), (path, inline)
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert client.get("/", headers={}).headers["Content-Security-Policy"] != client.get("/").headers[
        "Content-Security-Policy"]  # a fresh nonce per response
    assert client.get("/api/events").headers["X-Content-Type-Options"] == "nosniff"  # JSON too


def test_one_address_gets_at_most_five_codes_an_hour_however_they_are_asked_for(app, client, worker, smtp_sink,
                                                                                make_user):
    """3. Registering one e-mail channel 8 times drew 8 codes (each with 5 fresh tries), and 5
    resends 5 more: 13 codes to one address in seconds. Now registering again draws no new code
    while one is live, and every code sent to an address counts against one cap, whichever account
    or route asks."""
    from tests.support import wait_for

    user, other = make_user(), make_user()
    address = f"pump-{uuid.uuid4().hex[:8]}@example.com"
    body = {"channel": "email", "address": address}
    first = client.post("/api/notifications/register", json=body, headers=user["headers"])
    assert first.status_code == 201, first.json
    again = [client.post("/api/notifications/register", json=body, headers=user["headers"]).status_code
             for _ in range(7)]
    assert again == [200] * 7
    url = f"/api/notifications/devices/{first.json['device_id']}/code"
    resends = [client.post(url, headers=user["headers"]) for _ in range(5)]
    assert [r.status_code for r in resends] == [202] * 4 + [429]
    assert resends[-1].json["reason"] == "too_many_codes" and int(resends[-1].headers["Retry-After"]) > 0
    stranger = client.post("/api/notifications/register", json=body, headers=other["headers"])
    assert stranger.status_code == 429 and stranger.json["reason"] == "too_many_codes"

    def sent() -> int:
        return sum(1 for m in smtp_sink.messages if address in m["to"])

    wait_for(lambda: sent() == 5, timeout=30, message="the five codes delivered")


def test_concurrent_registrations_cannot_pass_the_channel_cap(app, live_api, make_user):
    """5. The cap was counted in one transaction and the row written in another: concurrent
    registrations all passed a count of 4. Now the count and the write share a unit under the
    account's row lock."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.notifications.models import Device

    user = make_user()

    def register(i: int) -> int:
        return requests.post(f"{live_api.url}/api/notifications/register", headers=user["headers"], timeout=30,
                             json={"channel": "email", "address": f"cap-{i}-{uuid.uuid4().hex[:6]}@example.com"}
                             ).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(register, range(12)))
    assert sorted(codes) == [201] * 5 + [409] * 7, codes
    with app.app_context():
        assert db.session.scalar(select(func.count(Device.id)).where(Device.user_id == user["id"])) == 5
        db.session.rollback()


def test_a_deleted_account_is_erased_and_none_of_its_tokens_works_anywhere(app, client, make_event, make_user):
    """6. After the user row was deleted, /me said 404, join 202, status 200, notifications/register
    500 and an admitted reserve 202 (then dead-lettered). Now the owner deletes the account through
    the API: name, e-mail and channels erased, and every token of every session refused with a 401,
    on the hot endpoints (checked inside their Redis script call) as on the rest."""
    from sqlalchemy import select

    from app.auth.models import User
    from app.extensions import db
    from app.notifications.models import Device
    from tests.helpers import admitted_pass

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    user = make_user()
    login = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]}).json
    second = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]}).json
    auth = {"Authorization": f"Bearer {login['access_token']}"}
    other_session = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.post("/api/notifications/register", headers=auth, json={
        "channel": "push", "platform": "fcm", "token": f"fcm-{uuid.uuid4().hex}"}).status_code == 201
    token = admitted_pass(client, app, event["id"], {"headers": auth})
    r = client.delete("/api/auth/me", headers=auth, json={"password": "wrong-Passw0rd"})
    assert r.status_code == 401 and r.json["reason"] == "bad_credentials"
    assert client.delete("/api/auth/me", headers=auth, json={"password": user["password"]}).status_code == 204
    for headers in (auth, other_session):
        assert client.get("/api/auth/me", headers=headers).status_code == 401
        assert client.post(f"/api/queue/{event['id']}/join", headers=headers).status_code == 401
        assert client.get(f"/api/queue/{event['id']}/status", headers=headers).status_code == 401
        assert client.post("/api/notifications/register", headers=headers, json={
            "channel": "push", "platform": "fcm", "token": f"fcm-{uuid.uuid4().hex}"}).status_code == 401
        r = client.post("/api/tickets/reserve", json={"event_id": event["id"], "quantity": 1,
                                                      "section_id": event["sections"][0]["id"]},
                        headers={**headers, "X-Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 401 and r.json["reason"] == "token_revoked"
    for refresh in (login["refresh_token"], second["refresh_token"]):
        assert client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {refresh}"}).status_code == 401
    assert client.get("/api/auth/me", headers=user["headers"]).status_code == 401  # a token with no session too
    again = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]})
    assert again.status_code == 401
    with app.app_context():
        row = db.session.get(User, user["id"])
        assert row.deleted_at is not None and user["email"] not in row.email and row.name == ""
        assert db.session.scalars(select(Device).where(Device.user_id == user["id"])).all() == []
        db.session.rollback()


def test_currency_must_be_iso_4217_and_a_demoted_admin_loses_the_rights_at_once(app, client, admin, make_event):
    """Decided: a currency is a real ISO 4217 code (`zzz` was accepted), and an admin demoted while
    holding an access token is refused at the next admin call (roles are re-checked in the
    database on admin endpoints)."""
    from app.auth.models import User
    from app.extensions import db

    event = make_event()
    url = f"/api/events/{event['id']}/sections"
    r = client.post(url, headers=admin["headers"], json={"name": "A", "price_cents": 100, "currency": "zzz",
                                                         "capacity": 5})
    assert r.status_code == 422 and "currency" in r.json["errors"]
    assert client.post(url, headers=admin["headers"], json={"name": "B", "price_cents": 100, "currency": "krw",
                                                            "capacity": 5}).status_code == 201
    with app.app_context():
        db.session.get(User, admin["id"]).is_admin = False
        db.session.commit()
    r = client.post(url, headers=admin["headers"], json={"name": "C", "price_cents": 100, "currency": "EUR",
                                                         "capacity": 5})
    assert r.status_code == 403 and r.json["reason"] == "not_admin"


EXTREMES = [b"1" + b"0" * 5000, b"1e400", b"-9223372036854775809", b"18446744073709551616", b'"\\ud800"',
            b'"\\udfff\\ud800"', b'"' + b"x" * 20_000 + b'"', b"null", b"[]", b"{}", b"true", b'"\\u0000"',
            b"[" * 100 + b"]" * 100]


def test_every_json_operation_survives_extreme_values_sent_both_ways(live_api, make_user, make_event):
    """Our own fuzz over the OpenAPI description, beside schemathesis: every property of every
    JSON request body gets each extreme value (5,000-digit and overflowing integers, lone
    surrogates, NUL, a 20,000-character string, wrong types, deep nesting), sent with a
    Content-Length and sent chunked, as a logged-in admin. No answer may be a 5xx."""
    import itertools

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    token = make_user(admin=True)["token"]
    spec = requests.get(f"{live_api.url}/api/openapi.json", timeout=30).json()
    operations = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if method not in {"post", "put", "patch", "delete"}:
                continue  # e.g. the path's shared "parameters"
            schema = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is None or path.endswith(("/logout", "/me")):
                continue
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            url = path.replace("{event_id}", str(event["id"])).replace("{section_id}",
                                                                       str(event["sections"][0]["id"]))
            url = url.replace("{reservation_id}", str(uuid.uuid4())).replace("{device_id}", str(uuid.uuid4()))
            operations.append((method.upper(), url, sorted(schema.get("properties", {})) or ["x"]))
    assert len(operations) >= 12, operations
    failures = []
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Idempotency-Key": "fuzz", "X-Admission-Token": "fuzz"}
    for (method, url, fields), value in itertools.product(operations, EXTREMES):
        for i, field in enumerate(fields):
            body = b'{"' + field.encode() + b'": ' + value + b"}"
            payload = chunked(body) if i % 2 else body
            r = session.request(method, live_api.url + url, data=payload, headers=headers, timeout=30)
            if r.status_code >= 500:
                failures.append((method, url, field, value[:40], r.status_code, r.text[:120]))
    assert failures == []
