"""POST /api/tickets/reserve's lean WSGI path (app/booking/fast_reserve.py): it answers a
well-formed request's 202 itself, hands every refusal to Flask, and is seen by clients, logs and
metrics exactly as the Flask view is."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask_jwt_extended import create_access_token
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import admitted_pass

VOLATILE = {"reservation_id", "created_at", "status_url"}  # new per reservation


@pytest.fixture()
def flask_only(app):
    """The same API with the lean path off: every answer from the Flask view (the reference)."""
    from app import create_app

    return create_app({"TESTING": True, "API_RESERVE_FAST_PATH": False})


@pytest.fixture()
def flask_answered(app) -> list[str]:
    """The reserve requests that reached Flask (its before_request hooks) in this test's app."""
    from flask import request

    seen: list[str] = []

    def note() -> None:
        if request.path == "/api/tickets/reserve":
            seen.append(request.headers.get("X-Request-ID", ""))

    app.before_request_funcs.setdefault(None, []).insert(0, note)  # before any that answers early
    yield seen
    app.before_request_funcs[None].remove(note)


def _shape(response) -> dict[str, Any]:
    """What a client sees of an answer, less what is new per reservation."""
    body = response.get_json(silent=True)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    return {"status": response.status_code, "body": body, "type": response.headers.get("Content-Type"),
            "nosniff": response.headers.get("X-Content-Type-Options")}


def test_the_lean_path_answers_every_case_as_the_flask_view_does(app, client, flask_only, flask_answered,
                                                                 make_event, make_user, worker):
    event = make_event(sections=[{"name": "Floor", "capacity": 9}])
    event_id, section_id = event["id"], event["sections"][0]["id"]
    reference = flask_only.test_client()

    def buyer() -> dict[str, Any]:
        user = make_user()
        user["pass"] = admitted_pass(client, app, event_id, user)
        return user

    def reserve(http, user: dict[str, Any] | None, body: Any = None, *, key: str | None = None,
                raw: bytes | None = None, content_type: str = "application/json", query: str = "", **headers: str):
        sent = {"Content-Type": content_type, **headers}
        if user:
            sent.update({**user["headers"], "X-Admission-Token": user["pass"]})
        if key is not None:
            sent["Idempotency-Key"] = key
        data = raw if raw is not None else json.dumps(
            body if body is not None else {"event_id": event_id, "section_id": section_id, "quantity": 1})
        return http.post("/api/tickets/reserve" + query, data=data, headers=sent)

    cases: dict[str, Any] = {
        "accepted": lambda http, u: reserve(http, u, key=uuid.uuid4().hex, **{"X-Request-ID": "req-1"}),
        "no key": lambda http, u: reserve(http, u),
        "unknown field": lambda http, u: reserve(http, u, {"event_id": event_id, "section_id": section_id,
                                                             "quantity": 1, "price": 0}, key="k"),
        "quantity not an integer": lambda http, u: reserve(
            http, u, {"event_id": event_id, "section_id": section_id, "quantity": 1.5}, key="k"),
        "over the per-user limit": lambda http, u: reserve(
            http, u, {"event_id": event_id, "section_id": section_id, "quantity": 5}, key="k"),
        "unknown section": lambda http, u: reserve(http, u, {"event_id": event_id, "section_id": 10**9,
                                                               "quantity": 1}, key="k"),
        "unknown section, in German": lambda http, u: reserve(
            http, u, {"event_id": event_id, "section_id": 10**9, "quantity": 1}, key="k", query="?lang=de"),
        "not JSON": lambda http, u: reserve(http, u, key="k", raw=b"{nope"),
        "nested too deep": lambda http, u: reserve(http, u, key="k", raw=b"[" * 70 + b"]" * 70),
        "a JSON array": lambda http, u: reserve(http, u, key="k", raw=b"[1]"),
        "form body": lambda http, u: reserve(http, u, key="k", raw=b"event_id=1",
                                             content_type="application/x-www-form-urlencoded"),
        "no access token": lambda http, u: reserve(http, None, key="k"),
        "expired access token": lambda http, u: reserve(http, None, key="k", Authorization="Bearer " + _token(
            app, u["id"], expires=timedelta(seconds=-60))),
        "unverified e-mail": lambda http, u: reserve(http, None, key="k", Authorization="Bearer " + _token(
            app, u["id"], verified=False), **{"X-Admission-Token": u["pass"]}),
        "no admission pass": lambda http, u: reserve(http, None, key="k", **u["headers"]),
        "another fan's pass": lambda http, u: reserve(http, None, key="k", **u["headers"],
                                                      **{"X-Admission-Token": buyer()["pass"]}),
    }
    for name, call in cases.items():
        lean, flask = call(client, buyer()), call(reference, buyer())
        assert _shape(lean) == _shape(flask), name
        assert lean.headers["X-Request-ID"] and len(lean.headers) == len(flask.headers), (name, lean.headers)

    # the 202 came from the lean path (no Flask hook ran for it), with the caller's request id;
    # each refusal from the Flask view, under the request id the lean path gave it
    assert "req-1" not in flask_answered and len(flask_answered) == len(cases) - 1
    assert cases["accepted"](client, buyer()).headers["X-Request-ID"] == "req-1"

    # the same key and body: the same reservation; the same key with another body: 422
    fan = buyer()
    first = reserve(client, fan, key="twice")
    again = reserve(client, fan, key="twice")
    assert first.status_code == again.status_code == 202
    assert again.json["reservation_id"] == first.json["reservation_id"]
    reused = reserve(client, fan, {"event_id": event_id, "section_id": section_id, "quantity": 2}, key="twice")
    assert reused.status_code == 422 and reused.json["reason"] == "idempotency_key_reused"

    # sold out (9 units: 1 each to the fans above and the two accepted cases), with the waitlist link
    refusals = []
    for _ in range(4):
        refusals.append(reserve(client, buyer(), {"event_id": event_id, "section_id": section_id, "quantity": 4},
                                key=uuid.uuid4().hex))
    sold_out = [r for r in refusals if r.status_code == 409]
    assert sold_out and sold_out[0].json["reason"] == "sold_out" and "waitlist" in sold_out[0].json["links"]


