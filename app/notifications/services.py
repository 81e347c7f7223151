"""Notification rules: device registration, the admission notice, delivery and its history."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.auth.models import User
from app.catalogue.models import Event
from app.db import utcnow
from app.errors import AppError, NotFound, Unprocessable
from app.extensions import db, redis_store
from app.notifications import channels
from app.notifications.models import CHANNEL_EMAIL, CHANNEL_PUSH, CHANNEL_SMS, Device, Notification
from app.observability.metrics import NOTIFICATION_LATENCY, NOTIFICATIONS
from app.outbox.services import record_event
from app.pagination import paginate
from app.queue.keys import QueueKeys, user_queues_key
from app.tasking import enqueue_after_commit

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6


def devices_cache_key(user_id: int) -> str:
    return f"n:user:{{{user_id}}}:devices"


def _target_hash(target: str) -> str:
    return hashlib.sha256(target.encode()).hexdigest()


def _platform_application_arn(platform: str) -> str:
    key = "SNS_FCM_APPLICATION_ARN" if platform == "fcm" else "SNS_APNS_APPLICATION_ARN"
    return current_app.config[key]


def register_device(user_id: int, data: dict[str, Any]) -> tuple[Device, bool]:
    """Create or refresh a device; the same token/address again returns the same device."""
    channel = data["channel"]
    target = {CHANNEL_PUSH: data.get("token"), CHANNEL_EMAIL: data.get("address"),
              CHANNEL_SMS: data.get("phone")}[channel]
    if channel == CHANNEL_EMAIL:
        target = target.strip().lower()
    digest = _target_hash(target)
    session = db.session
    device = session.scalar(select(Device).where(Device.user_id == user_id, Device.channel == channel,
                                                 Device.target_hash == digest))
    created = device is None
    if device is None:
        device = Device(user_id=user_id, channel=channel, target=target, target_hash=digest,
                        platform=data.get("platform"))
        session.add(device)
    if channel == CHANNEL_PUSH:
        device.platform = data["platform"]
        # a token lives on one phone: if another account registered it, that account loses it
        session.execute(delete(Device).where(Device.channel == CHANNEL_PUSH, Device.target_hash == digest,
                                             Device.user_id != user_id))
        application_arn = _platform_application_arn(data["platform"])
        if application_arn:
            try:
                device.endpoint_arn = channels.ensure_platform_endpoint(
                    application_arn, target, device.endpoint_arn, user_data=str(user_id))
            except channels.TransientError as exc:
                session.rollback()
                raise AppError("The push service is unavailable; try again shortly", status_code=503,
                               reason="push_unavailable", headers={"Retry-After": "5"}) from exc
            except channels.PermanentError as exc:
                session.rollback()
                raise Unprocessable(f"The push token was not accepted: {exc}", reason="push_token_rejected",
                                    errors={"token": [str(exc)]}) from exc
    device.enabled = True
    try:
        session.commit()
    except IntegrityError:  # the same device registered concurrently
        session.rollback()
        device = session.scalar(select(Device).where(Device.user_id == user_id, Device.channel == channel,
                                                     Device.target_hash == digest))
        created = False
    refresh_cache(user_id)
    return device, created


def refresh_cache(user_id: int) -> None:
    """Redis copy of the user's enabled channels, read on the admission hot path."""
    devices = db.session.scalars(select(Device).where(Device.user_id == user_id, Device.enabled.is_(True))).all()
    client = redis_store.client
    key = devices_cache_key(user_id)
    pipe = client.pipeline(transaction=False)
    pipe.delete(key)
    if devices:
        pipe.hset(key, mapping={d.id: json.dumps({"channel": d.channel, "platform": d.platform})
                                for d in devices})
    queues = client.smembers(user_queues_key(user_id))
    for event_id in queues:
        notifiable = QueueKeys(int(event_id)).notifiable
        if devices:
            pipe.sadd(notifiable, user_id)
        else:
            pipe.srem(notifiable, user_id)
    pipe.execute()


def list_devices(user_id: int) -> list[Device]:
    return list(db.session.scalars(select(Device).where(Device.user_id == user_id).order_by(Device.created_at)))


def delete_device(user_id: int, device_id: str) -> None:
    device = db.session.get(Device, device_id)
    if device is None or device.user_id != user_id:
        raise NotFound("Device not found", reason="device_not_found")
    endpoint_arn = device.endpoint_arn
    db.session.delete(device)
    db.session.commit()
    if endpoint_arn:
        try:
            channels.sns_client().delete_endpoint(EndpointArn=endpoint_arn)
        except Exception:  # noqa: BLE001 - the row is gone; a stale endpoint only costs AWS a record
            log.warning("could not delete SNS endpoint %s", endpoint_arn, exc_info=True)
    refresh_cache(user_id)


def list_notifications(user_id: int, page: int, page_size: int) -> tuple[list[Notification], int]:
    return paginate(select(Notification).where(Notification.user_id == user_id)
                    .order_by(Notification.created_at.desc(), Notification.id), page, page_size)


# --- the admission notice ------------------------------------------------------------------------

