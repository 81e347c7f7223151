"""Notifications against moto's SNS server and aiosmtpd, driven by real admissions."""

from __future__ import annotations

import email
import email.policy
import json
import time

import boto3
from sqlalchemy import select

from app.extensions import db
from app.notifications.models import Device, Notification
from app.outbox.models import OutboxEvent
from tests.helpers import advance, code_sent_to
from tests.support import moto_sns_backend, wait_for


def register(client, user, body):
    return client.post("/api/notifications/register", json=body, headers=user["headers"])


def sns(app):
    return boto3.client("sns", region_name="eu-west-1", endpoint_url=app.config["SNS_ENDPOINT_URL"])


def test_register_push_creates_and_reuses_the_sns_endpoint(app, client, make_user):
    user = make_user()
    r = register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-0001"})
    assert r.status_code == 201, r.json
    body = r.json
    assert body["channel"] == "push" and body["enabled"] is True and ":endpoint/GCM/" in body["endpoint_arn"]
    attrs = sns(app).get_endpoint_attributes(EndpointArn=body["endpoint_arn"])["Attributes"]
    assert attrs["Token"] == "fcm-token-0001" and attrs["Enabled"] == "true"

    again = register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-0001"})
    assert again.status_code == 200 and again.json["device_id"] == body["device_id"]
    assert again.json["endpoint_arn"] == body["endpoint_arn"]

    # AWS disabled the endpoint (e.g. the app was uninstalled then reinstalled): registering re-enables it
    sns(app).set_endpoint_attributes(EndpointArn=body["endpoint_arn"], Attributes={"Enabled": "false"})
    register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-0001"})
    attrs = sns(app).get_endpoint_attributes(EndpointArn=body["endpoint_arn"])["Attributes"]
    assert attrs["Enabled"] == "true"

    # the token moves to another account on the same phone: one device, owned by the new account
    other = make_user()
    moved = register(client, other, {"channel": "push", "platform": "fcm", "token": "fcm-token-0001"})
    assert moved.status_code == 201 and moved.json["endpoint_arn"] == body["endpoint_arn"]
    assert client.get("/api/notifications/devices", headers=user["headers"]).json == []

    apns = register(client, user, {"channel": "push", "platform": "apns", "token": "apns-token-0001"})
    assert ":endpoint/APNS/" in apns.json["endpoint_arn"]


def test_register_validation_is_422(client, make_user):
    user = make_user()
    for body in ({"channel": "push", "platform": "wns", "token": "abcdefgh1"},
                 {"channel": "push", "platform": "fcm"},
                 {"channel": "push", "platform": "fcm", "token": "<x>&amp; not a token"},  # found by schemathesis
                 {"channel": "sms", "phone": "0101234567"},
                 {"channel": "email", "address": "not-an-address"},
                 {"channel": "pigeon"}):
        r = register(client, user, body)
        assert r.status_code == 422 and r.json["errors"], (body, r.json)
    assert client.get("/api/notifications/devices", headers=user["headers"]).json == []


def test_devices_list_and_delete(client, make_user):
    owner, stranger = make_user(), make_user()
    device = register(client, owner, {"channel": "sms", "phone": "+821012345678"}).json
    assert [d["device_id"] for d in client.get("/api/notifications/devices", headers=owner["headers"]).json] == [
        device["device_id"]]
    url = f"/api/notifications/devices/{device['device_id']}"
    assert client.delete(url, headers=stranger["headers"]).status_code == 404
    assert client.delete(url, headers=owner["headers"]).status_code == 204
    assert client.get("/api/notifications/devices", headers=owner["headers"]).json == []