def test_a_browser_session_reserves_on_the_lean_path_with_its_csrf_header(app, client, flask_answered, make_event,
                                                                           make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    assert client.post("/api/auth/session", json={"email": user["email"], "password": user["password"]}
                       ).status_code == 200
    body = {"event_id": event["id"], "section_id": event["sections"][0]["id"], "quantity": 1}
    headers = {"X-Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex}
    refused = client.post("/api/tickets/reserve", json=body, headers=headers)
    assert refused.status_code == 401 and refused.json["reason"] == "csrf_failed"
    csrf = client.get_cookie("csrf_access_token").value
    accepted = client.post("/api/tickets/reserve", json=body, headers={**headers, "X-CSRF-TOKEN": csrf})
    assert accepted.status_code == 202 and accepted.json["status"] == "pending"
    assert len(flask_answered) == 1  # the refusal only


def test_the_live_servers_lean_answers_are_in_the_request_metrics(app, client, live_api, make_event, make_user):
    """As deployed (granian, multiprocess metrics): a lean 202 is counted where the SLOs and the
    dashboards look, beside the Flask view's answers."""
    event = make_event(sections=[{"name": "Floor", "capacity": 20}])
    fans = [make_user() for _ in range(3)]

    def answered() -> tuple[float, float]:
        """(POST 202s counted, reserve 202s timed) on the live server's /metrics."""
        counted = timed = 0.0
        for family in text_string_to_metric_families(requests.get(f"{live_api.url}/metrics", timeout=10).text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "flask_http_request_total" and labels.get("method") == "POST" \
                        and labels.get("status") == "202":
                    counted += sample.value
                if sample.name == "flask_http_request_duration_seconds_count" and labels.get("status") == "202" \
                        and labels.get("url_rule") == "/api/tickets/reserve":
                    timed += sample.value
        return counted, timed

    before = answered()
    for fan in fans:
        token = admitted_pass(client, app, event["id"], fan)
        r = requests.post(f"{live_api.url}/api/tickets/reserve", timeout=10, json={
            "event_id": event["id"], "section_id": event["sections"][0]["id"], "quantity": 1},
            headers={**fan["headers"], "X-Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 202 and r.headers["X-Content-Type-Options"] == "nosniff", r.text
    after = answered()
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)


def _token(app, user_id: int, expires: timedelta | None = None, verified: bool = True) -> str:
    with app.app_context():
        return create_access_token(identity=str(user_id), additional_claims={"roles": [], "ev": verified},
                                   expires_delta=expires if expires is not None else timedelta(minutes=5))
