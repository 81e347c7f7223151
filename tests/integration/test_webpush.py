"""Web Push (issue #27): a browser's subscription is a channel; "your turn" reaches it even with
every tab closed. The worker encrypts each notice to the subscription's keys and signs it with our
VAPID key (pywebpush); a push service on loopback receives it and decrypts it as the browser would
(http_ece)."""

from __future__ import annotations

import base64
import time

from sqlalchemy import select

from app.extensions import db
from app.notifications.models import Device, Notification
from tests.helpers import advance
from tests.support import wait_for


def register(client, user, subscription):
    return client.post("/api/notifications/register", headers=user["headers"],
                       json={"channel": "webpush", "subscription": subscription})


def test_a_closed_tab_hears_its_turn_by_web_push(app, client, worker, push_service, make_event, make_user):
    config = client.get("/api/notifications/webpush").json
    assert config["enabled"] is True and len(base64.urlsafe_b64decode(config["public_key"] + "==")) == 65
    event = make_event(admit_per_minute=6000, name="Push Night")
    fan = make_user()
    name, subscription = push_service.subscription()
    r = register(client, fan, subscription)
    assert r.status_code == 201 and r.json["channel"] == "webpush" and r.json["verified"] is True
    assert register(client, fan, subscription).status_code == 200  # the same subscription again
    assert client.post(f"/api/queue/{event['id']}/join", headers=fan["headers"]).status_code == 202
    assert advance(app, event["id"]).admitted == [fan["id"]]

    messages = wait_for(lambda: push_service.messages(name), timeout=20, message="the push")
    assert len(messages) == 1
    notice = messages[0]
    assert notice["title"] == "It's your turn!" and "Push Night" in notice["body"]
    assert notice["url"].endswith(f"/events/{event['id']}/queue") and notice["type"] == "queue_admitted"
    headers = push_service.headers(name)[0]
    assert headers["content-encoding"] == "aes128gcm" and int(headers["ttl"]) > 0
    assert headers["authorization"].startswith("vapid t=") and f"k={config['public_key']}" in headers["authorization"]
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(Notification.user_id == fan["id"])).all()
        assert [(n.channel, n.status) for n in rows] == [("webpush", "sent")]
        db.session.rollback()
    time.sleep(0.5)
    assert len(push_service.messages(name)) == 1  # once


def test_a_subscription_the_browser_dropped_is_disabled(app, client, worker, push_service, make_event, make_user):
    event = make_event(admit_per_minute=6000)
    fan = make_user()
    _name, subscription = push_service.subscription(gone=True)
    device = register(client, fan, subscription).json
    client.post(f"/api/queue/{event['id']}/join", headers=fan["headers"])
    advance(app, event["id"])

    def disabled():
        with app.app_context():
            row = db.session.get(Device, device["device_id"])
            db.session.rollback()
            return row is not None and not row.enabled

    wait_for(disabled, timeout=20, message="the device disabled after 410")
    with app.app_context():
        assert db.session.scalars(select(Notification.status).where(Notification.user_id == fan["id"])).all() == [
            "failed"]
        db.session.rollback()


def test_a_subscription_must_point_at_a_push_service(client, make_user):
    fan = make_user()
    aimed = {"endpoint": "http://10.0.0.7/internal", "keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22}}
    r = register(client, fan, aimed)
    assert r.status_code == 422 and r.json["reason"] == "unknown_push_service"
    r = client.post("/api/notifications/register", headers=fan["headers"], json={"channel": "webpush"})
    assert r.status_code == 422 and "subscription" in r.json["errors"]