def test_admission_notifies_every_channel_once_within_the_target(app, client, worker, smtp_sink, make_event,
                                                                 make_user):
    event = make_event(admit_per_minute=6000, heartbeat_timeout_seconds=1)
    user = make_user(locale="ko")
    push = register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-admit"}).json
    assert push["verified"] is True  # a push token proves itself
    # (only codes sent from now on: the sinks keep the whole run's messages)
    earlier = {t: code_sent_to(t, smtp_sink) for t in ("+821099998888", "fan@example.com")}
    phone = register(client, user, {"channel": "sms", "phone": "+821099998888"}).json
    mailbox = register(client, user, {"channel": "email", "address": "fan@example.com"}).json
    for device, target in ((phone, "+821099998888"), (mailbox, "fan@example.com")):
        assert device["verified"] is False  # used only once the code sent there comes back
        code = wait_for(lambda t=target: (c := code_sent_to(t, smtp_sink)) != earlier[t] and c, timeout=20,
                        message=f"a code to {target}")
        r = client.post(f"/api/notifications/devices/{device['device_id']}/verify", json={"code": code},
                        headers=user["headers"])
        assert r.status_code == 200 and r.json["verified"] is True
    assert client.post(f"/api/queue/{event['id']}/join", headers=user["headers"]).status_code == 202
    time.sleep(1.2)  # the user left the page: no polling, yet registered channels keep the place
    assert advance(app, event["id"]).admitted == [user["id"]]

    def all_sent():
        with app.app_context():
            rows = db.session.scalars(select(Notification).where(Notification.user_id == user["id"])).all()
            db.session.rollback()
            return rows if len(rows) == 3 and all(n.status == "sent" for n in rows) else None

    rows = wait_for(all_sent, timeout=20, message="three notifications sent")
    assert all(n.latency_ms is not None and n.latency_ms < 2000 for n in rows), [n.latency_ms for n in rows]

    backend = moto_sns_backend()
    pushed = list(backend.platform_endpoints[push["endpoint_arn"]].messages.values())
    assert len(pushed) == 1
    payload = json.loads(pushed[0])
    gcm = json.loads(payload["GCM"])
    assert gcm["data"]["deep_link"] == f"ticketapp://queue/{event['id']}"
    assert gcm["data"]["web_link"].endswith(f"/events/{event['id']}/queue") and gcm["data"]["admitted_until"]
    assert gcm["notification"]["title"] == "차례가 되었습니다!"
    assert json.loads(payload["APNS"])["aps"]["alert"]["title"] == "차례가 되었습니다!"
    sms = [m for m in backend.sms_messages.values() if m[0] == "+821099998888" and "/queue" in m[1]]
    assert len(sms) == 1 and f"/events/{event['id']}/queue" in sms[0][1]
    parsed = [email.message_from_string(m["data"], policy=email.policy.default)
              for m in smtp_sink.messages if "fan@example.com" in m["to"]]
    # (the sink keeps the whole run's mail: this admission's notice, not codes or other tests' mail)
    mails = [m for m in parsed
             if f"ticketapp://queue/{event['id']}\n" in m.get_body(("plain",)).get_content().replace("\r\n", "\n")]
    assert len(mails) == 1
    mail = mails[0]
    assert str(mail["Subject"]) == "차례가 되었습니다!"
    assert f"ticketapp://queue/{event['id']}" in mail.get_body(("plain",)).get_content()
    assert f"/events/{event['id']}/queue" in mail.get_body(("html",)).get_content()  # and an HTML part

    # the same admission delivered twice to the task: no second message anywhere
    from tasks.celery_app import celery

    until = rows[0].admitted_until.timestamp()
    admitted_at = rows[0].admitted_at.timestamp()
    celery.send_task("notifications.notify_admitted", args=[user["id"], event["id"], admitted_at, until]).get(10)
    time.sleep(0.5)
    with app.app_context():
        assert db.session.query(Notification).filter_by(user_id=user["id"]).count() == 3
        sent_events = db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == "NotificationSent")).all()
        assert len(sent_events) == 3
        db.session.rollback()
    assert len(backend.platform_endpoints[push["endpoint_arn"]].messages) == 1

    history = client.get("/api/notifications", headers=user["headers"]).json
    assert history["total"] == 3 and {n["status"] for n in history["items"]} == {"sent"}