TEXTS = {
    "en": ("It's your turn!", "You can now book {event}. Your place is held until {deadline}."),
    "ko": ("차례가 되었습니다!", "지금 {event} 예매를 진행하세요. {deadline}까지 자리가 유지됩니다."),
}


def build_message(user: User, event: Event, admitted_until: datetime) -> channels.Message:
    title, body = TEXTS.get(user.locale, TEXTS["en"])
    deadline = admitted_until.strftime("%H:%M UTC")
    links = {"event_id": event.id}
    cfg = current_app.config
    return channels.Message(title=title, body=body.format(event=event.name, deadline=deadline),
                            deep_link=cfg["NOTIFY_DEEP_LINK_TEMPLATE"].format(**links),
                            web_link=cfg["NOTIFY_WEB_LINK_TEMPLATE"].format(**links),
                            event_id=event.id, admitted_until_iso=admitted_until.isoformat())


def notify_admitted(user_id: int, event_id: int, admitted_at: float, admitted_until: float) -> list[str]:
    """One notification row per enabled device for this admission (a re-run adds none), then
    a send task per row that is not delivered yet. Returns the ids to send."""
    session = db.session
    devices = session.scalars(select(Device).where(Device.user_id == user_id, Device.enabled.is_(True))).all()
    admission = f"admitted:{event_id}:{user_id}:{int(admitted_until * 1000)}"
    to_send = []
    for device in devices:
        dedupe_key = f"{admission}:{device.id}"
        existing = session.scalar(select(Notification).where(Notification.dedupe_key == dedupe_key))
        if existing is None:
            existing = Notification(dedupe_key=dedupe_key, user_id=user_id, event_id=event_id, device_id=device.id,
                                    channel=device.channel, kind="admitted",
                                    admitted_at=datetime.fromtimestamp(admitted_at, UTC),
                                    admitted_until=datetime.fromtimestamp(admitted_until, UTC))
            session.add(existing)
            try:
                session.flush()
            except IntegrityError:  # a concurrent run created it
                session.rollback()
                return notify_admitted(user_id, event_id, admitted_at, admitted_until)
        if existing.status == "pending":
            to_send.append(existing.id)
            enqueue_after_commit(session, "notifications.send", [existing.id])
    session.commit()
    return to_send


def _deliver(device: Device | None, notification: Notification, message: channels.Message) -> tuple[str, str]:
    """(provider message id, channel used). Falls back to `log` where no provider is configured."""
    cfg = current_app.config
    if device is None:
        raise channels.PermanentError("device was removed")
    if device.channel == CHANNEL_PUSH and device.endpoint_arn:
        return channels.send_push(device.endpoint_arn, message), "push"
    if device.channel == CHANNEL_SMS and cfg["SNS_SMS_ENABLED"]:
        return channels.send_sms(device.target, message), "sms"
    if device.channel == CHANNEL_EMAIL and cfg["SMTP_HOST"]:
        return channels.send_email(device.target, message), "email"
    return channels.send_log(device.target, message), "log"


def send(notification_id: str) -> Notification | None:
    """Deliver one notification. Raises TransientError for the task to retry with backoff."""
    session = db.session
    n = session.scalar(select(Notification).where(Notification.id == notification_id).with_for_update())
    if n is None or n.status != "pending":
        session.rollback()
        return n
    device = session.get(Device, n.device_id) if n.device_id else None
    user = session.get(User, n.user_id)
    event = session.get(Event, n.event_id)
    n.attempts += 1
    try:
        message = build_message(user, event, n.admitted_until)
        provider_id, used = _deliver(device, n, message)
    except channels.TransientError as exc:
        n.error = str(exc)[:2000]
        if n.attempts >= MAX_ATTEMPTS:
            return _fail(n, device, str(exc), disable=False)
        session.commit()
        NOTIFICATIONS.labels(channel=n.channel, outcome="retry").inc()
        raise
    except channels.PermanentError as exc:
        return _fail(n, device, str(exc), disable=exc.disable_device)
    now = utcnow()
    n.status = "sent"
    n.sent_at = now
    n.provider_message_id = provider_id
    n.error = None
    latency = max(0.0, (now - n.admitted_at).total_seconds())
    n.latency_ms = int(latency * 1000)
    record_event(session, "NotificationSent", "notification", n.id, _event_data(n, via=used))
    session.commit()
    NOTIFICATIONS.labels(channel=n.channel, outcome="sent").inc()
    NOTIFICATION_LATENCY.labels(channel=n.channel).observe(latency)
    return n


def _fail(n: Notification, device: Device | None, error: str, *, disable: bool) -> Notification:
    session = db.session
    n.status = "failed"
    n.error = error[:2000]
    if disable and device is not None:
        device.enabled = False
    record_event(session, "NotificationFailed", "notification", n.id, _event_data(n, error=error))
    session.commit()
    NOTIFICATIONS.labels(channel=n.channel, outcome="disabled" if disable else "failed").inc()
    if disable:
        refresh_cache(n.user_id)
    return n


def _event_data(n: Notification, **extra: Any) -> dict[str, Any]:
    return {"notification_id": n.id, "user_id": n.user_id, "event_id": n.event_id, "device_id": n.device_id,
            "channel": n.channel, "attempts": n.attempts, "latency_ms": n.latency_ms, **extra}
