"""Notification rules: device registration, the admission notice, delivery and its history."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Row, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app import channels, verification
from app.auth.models import User
from app.auth.signals import account_channels_changed, account_deleting
from app.catalogue.models import Event
from app.db import bulk_insert, bulk_update, lock_rows, new_uuid, utcnow
from app.errors import AppError, Conflict, NotFound, Unprocessable
from app.extensions import db, redis_store
from app.notifications.models import CHANNEL_EMAIL, CHANNEL_PUSH, CHANNEL_SMS, CHANNEL_WEBPUSH, Device, Notification
from app.observability.metrics import NOTIFICATION_LATENCY, NOTIFICATIONS
from app.outbox.services import outbox_row, record_events
from app.pagination import paginate
from app.redis.keys import REGISTRY_KEY, QueueKeys, user_devices_key, user_queues_key
from app.tasking import call_after_commit, send_task, send_task_after_commit

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6


def devices_cache_key(user_id: int) -> str:
    return user_devices_key(user_id)


def target_hash(target: str) -> str:
    return hashlib.sha256(target.encode()).hexdigest()


def _platform_application_arn(platform: str) -> str:
    key = "SNS_FCM_APPLICATION_ARN" if platform == "fcm" else "SNS_APNS_APPLICATION_ARN"
    return current_app.config[key]


REGISTER_ATTEMPTS = 4


def ensure_endpoint(platform: str, token: str, endpoint_arn: str | None, user_id: int) -> str | None:
    application_arn = _platform_application_arn(platform)
    if not application_arn:
        return endpoint_arn
    try:
        try:
            return channels.ensure_platform_endpoint(application_arn, token, endpoint_arn, user_data=str(user_id))
        except channels.TransientError:
            # one more try after a short pause (botocore has retried once already): a throttled or
            # briefly failing SNS should not cost the fan their sign-up
            time.sleep(random.uniform(0.1, 0.3))
            return channels.ensure_platform_endpoint(application_arn, token, endpoint_arn, user_data=str(user_id))
    except channels.TransientError as exc:
        raise AppError("The push service is unavailable; try again shortly", status_code=503,
                       reason="push_unavailable", headers={"Retry-After": "5"}) from exc
    except channels.PermanentError as exc:
        raise Unprocessable(f"The push token was not accepted: {exc}", reason="push_token_rejected",
                            errors={"token": [str(exc)]}) from exc


def forget_channels(session: Session, user_id: int) -> None:
    """Every channel of a deleted account goes (its addresses and numbers are personal data), and
    its notification cache with them once the unit commits."""
    session.execute(delete(Device).where(Device.user_id == user_id))
    call_after_commit(session, lambda: redis_store.client.delete(devices_cache_key(user_id)))


@account_deleting.connect
def _forget_deleted_account(user_id: int, session: Session, **_: Any) -> None:
    forget_channels(session, user_id)


@account_channels_changed.connect
def _follow_account_channels(user_id: int, session: Session | None = None, **_: Any) -> None:
    """The account e-mail is a channel: the cache follows a verified address or notify_by_email
    once its unit commits, and is refreshed at once at login (no unit: app/auth/api.py)."""
    if session is None:
        refresh_cache(user_id)
    else:
        call_after_commit(session, lambda: refresh_cache(user_id))


def check_webpush_endpoint(endpoint: str) -> None:
    """A subscription must point at a known push service (WEBPUSH_ENDPOINT_HOSTS): the worker POSTs
    to it, and an arbitrary URL would aim it at internal hosts. Web push must be configured."""
    from urllib.parse import urlsplit

    cfg = current_app.config
    if not cfg["WEBPUSH_VAPID_PRIVATE_KEY"]:
        raise Unprocessable("Web push is not configured here", reason="webpush_not_configured")
    host = (urlsplit(endpoint).hostname or "").lower()
    if not any(host == allowed or host.endswith("." + allowed) for allowed in cfg["WEBPUSH_ENDPOINT_HOSTS"]):
        raise Unprocessable("The subscription's endpoint is not a known push service", reason="unknown_push_service")


def lock_channels_of(session: Session, user_id: int) -> None:
    """Serialise changes to one account's channels (its user row, FOR UPDATE)."""
    lock_rows(session, select(User.id).where(User.id == user_id).with_for_update())