def test_disabled_endpoint_disables_the_device_without_retrying(app, client, worker, make_event, make_user):
    event = make_event(admit_per_minute=6000)
    user = make_user()
    push = register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-dead"}).json
    sns(app).set_endpoint_attributes(EndpointArn=push["endpoint_arn"], Attributes={"Enabled": "false"})
    client.post(f"/api/queue/{event['id']}/join", headers=user["headers"])
    advance(app, event["id"])

    def failed():
        with app.app_context():
            n = db.session.scalar(select(Notification).where(Notification.user_id == user["id"]))
            db.session.rollback()
            return n if n is not None and n.status == "failed" else None

    n = wait_for(failed, timeout=20, message="failed notification")
    assert n.attempts == 1 and "disabled" in n.error
    with app.app_context():
        assert db.session.get(Device, push["device_id"]).enabled is False
        assert db.session.scalar(select(OutboxEvent).where(OutboxEvent.type == "NotificationFailed")) is not None
        db.session.rollback()


def test_log_channel_when_no_provider_is_configured(app, make_user, make_event, caplog):
    import logging

    from app.notifications import flows

    caplog.set_level(logging.INFO, logger="app.channels")

    user = make_user()
    event = make_event()
    saved = {k: app.config[k] for k in ("SMTP_HOST", "SNS_FCM_APPLICATION_ARN", "SNS_SMS_ENABLED", "VERIFY_CHANNELS")}
    # (verification off: this test is about where an unprovable channel's notice goes)
    app.config.update(SMTP_HOST="", SNS_FCM_APPLICATION_ARN="", SNS_SMS_ENABLED=False, VERIFY_CHANNELS=False)
    app.config["CELERY_ENABLED"] = False
    try:
        with app.app_context():
            device, _ = flows.register_device(user["id"], {"channel": "push", "platform": "fcm",
                                                              "token": "fcm-no-sns-01"})
            assert device.endpoint_arn is None
            flows.register_device(user["id"], {"channel": "email", "address": "x@example.com"})
            now = time.time()
            ids = flows.notify_admitted(user["id"], event["id"], now, now + 600)
            assert len(ids) == 2
            # a second run (a redelivered task) finds nothing left to send
            assert flows.notify_admitted(user["id"], event["id"], now, now + 600) == []
            sent = [flows.send(i) for i in ids]
            # nothing was delivered, so the history must not say `sent`
            assert {n.status for n in sent} == {"logged"} and {n.attempts for n in sent} == {1}
            assert all(n.provider_message_id.startswith("log-") for n in sent)
            # the log line carries what the fan would have read: recipient, text and link
            line = next(r.getMessage() for r in caplog.records if "x@example.com" in r.getMessage())
            assert "not delivered" in line and f"/queue/{event['id']}" in line
    finally:
        app.config.update(saved)
        app.config["CELERY_ENABLED"] = True


