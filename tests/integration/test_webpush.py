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


def vapid_claims(authorization: str, public_key: str, audience: str) -> dict:
    """The VAPID JWT of a push request, its ES256 signature verified with the server's public key
    (RFC 8292), as a push service does before accepting it."""
    import re

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    token = re.search(r"\bt=([^,\s]+)", authorization).group(1)
    point = base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    return jwt.decode(token, key=key, algorithms=["ES256"], audience=audience)


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
    claims = vapid_claims(headers["authorization"], config["public_key"], push_service.origin)
    assert claims["sub"].startswith("mailto:") and claims["exp"] > time.time()
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


def test_the_service_worker_registers_and_shows_a_pushed_notice(live_stream, browser):
    """Headless chromium has no push service to subscribe at, so the push is delivered the way
    DevTools does it (ServiceWorker.deliverPushMessage): the page's worker shows the notice."""
    import json

    from tests.browser import Tab, session

    with session(browser, live_stream.url, "service-worker") as context:
        context.grant_permissions(["notifications"], origin=live_stream.url)
        tab = Tab(context, live_stream.url)
        page = tab.go("/")
        scope = page.evaluate("async () => (await navigator.serviceWorker.register('/sw.js')).scope")
        assert scope == live_stream.url + "/"
        page.evaluate("async () => { await navigator.serviceWorker.ready; }")
        cdp = context.new_cdp_session(page)
        versions: list[dict] = []
        cdp.on("ServiceWorker.workerVersionUpdated", lambda e: versions.extend(e["versions"]))
        cdp.send("ServiceWorker.enable")
        # the version DevTools reports activated is the one a push reaches (a registration alone
        # may still be installing: a push then is dropped, as seen with one chromium build)
        ours = wait_for(lambda: page.wait_for_timeout(50) or [v for v in versions if v["scriptURL"].endswith("/sw.js")
                                                             and v["status"] == "activated"],
                        timeout=10, message="the worker activated")[0]
        notice = {"title": "It's your turn!", "body": "You can now book Push Night.", "type": "queue_admitted",
                  "event_id": "7", "url": f"{live_stream.url}/events/7/queue"}

        def delivered_and_shown() -> list:
            # a push service redelivers what was not acknowledged; the notice's tag makes a
            # redelivery replace the first notice, never add a second
            cdp.send("ServiceWorker.deliverPushMessage", {"origin": live_stream.url,
                                                          "registrationId": ours["registrationId"],
                                                          "data": json.dumps(notice)})
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                shown = page.evaluate("""async () => (await (await navigator.serviceWorker.ready)
                    .getNotifications()).map(n => [n.title, n.body, n.data.url])""")
                if shown:
                    return shown
                page.wait_for_timeout(100)
            return []

        shown = wait_for(delivered_and_shown, timeout=20, interval=0, message="the notice shown")
        assert shown == [[notice["title"], notice["body"], notice["url"]]]
        assert not tab.errors, tab.errors