def check_channel_cap(session: Session, user_id: int) -> None:
    """A cap on channels per account: one account may not fan an admission out to 30 phones."""
    count = session.scalar(select(func.count(Device.id)).where(Device.user_id == user_id)) or 0
    cap = current_app.config["NOTIFY_MAX_CHANNELS"]
    if count >= cap:
        raise Conflict(f"At most {cap} channels per account; remove one first", reason="too_many_channels")


def send_code(device: Device) -> None:
    """A new verification code, sent to the address or number itself (by a task: no network call
    in the request). Asking again replaces the previous code."""
    code = verification.issue(f"device:{device.id}", destination=f"{device.channel}:{device.target.strip().lower()}")
    send_task("notifications.send_code", [device.id, code])


def code_message(device_id: str, code: str) -> tuple[Device, channels.Message] | None:
    """The device and the text of its verification code (flows.deliver_code sends it, holding
    nothing); None when it was removed or proved meanwhile."""
    device = db.session.get(Device, device_id)
    if device is None or device.verified_at is not None:
        return None
    user = db.session.get(User, device.user_id)
    title, body = CODE_TEXTS.get(user.locale if user else "en", CODE_TEXTS["en"])
    return device, channels.Message.text(title, body.format(code=code))


def verify_device(user_id: int, device_id: str, code: str) -> Device:
    device = db.session.get(Device, device_id)
    if device is None or device.user_id != user_id:
        raise NotFound("Device not found", reason="device_not_found")
    if device.verified_at is None:
        verification.check(f"device:{device.id}", code)
        device.verified_at = utcnow()
        call_after_commit(db.session(), lambda: refresh_cache(user_id))
    return device


def resend_code(user_id: int, device_id: str) -> Device:
    device = db.session.get(Device, device_id)
    if device is None or device.user_id != user_id:
        raise NotFound("Device not found", reason="device_not_found")
    if device.verified_at is not None:
        raise Conflict("This channel is verified already", reason="already_verified")
    send_code(device)
    return device


CODE_TEXTS = {
    "en": ("Your verification code", "Your ticket platform code is {code}. It expires in 15 minutes."),
    "ko": ("인증 코드", "티켓 플랫폼 인증 코드는 {code}입니다. 15분 후 만료됩니다."),
}


ACCOUNT_EMAIL = "account-email"  # the cache's entry for the verified account e-mail


def account_email_wanted(user: User | None, registered_emails: set[str]) -> bool:
    """The verified account e-mail is a channel by default (the owner may turn it off), unless the
    same address is registered as a channel of its own (then that one is told, once)."""
    return bool(user and user.email_verified_at is not None and user.deleted_at is None and user.notify_by_email
                and user.email.strip().lower() not in registered_emails)


def refresh_cache(user_id: int) -> None:
    """Redis copy of the user's enabled, verified channels, read on the admission hot path."""
    devices = db.session.scalars(select(Device).where(Device.user_id == user_id, Device.enabled.is_(True),
                                                      Device.verified_at.is_not(None))).all()
    channels_ = {d.id: {"channel": d.channel, "platform": d.platform} for d in devices}
    if account_email_wanted(db.session.get(User, user_id), {d.target for d in devices if d.channel == CHANNEL_EMAIL}):
        channels_[ACCOUNT_EMAIL] = {"channel": CHANNEL_EMAIL, "platform": None}
    client = redis_store.client
    key = devices_cache_key(user_id)
    pipe = client.pipeline(transaction=False)
    pipe.delete(key)
    if channels_:
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in channels_.items()})
    queues = sorted(client.smembers(user_queues_key(user_id)))
    live = client.smismember(REGISTRY_KEY, queues) if queues else []
    for event_id, is_live in zip(queues, live, strict=True):
        if not is_live:  # a sale that ended or closed: its keys are not re-created
            pipe.srem(user_queues_key(user_id), event_id)
            continue
        notifiable = QueueKeys(int(event_id)).notifiable
        if channels_:
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

    def after_commit() -> None:  # the network call, once the row is gone and no lock is held
        if endpoint_arn:
            try:
                channels.sns_client().delete_endpoint(EndpointArn=endpoint_arn)
            except Exception:  # noqa: BLE001 - the row is gone; a stale endpoint only costs AWS a record
                log.warning("could not delete SNS endpoint %s", endpoint_arn, exc_info=True)
        refresh_cache(user_id)

    call_after_commit(db.session(), after_commit)