def test_push_registration_while_sns_is_down_is_503_and_writes_nothing(app, client, make_user):
    from tests.support import free_port

    user = make_user()
    saved = app.config["SNS_ENDPOINT_URL"]
    app.config["SNS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    try:
        r = register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-down"})
    finally:
        app.config["SNS_ENDPOINT_URL"] = saved
    assert r.status_code == 503 and r.json["reason"] == "push_unavailable" and r.headers["Retry-After"] == "5"
    assert client.get("/api/notifications/devices", headers=user["headers"]).json == []


def test_200_concurrent_registrations_never_fail_and_keep_one_device_per_token(app, live_api, make_user):
    """Distinct users and tokens at once, plus tokens moving between accounts: 0 errors, and each
    token ends up as exactly one device (MariaDB once deadlocked a third of these)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    users = [make_user() for _ in range(180)]
    url = f"{live_api.url}/api/notifications/register"

    def post(item):
        user, token = item
        return requests.post(url, json={"channel": "push", "platform": "fcm", "token": token},
                             headers=user["headers"], timeout=30)

    first = [(u, f"fcm-burst-{i:04d}") for i, u in enumerate(users)]
    # 20 phones change hands while the burst runs: users 0..19's tokens registered by users 160..179
    moves = [(users[160 + i], f"fcm-burst-{i:04d}") for i in range(20)]
    with ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(post, first + moves))
    assert [r.status_code for r in replies if r.status_code not in (200, 201)] == []
    with app.app_context():
        rows = db.session.execute(select(Device.target, Device.user_id).where(Device.channel == "push")).all()
        db.session.rollback()
    tokens = [t for t, _ in rows]
    assert len(tokens) == len(set(tokens)) == 180
    owners = dict(rows)
    for i in range(20):  # each moved token has one owner: whichever registration ran last
        assert owners[f"fcm-burst-{i:04d}"] in {users[i]["id"], users[160 + i]["id"]}
    for i in range(20, 160):
        assert owners[f"fcm-burst-{i:04d}"] == users[i]["id"]


def test_push_registration_when_sns_answers_an_html_500_is_503(app, client, make_user):
    """A proxy's HTML error page instead of SNS's XML is a transient outage (503), never a 500."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Broken(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b"<!doctype html><title>500 Internal Server Error</title>"
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    user = make_user()
    saved = app.config["SNS_ENDPOINT_URL"]
    app.config["SNS_ENDPOINT_URL"] = f"http://127.0.0.1:{server.server_port}"
    try:
        r = register(client, user, {"channel": "push", "platform": "fcm", "token": "fcm-token-html500"})
    finally:
        app.config["SNS_ENDPOINT_URL"] = saved
        server.shutdown()
    assert r.status_code == 503 and r.json["reason"] == "push_unavailable", r.json
    assert client.get("/api/notifications/devices", headers=user["headers"]).json == []


def _mails_to(smtp_sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_string(m["data"], policy=email.policy.default) for m in smtp_sink.messages
            if address in m["to"]]


def test_the_verified_account_email_is_a_channel_by_default_and_can_be_turned_off(app, client, worker, smtp_sink,
                                                                                   make_event, make_user):
    from app.redis.keys import QueueKeys
    from tests.integration.test_after_sale import buy

    fan = make_user(notify_by_email=True, locale="ko")  # no channel registered
    event = make_event(admit_per_minute=6000, name="Mail Night", sections=[{"name": "Floor", "capacity": 5,
                                                                            "price_cents": 40_000,
                                                                            "currency": "KRW"}],
                       refund_fee_percent=10)
    assert client.post(f"/api/queue/{event['id']}/join", headers=fan["headers"]).status_code == 202
    assert advance(app, event["id"]).admitted == [fan["id"]]
    mail = wait_for(lambda: [m for m in _mails_to(smtp_sink, fan["email"]) if "Mail Night" in str(m.get_body(
        ("plain",)).get_content())], timeout=20, message="the admission at the account address")[0]
    assert str(mail["Subject"]) == "차례가 되었습니다!"
    html = mail.get_body(("html",)).get_content()
    assert f"/events/{event['id']}/queue" in html and "Mail Night" in html
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(Notification.user_id == fan["id"])).all()
        assert [(n.channel, n.device_id, n.status) for n in rows] == [("email", None, "sent")]
        db.session.rollback()

    # a refund's notice says how much comes back, in the fan's language
    rid = buy(client, app, event["id"], event["sections"][0]["id"], fan)
    assert client.post(f"/api/tickets/{rid}/refund", headers=fan["headers"]).status_code in (200, 201)
    refund_mail = wait_for(lambda: [m for m in _mails_to(smtp_sink, fan["email"])
                                    if str(m["Subject"]) == "환불이 처리되었습니다"], timeout=20,
                           message="the refund notice")[0]
    text = refund_mail.get_body(("plain",)).get_content()
    assert "₩36,000" in text and "₩4,000" in text and "/tickets" in text

    # turned off: the account e-mail is no channel, so a new sale does not count the fan notifiable
    r = client.patch("/api/auth/me", json={"notify_by_email": False}, headers=fan["headers"])
    assert r.status_code == 200 and r.json["notify_by_email"] is False
    later = make_event(admit_per_minute=6000)
    assert client.post(f"/api/queue/{later['id']}/join", headers=fan["headers"]).status_code == 202
    with app.app_context():
        from app.extensions import redis_store

        assert not redis_store.client.sismember(QueueKeys(later["id"]).notifiable, fan["id"])
    assert client.patch("/api/auth/me", json={}, headers=fan["headers"]).status_code == 422


