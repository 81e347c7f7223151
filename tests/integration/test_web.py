"""The web app's server side: browser sessions in cookies with CSRF, the ticket QR code, the
translations. (The pages themselves are driven in a browser: tests/integration/test_browser.py.)"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.support import ROOT

TRANSLATIONS = ROOT / "app" / "web" / "translations"


def test_a_browser_session_lives_in_httponly_cookies_and_needs_the_csrf_header(app, client, make_event, make_user):
    user = make_user()
    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    r = client.post("/api/auth/session", json={"email": user["email"], "password": user["password"]})
    assert r.status_code == 200 and "access_token" not in r.json  # never handed to page scripts
    cookies = {c.split("=", 1)[0]: c for c in r.headers.getlist("Set-Cookie")}
    assert "HttpOnly" in cookies["access_token_cookie"] and "HttpOnly" in cookies["refresh_token_cookie"]
    assert "HttpOnly" not in cookies["csrf_access_token"]  # the page copies it into the header
    assert client.get("/api/auth/me").json["email"] == user["email"]
    # a state change without the CSRF header is refused, on the lean hot path and elsewhere
    refused = client.post(f"/api/queue/{event['id']}/join")
    assert refused.status_code == 401 and refused.json["reason"] == "csrf_failed"
    csrf = client.get_cookie("csrf_access_token").value
    assert client.post(f"/api/queue/{event['id']}/join", headers={"X-CSRF-TOKEN": csrf}).status_code == 202
    assert client.post("/api/notifications/register", json={"channel": "email", "address": "x@example.com"}
                       ).status_code == 401
    wrong = client.post(f"/api/queue/{event['id']}/join", headers={"X-CSRF-TOKEN": "forged"})
    assert wrong.status_code == 401 and wrong.json["reason"] == "csrf_failed"
    # refresh through the refresh cookie, with its own CSRF cookie
    refreshed = client.post("/api/auth/refresh", headers={"X-CSRF-TOKEN": client.get_cookie(
        "csrf_refresh_token", path="/").value})
    assert refreshed.status_code == 200 and refreshed.json["token_type"] == "Cookie"
    out = client.delete("/api/auth/session", headers={"X-CSRF-TOKEN": client.get_cookie("csrf_access_token").value})
    assert out.status_code == 204
    assert client.get("/api/auth/me").status_code == 401
    # bearer headers keep working for API clients, with no CSRF header
    assert client.post(f"/api/queue/{event['id']}/join", headers=user["headers"]).status_code == 202


def test_every_page_text_has_a_korean_translation_and_the_catalogue_is_compiled(tmp_path: Path):
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    with open(TRANSLATIONS / "messages.pot", "rb") as f:
        template = read_po(f)
    with open(TRANSLATIONS / "ko" / "LC_MESSAGES" / "messages.po", "rb") as f:
        korean = read_po(f)
    with open(TRANSLATIONS / "ko" / "LC_MESSAGES" / "messages.mo", "rb") as f:
        compiled = read_mo(f)
    wanted = {m.id for m in template if m.id}
    translated = {m.id: m.string for m in korean if m.id and m.string and not m.fuzzy}
    assert wanted <= set(translated), sorted(wanted - set(translated))
    assert {m.id: m.string for m in compiled if m.id} == translated  # `make translations` was run


def test_pages_are_served_in_the_requested_language_and_swagger_needs_no_network(client):
    assert "<h1>공연</h1>" in client.get("/", headers={"Accept-Language": "ko-KR,ko;q=0.9"}).get_data(as_text=True)
    assert "<h1>Events</h1>" in client.get("/?lang=en", headers={"Accept-Language": "ko"}).get_data(as_text=True)
    docs = client.get("/api/docs").get_data(as_text=True)
    assert "/api/docs/assets/swagger-ui-bundle.js" in docs and "cdn" not in docs and "https://" not in docs
    assert client.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_the_console_is_for_admins(client, make_event, make_user, admin):
    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    url = f"/console/events/{event['id']}"
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/account?next=")
    assert client.get(url, headers=make_user()["headers"]).status_code == 403
    page = client.get(url, headers=admin["headers"])
    assert page.status_code == 200 and "Pause" in page.get_data(as_text=True)


def test_swagger_ui_sends_the_authorized_bearer_token_with_every_operation(client):
    """Without a declared security requirement Swagger UI's Authorize sends nothing: the spec
    requires the bearer scheme at its top, and reserve documents the pass and offer headers."""
    spec = client.get("/api/openapi.json").json
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer",
                                                                   "bearerFormat": "JWT"}
    headers = {p["name"] for p in spec["paths"]["/api/tickets/reserve"]["post"]["parameters"] if p["in"] == "header"}
    assert {"X-Admission-Token", "X-Offer-Token", "Idempotency-Key"} <= headers


def test_api_errors_speak_the_fans_language_and_keep_their_reason(app, client, worker, make_event, make_user):
    from tests.helpers import admitted_pass

    event = make_event(sections=[{"name": "Floor", "capacity": 10}], max_per_user=2)
    fan = make_user()
    token = admitted_pass(client, app, event["id"], fan)

    def reserve(quantity: int, language: str | None) -> Any:
        headers = {**fan["headers"], "X-Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex}
        if language:
            headers["Accept-Language"] = language
        return client.post("/api/tickets/reserve", headers=headers,
                           json={"event_id": event["id"], "section_id": event["sections"][0]["id"],
                                 "quantity": quantity})

    english, korean = reserve(3, None), reserve(3, "ko-KR,ko;q=0.9")
    assert english.status_code == korean.status_code == 422
    assert english.json["reason"] == korean.json["reason"] == "limit_exceeded"
    assert english.json["message"] == "At most 2 tickets per user for this event"
    assert korean.json["message"] == "이 공연은 1인당 최대 2장까지 구매할 수 있습니다."
    # the lang cookie (the web app's choice) counts like Accept-Language
    client.set_cookie("lang", "ko")
    missing = client.get("/api/orders/NOPE-NOPE-00", headers=fan["headers"])
    client.delete_cookie("lang")
    assert missing.json["reason"] == "order_not_found" and missing.json["message"] == "주문을 찾을 수 없습니다."


def test_the_session_check_is_a_200_for_nobody_and_names_the_user_otherwise(client, make_user):
    assert client.get("/api/auth/session").json == {"authenticated": False, "user": None}
    fan = make_user()
    body = client.get("/api/auth/session", headers=fan["headers"]).json
    assert body["authenticated"] is True and body["user"]["email"] == fan["email"]