def list_notifications(user_id: int, page: int, page_size: int) -> tuple[list[Notification], int]:
    return paginate(select(Notification).where(Notification.user_id == user_id)
                    .order_by(Notification.created_at.desc(), Notification.id), page, page_size)


# --- the admission notice ------------------------------------------------------------------------

# kind -> locale -> (title, body); {deadline} is the admission's or the offer's end
TEXTS = {
    "admitted": {
        "en": ("It's your turn!", "You can now book {event}. Your place is held until {deadline}."),
        "ko": ("차례가 되었습니다!", "지금 {event} 예매를 진행하세요. {deadline}까지 자리가 유지됩니다."),
    },
    "offer": {
        "en": ("Tickets came back for you!", "Tickets for {event} are offered to you until {deadline}. "
               "Open the waitlist to buy them."),
        "ko": ("대기하신 티켓이 나왔습니다!",
               "{event} 티켓을 {deadline}까지 구매하실 수 있습니다. 대기 목록에서 구매하세요."),
    },
    "refunded": {
        "en": ("Your refund is on its way", "Your ticket for {event} was refunded."),
        "ko": ("환불이 처리되었습니다", "{event} 티켓이 환불되었습니다."),
    },
    # the registration lottery (app/sales/lottery.py): {code} the winner's, {place} on the standby list
    "lottery_won": {
        "en": ("You won the presale draw!", "Join the {event} presale with your code {code} (valid until {deadline})."),
        "ko": ("선예매 추첨에 당첨되었습니다!", "코드 {code}로 {event} 선예매에 입장하세요({deadline}까지 유효)."),
    },
    "lottery_standby": {
        "en": ("You are on the presale standby list",
               "The {event} presale draw did not pick you this time: you are number {place} on its standby list. "
               "We will send you a code if one comes free."),
        "ko": ("선예매 대기 명단에 올랐습니다",
               "이번 {event} 선예매 추첨에는 당첨되지 않았습니다. "
               "대기 명단 {place}번이며, 코드가 생기면 보내 드립니다."),
    },
    "lottery_lost": {
        "en": ("Not this time",
               "The {event} presale draw did not pick you this time. Good luck at the general sale!"),
        "ko": ("이번에는 당첨되지 않았습니다",
               "이번 {event} 선예매 추첨에는 당첨되지 않았습니다. 일반 판매에서 행운을 빕니다!"),
    },
}
PUSH_TYPES = {"admitted": "queue_admitted", "offer": "waitlist_offer", "refunded": "ticket_refunded"}
KINDS = tuple(TEXTS)


def build_message(user: Row | User, event: Event, admitted_until: datetime, kind: str = "admitted",
                  fields: dict[str, Any] | None = None) -> channels.Message:
    """A notice's message; ``fields`` fills a kind's own placeholders (a lottery's {code}, {place})."""
    texts = TEXTS.get(kind, TEXTS["admitted"])
    title, body = texts.get(user.locale, texts["en"])
    deadline = admitted_until.strftime("%Y-%m-%d %H:%M UTC" if kind.startswith("lottery") else "%H:%M UTC")
    links = {"event_id": event.id}
    cfg = current_app.config
    return channels.Message(title=title, body=body.format(event=event.name, deadline=deadline, **(fields or {})),
                            deep_link=cfg["NOTIFY_DEEP_LINK_TEMPLATE"].format(**links),
                            web_link=_web_link(kind, links),
                            event_id=event.id, admitted_until_iso=admitted_until.isoformat(),
                            kind=PUSH_TYPES.get(kind, kind))


# where a notice's web link opens: the waiting room (admission), the waitlist page (an offer, its
# countdown and Buy button), the fan's tickets (a refund)
WEB_PAGES = {"offer": "/events/{event_id}/waitlist", "refunded": "/tickets",
             **{kind: "/events/{event_id}/lottery" for kind in ("lottery_won", "lottery_standby", "lottery_lost")}}


