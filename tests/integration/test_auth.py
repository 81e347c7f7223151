"""Auth flows and every error case: register, login, refresh, logout (revocation), me."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.auth.models import User
from app.extensions import db


def register(client, email="ann@example.com", password="fan-s3cret-2026", name="Ann"):
    return client.post("/api/auth/register", json={"email": email, "password": password, "name": name})


def login(client, email="ann@example.com", password="fan-s3cret-2026"):
    return client.post("/api/auth/login", json={"email": email, "password": password})


def test_register_login_me_refresh_logout(client, app):
    r = register(client)
    assert r.status_code == 201
    assert r.json["email"] == "ann@example.com" and r.json["name"] == "Ann"
    assert "password" not in r.json and "password_hash" not in r.json
    with app.app_context():
        stored = db.session.get(User, r.json["id"])
        assert stored.password_hash != "fan-s3cret-2026" and "fan-s3cret-2026" not in stored.password_hash

    r = login(client, email="ANN@example.com ")
    assert r.status_code == 200
    body = r.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 15 * 60
    access = {"Authorization": f"Bearer {body['access_token']}"}
    refresh = {"Authorization": f"Bearer {body['refresh_token']}"}

    me = client.get("/api/auth/me", headers=access)
    assert me.status_code == 200 and me.json["roles"] == ["user"]

    r = client.post("/api/auth/refresh", headers=refresh)
    assert r.status_code == 200 and r.json["access_token"] and r.json["expires_in"] == 900
    refresh = {"Authorization": f"Bearer {r.json['refresh_token']}"}  # rotated: the old one is spent
    # an access token cannot be used to refresh, nor a refresh token to call the API
    assert client.post("/api/auth/refresh", headers=access).status_code == 401
    assert client.get("/api/auth/me", headers=refresh).status_code == 401

    assert client.post("/api/auth/logout", headers=access).status_code == 204
    r = client.get("/api/auth/me", headers=access)
    assert r.status_code == 401 and r.json["reason"] == "token_revoked"
    # logging out ended the session: its refresh token is dead too
    r = client.post("/api/auth/refresh", headers=refresh)
    assert r.status_code == 401 and r.json["reason"] == "session_revoked"


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_whole_session(client, make_user):
    """Rotation with reuse detection: a refresh token is good once. If a spent one comes back (it
    was stolen, or replayed), both holders are cut off: the session is revoked."""
    user = make_user()
    body = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]}).json
    first = {"Authorization": f"Bearer {body['refresh_token']}"}
    second = client.post("/api/auth/refresh", headers=first).json
    assert second["refresh_token"] != body["refresh_token"]
    third = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {second['refresh_token']}"}).json
    assert third["access_token"]
    # the attacker replays the first, spent token
    r = client.post("/api/auth/refresh", headers=first)
    assert r.status_code == 401 and r.json["reason"] == "refresh_token_reused"
    # and the legitimate holder's current token no longer works either: log in again
    r = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {third['refresh_token']}"})
    assert r.status_code == 401 and r.json["reason"] == "session_revoked"
    # a new login is a new session
    again = client.post("/api/auth/login", json={"email": user["email"], "password": user["password"]}).json
    assert client.post("/api/auth/refresh",
                       headers={"Authorization": f"Bearer {again['refresh_token']}"}).status_code == 200


def test_duplicate_email_is_409(client):
    assert register(client).status_code == 201
    r = register(client, email="Ann@Example.com")
    assert r.status_code == 409
    assert r.json["code"] == 409 and r.json["status"] == "Conflict" and "errors" in r.json


@pytest.mark.parametrize("payload,field", [
    ({"email": "not-an-email", "password": "fan-s3cret-2026", "name": "A"}, "email"),
    ({"email": "a@example.com", "password": "short1", "name": "A"}, "password"),
    ({"email": "a@example.com", "password": "onlyletters", "name": "A"}, "password"),
    # common passwords are refused whatever their length and mix (zxcvbn, issue #11)
    ({"email": "a@example.com", "password": "password1", "name": "A"}, "password"),
    ({"email": "a@example.com", "password": "qwerty12", "name": "A"}, "password"),
    ({"email": "anna.lee@example.com", "password": "annalee2026", "name": "Anna Lee"}, "password"),
    ({"email": "a@example.com", "password": "fan-s3cret-2026", "name": "   "}, "name"),
    ({"email": "a@example.com", "password": "fan-s3cret-2026"}, "name"),
])
def test_register_validation_is_422_with_field_errors(client, payload, field):
    r = client.post("/api/auth/register", json=payload)
    assert r.status_code == 422
    assert field in r.json["errors"]
    assert r.json["message"]


def test_bad_credentials_are_401(client):
    register(client)
    assert login(client, password="wrongpass1").status_code == 401
    r = login(client, email="nobody@example.com")
    assert r.status_code == 401 and r.json["reason"] == "bad_credentials"


def test_token_errors_are_json_401(client, app):
    from flask_jwt_extended import create_access_token

    assert client.get("/api/auth/me").json["reason"] == "token_missing"
    r = client.get("/api/auth/me", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401 and r.is_json and r.json["reason"] == "token_invalid"
    r = client.get("/api/auth/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and r.is_json
    with app.app_context():
        expired = create_access_token(identity="1", expires_delta=timedelta(seconds=-1))
        forged = create_access_token(identity="1")[:-4] + "AAAA"
    r = client.get("/api/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json["reason"] == "token_expired"
    r = client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.is_json


def test_revocation_expires_with_the_token(client, app):
    from app.extensions import redis_store

    register(client)
    token = login(client).json["access_token"]
    client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
    with app.app_context():
        keys = redis_store.client.keys("jwt:revoked:*")
        assert len(keys) == 2  # the token's own, and its session's (every access token it issued)
        ttls = [redis_store.client.ttl(key) for key in keys]
    # the TTL, not a cleanup job, bounds the blocklist's size: an access token's lifetime at most
    assert all(0 < ttl <= 15 * 60 + 61 for ttl in ttls), ttls


def test_hot_endpoints_verify_tokens_as_strictly_as_the_others(client, app, make_user):
    """Queue status/join and reserve use the lean HS256 verifier: the same 401s as every endpoint."""
    from datetime import timedelta as td

    from flask_jwt_extended import create_access_token, create_refresh_token

    user = make_user()
    with app.app_context():
        expired = create_access_token(identity=str(user["id"]), expires_delta=td(seconds=-5))
        refresh = create_refresh_token(identity=str(user["id"]))
    good = user["token"]
    head, payload, signature = good.split(".")
    cases = {
        None: "token_missing",
        "Token " + good: "token_missing",
        "Bearer " + expired: "token_expired",
        "Bearer " + refresh: "token_invalid",
        "Bearer " + f"{head}.{payload}.{signature[:-2]}AA": "token_invalid",  # tampered signature
        "Bearer " + f"{head}.{payload}!.{signature}": "token_invalid",  # not base64url
        "Bearer " + "a.b": "token_invalid",
    }
    for path, method in (("/api/queue/1/status", "get"), ("/api/queue/1/join", "post"),
                         ("/api/tickets/reserve", "post")):
        for auth, reason in cases.items():
            headers = {"Authorization": auth} if auth else {}
            r = getattr(client, method)(path, headers=headers)
            assert (r.status_code, r.json["reason"]) == (401, reason), (path, auth, r.json)
        # the same token through flask-jwt-extended and through the lean path: both accept it
        assert client.get("/api/auth/me", headers=user["headers"]).status_code == 200