def test_a_sender_killed_after_its_commit_is_covered_by_the_sweep_and_a_late_one_changes_nothing(
        app, make_user, make_event):
    """Admission notices are written already claimed by the task that sends them. A task killed
    right after that commit leaves them `sending`: the sweep hands them to a new sender, which
    sends each once; the first sender, should it come back late, cannot overwrite that outcome."""
    from sqlalchemy import select

    from app.db import transaction
    from app.extensions import db
    from app.notifications import flows, services
    from app.notifications.models import Notification

    user = make_user()
    event = make_event()
    saved = {k: app.config[k] for k in ("SMTP_HOST", "VERIFY_CHANNELS", "CELERY_ENABLED")}
    app.config.update(SMTP_HOST="", VERIFY_CHANNELS=False, CELERY_ENABLED=False)  # the log channel
    try:
        with app.app_context():
            flows.register_device(user["id"], {"channel": "email", "address": "late@example.com"})
            now = time.time()
            token = services.new_claim_token()
            with transaction():  # what notify_admissions commits before its sends: then the kill
                assert services.record_notices(event["id"], now, [(user["id"], now + 600)],
                                               claim_token=token) == []
                stale_jobs = services.jobs_of(services.claim([], token))
            assert len(stale_jobs) == 1
            row_id = stale_jobs[0][0].id
            assert db.session.scalar(select(Notification.status).where(Notification.id == row_id)) == "sending"
            # a re-run of the task (a redelivery) neither adds a row nor sends the claimed one
            assert flows.notify_admissions(event["id"], now, [(user["id"], now + 600)]) == []
            assert flows.requeue_stale_sends(older_than_seconds=0) == 1
            resent = flows.send(row_id)
            assert (resent.status, resent.attempts) == ("logged", 2)
            # the killed sender's late outcome is not written over the new one
            with transaction():
                services.record(stale_jobs, [("transient", RuntimeError("late"))])
            db.session.expire_all()
            late = db.session.get(Notification, row_id)
            assert (late.status, late.error, late.provider_message_id) == ("logged", None, resent.provider_message_id)
    finally:
        app.config.update(saved)


def test_pushes_while_sns_is_unreachable_go_back_to_pending_and_are_sent_once_it_answers(app, client, make_user,
                                                                                         make_event):
    """Mobile pushes go out from the worker process's asyncio loop (channels.PushSender). SNS
    unreachable mid-slice: every push of the slice is a transient failure, back to `pending` with
    the error and no outcome lost; the retry, once SNS answers, sends each exactly once."""
    from app.notifications import flows
    from tests.support import free_port

    event = make_event()
    users = [make_user() for _ in range(3)]
    for i, user in enumerate(users):
        assert register(client, user, {"channel": "push", "platform": "fcm", "token": f"fcm-down-{i}"}).status_code \
            in (200, 201)
    saved = {k: app.config[k] for k in ("SNS_ENDPOINT_URL", "CELERY_ENABLED")}
    now = time.time()
    try:
        with app.app_context():
            app.config.update(SNS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", CELERY_ENABLED=False)
            ids = flows.notify_admissions(event["id"], now, [(u["id"], now + 600) for u in users])
            assert len(ids) == 3
            rows = [db.session.get(Notification, i) for i in ids]
            assert {(n.status, n.attempts) for n in rows} == {("pending", 1)}
            assert all("SNS unreachable" in n.error for n in rows)
            app.config.update(SNS_ENDPOINT_URL=saved["SNS_ENDPOINT_URL"])  # SNS is back: the retries
            sent = [flows.send(i) for i in ids]
            assert {(n.status, n.attempts, n.error) for n in sent} == {("sent", 2, None)}
            assert len({n.provider_message_id for n in sent}) == 3
            assert flows.notify_admissions(event["id"], now, [(u["id"], now + 600) for u in users]) == []
    finally:
        app.config.update(saved)