def _web_link(kind: str, links: dict[str, Any]) -> str:
    cfg = current_app.config
    if kind in WEB_PAGES:
        return cfg["PUBLIC_BASE_URL"] + WEB_PAGES[kind].format(**links)
    return cfg["NOTIFY_WEB_LINK_TEMPLATE"].format(**links)


def record_notices(event_id: int, admitted_at: float, admissions: list[tuple[int, float]],
                   kind: str = "admitted", claim_token: str | None = None) -> list[str]:
    """One notification row per enabled device per notice (a re-run adds none), in one multi-row
    INSERT; returns the ids still pending. ``kind``: `admitted` (the waiting room), `offer` (a
    waitlist offer, until its end), `refunded`. app/notifications/flows.py commits, then sends.

    With ``claim_token`` the new rows are written already claimed by it, as ``claim`` leaves them
    (the caller sends them once this commits; a sender that dies first leaves them to the sweep,
    as after any claim): only rows that a re-run finds still pending are returned, to be claimed."""
    session = db.session
    now = utcnow()
    claimed = {"status": "sending", "attempts": 1, "claim_token": claim_token, "claimed_at": now} if claim_token \
        else {"status": "pending", "attempts": 0, "claim_token": None, "claimed_at": None}
    until_by_user = {int(user): float(until) for user, until in admissions}
    devices = session.execute(select(Device.id, Device.user_id, Device.channel, Device.target).where(
        Device.user_id.in_(until_by_user), Device.enabled.is_(True),
        Device.verified_at.is_not(None))).all() if until_by_user else []
    at = datetime.fromtimestamp(admitted_at, UTC)
    rows: list[dict[str, Any]] = []

    def notice(user_id: int, device_id: str | None, channel: str, recipient: str) -> None:
        until = until_by_user[user_id]
        rows.append({"id": new_uuid(), "dedupe_key": f"{kind}:{event_id}:{user_id}:{int(until * 1000)}:{recipient}",
                     "user_id": user_id, "event_id": event_id, "device_id": device_id, "channel": channel,
                     "kind": kind, "admitted_at": at, "admitted_until": datetime.fromtimestamp(until, UTC),
                     "created_at": now, **claimed})

    registered: dict[int, set[str]] = {}
    for device in devices:
        notice(device.user_id, device.id, device.channel, device.id)
        if device.channel == CHANNEL_EMAIL:
            registered.setdefault(device.user_id, set()).add(device.target)
    users = session.scalars(select(User).where(User.id.in_(until_by_user), User.email_verified_at.is_not(None),
                                               User.notify_by_email.is_(True))).all() if until_by_user else []
    for user in users:  # the account e-mail: a row with no device, sent to the address
        if account_email_wanted(user, registered.get(user.id, set())):
            notice(user.id, None, CHANNEL_EMAIL, ACCOUNT_EMAIL)
    keys = [row["dedupe_key"] for row in rows]
    inserted = bulk_insert(session, Notification.__table__, rows, ignore=True)
    if claim_token and inserted == len(rows):
        return []  # every row is new, and claimed already: none of them can be pending
    return list(session.scalars(select(Notification.id).where(Notification.dedupe_key.in_(keys),
                                                              Notification.status == "pending"))) if keys else []


# an order's receipt: a notice to the account's verified e-mail, not to its registered channels
RECEIPT = "receipt"


def record_receipt(session: Session, user_id: int, event_id: int, order_id: str, event_starts_at: datetime) -> str:
    """The receipt of an order, as a `pending` row in the transaction that places the order: it is
    sent once that commits (by the task the caller queues, or by the sweeper if that task is
    lost), and once only (the dedupe key and the claim of ``deliver``)."""
    row = Notification(id=new_uuid(), dedupe_key=f"{RECEIPT}:{order_id}", user_id=user_id, event_id=event_id,
                       device_id=None, channel=CHANNEL_EMAIL, kind=RECEIPT, status="pending", attempts=0,
                       admitted_at=utcnow(), admitted_until=event_starts_at, subject_id=order_id)
    session.add(row)
    session.flush()
    return row.id


def send_one(device: Device | Row | None, notification: Row | None, message: channels.Message) -> tuple[str, str]:
    """(provider message id, channel used). Falls back to `log` where no provider is configured.
    ``notification`` is None for a verification code (sent to the device being proved)."""
    cfg = current_app.config
    if notification is not None and notification.device_id is None:
        # a receipt, or a notice to the account e-mail: straight to the address
        return channels.send_email_or_log(message.to, message)
    if device is None:
        raise channels.PermanentError("device was removed")
    if device.channel == CHANNEL_WEBPUSH:
        return channels.send_webpush(device.target, device.push_keys or {}, message), "webpush"
    if device.channel == CHANNEL_PUSH and device.endpoint_arn:
        return channels.send_push(device.endpoint_arn, message), "push"
    if device.channel == CHANNEL_SMS and cfg["SNS_SMS_ENABLED"]:
        return channels.send_sms(device.target, message), "sms"
    if device.channel == CHANNEL_EMAIL:
        return channels.send_email_or_log(device.target, message)
    return channels.send_log(device.target, message), "log"


def new_claim_token() -> str:
    return uuid.uuid4().hex


def sns_push_endpoint(device: Device | Row | None, notification: Row) -> str | None:
    """The SNS endpoint a notice goes to when ``send_one`` would send it as a mobile push (these
    are sent by the process's ``channels.PushSender``), else None."""
    if notification.device_id is not None and device is not None and device.channel == CHANNEL_PUSH:
        return device.endpoint_arn or None
    return None


def claim(ids: list[str], token: str | None = None) -> list[Row]:
    """Move pending rows to 'sending' under ``token`` (a fresh one by default): once committed,
    exactly one sender has each. Returns every row held under the token (with rows that
    ``record_notices`` wrote claimed by it), as plain rows of the table (the model's attribute
    names, read only): a notice is sent and recorded with no ORM object (``record`` writes them in
    one statement), which was half the notification worker's database cost."""
    session = db.session
    token = token or new_claim_token()
    if ids:
        session.execute(update(Notification).where(Notification.id.in_(ids), Notification.status == "pending")
                        .values(status="sending", claim_token=token, claimed_at=utcnow(),
                                attempts=Notification.attempts + 1)
                        .execution_options(synchronize_session=False))
    return list(session.execute(select(Notification.__table__).where(Notification.claim_token == token)))


Job = tuple[Row, Row | None, channels.Message]  # a claimed notification, its device's row, its message
# (plain rows of the tables, read only, with the models' attribute names: no ORM object per notice)


def jobs_of(claimed: list[Row]) -> list[Job]:
    """Each claimed row with its device and message, loaded now and detached, so the sends run with
    no transaction open."""
    session = db.session
    devices = {d.id: d for d in session.execute(select(Device.__table__).where(
        Device.id.in_({n.device_id for n in claimed if n.device_id})))}
    users = {u.id: u for u in session.execute(select(User.__table__).where(User.id.in_({n.user_id for n in claimed})))}
    events = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_({n.event_id for n in claimed})))}
    jobs = [(n, devices.get(n.device_id), _message_of(n, users[n.user_id], events[n.event_id])) for n in claimed]
    session.expunge_all()
    return jobs


# The messages of kinds whose content belongs to a domain built on this one (it cannot be imported
# from here): kind -> builder of the row's message. create_app fills it (app/__init__.py): the
# receipt is the order's (app/booking/orders/receipts.py), a refund notice names the refund's
# figures (app/booking/refunds.py).
MessageBuilder = Callable[[Row, Row, Event], channels.Message]  # notification row, user row, event
KIND_MESSAGES: dict[str, MessageBuilder] = {}


def _message_of(n: Row, user: Row, event: Event) -> channels.Message:
    builder = KIND_MESSAGES.get(n.kind)
    return builder(n, user, event) if builder else notice(n, user, event)


def notice(n: Row | Notification, user: Row | User, event: Event, fields: dict[str, Any] | None = None,
           **figures: Any) -> channels.Message:
    """An admission, offer, refund or lottery notice on the row's channel; as an e-mail, text and
    HTML in the fan's language with the deadline, the page to open, ``fields`` (a lottery's code)
    and ``figures`` (a refund's amount)."""
    message = build_message(user, event, n.admitted_until, n.kind, fields)
    if n.channel == CHANNEL_EMAIL:
        text, html = render_email("notice", user.locale, message=message, event=event, kind=n.kind,
                                  deadline=n.admitted_until, refund=figures.get("refund"))
        message = replace(message, body=text, html=html)
    return replace(message, to=user.email) if n.device_id is None else message


def render_email(template: str, locale: str | None, **context: Any) -> tuple[str, str]:
    """(text, HTML) of app/web/templates/email/<template>.txt / .html in the fan's language."""
    from flask import render_template
    from flask_babel import force_locale

    locale = locale or "en"
    with force_locale(locale):
        return (render_template(f"email/{template}.txt", locale=locale, **context),
                render_template(f"email/{template}.html", locale=locale, **context))


def record(jobs: list[Job], results: list[tuple[str, Any]]) -> list[str]:
    """Write every outcome (in the caller's one unit of work): the rows in one UPDATE, their events
    in one INSERT. Returns the ids to retry. A row no longer held under this claim's token (a sweep
    gave it to another sender after ``requeue_stale_sends``' timeout) keeps that sender's outcome."""
    if not jobs:
        return []
    session = db.session
    retry: list[str] = []
    disabled_users: set[int] = set()
    outcomes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for (n, device, _message), (outcome, detail) in zip(jobs, results, strict=True):
        row = {"id": n.id, "status": "failed", "error": None, "sent_at": None, "provider_message_id": None,
               "latency_ms": None, "claim_token": None}
        if outcome == "sent":
            provider_id, used, sent_at = detail
            latency = max(0.0, (sent_at - n.admitted_at).total_seconds())
            # `logged`: no provider is configured for the channel, so the notice only went to the
            # log; calling that `sent` would tell the fan's history something that did not happen
            status = "logged" if used == "log" else "sent"
            row.update(status=status, sent_at=sent_at, provider_message_id=provider_id, latency_ms=int(latency * 1000))
            events.append(outbox_row("NotificationSent", "notification", n.id,
                                     _event_data(n, latency_ms=row["latency_ms"], via=used)))
            NOTIFICATIONS.labels(channel=n.channel, outcome=status).inc()
            NOTIFICATION_LATENCY.labels(channel=n.channel).observe(latency)
        elif outcome == "transient" and n.attempts < MAX_ATTEMPTS:
            row.update(status="pending", error=str(detail)[:2000])
            NOTIFICATIONS.labels(channel=n.channel, outcome="retry").inc()
            retry.append(n.id)
        else:
            disable = outcome == "permanent" and detail.disable_device
            row["error"] = str(detail)[:2000]
            if disable and device is not None:
                session.execute(update(Device).where(Device.id == device.id).values(enabled=False)
                                .execution_options(synchronize_session=False))
                disabled_users.add(n.user_id)
            events.append(outbox_row("NotificationFailed", "notification", n.id, _event_data(n, error=str(detail))))
            NOTIFICATIONS.labels(channel=n.channel, outcome="disabled" if disable else "failed").inc()
        outcomes.append(row)
    bulk_update(session, Notification.__table__, "id", outcomes, where={"claim_token": jobs[0][0].claim_token})
    record_events(session, events)
    for user_id in disabled_users:
        call_after_commit(session, lambda user_id=user_id: refresh_cache(user_id))
    return retry


def requeue_stale_sends(older_than_seconds: int = 120, limit: int = 500) -> int:
    """A sender that died between claim and record leaves rows in 'sending', and one that died (or
    whose task was lost) between record and claim leaves them 'pending': send them again
    (at-least-once in the first crash window only; consumers dedupe on the notification id)."""
    session = db.session
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    ids = list(session.scalars(select(Notification.id).where(or_(
        and_(Notification.status == "sending", Notification.claimed_at <= cutoff),
        and_(Notification.status == "pending", Notification.created_at <= cutoff))).limit(limit)))
    if ids:
        session.execute(update(Notification).where(Notification.id.in_(ids), Notification.status == "sending")
                        .values(status="pending", claim_token=None).execution_options(synchronize_session=False))
    for notification_id in ids:
        send_task_after_commit("notifications.send", [notification_id])
    return len(ids)


def _event_data(n: Row, **extra: Any) -> dict[str, Any]:
    return {"notification_id": n.id, "user_id": n.user_id, "event_id": n.event_id, "device_id": n.device_id,
            "channel": n.channel, "attempts": n.attempts, "latency_ms": n.latency_ms, **extra}
