"""The notification units of work that a single transaction cannot hold: each function opens its
own ``transaction()`` blocks (app/db.py) around the rules of services.py, so no row lock and no
open transaction spans an SNS or SMTP call:

- delivery: claim the rows and commit; send (in parallel, holding nothing); record every result
  in one commit. A sender killed between claim and record is covered by ``requeue_stale_sends``;
- device registration: read and check; call SNS; one upsert through a unique key.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select

from app import channels, verification
from app.db import new_uuid, retry_when_busy, transaction, upsert, utcnow
from app.extensions import db, redis_store
from app.notifications import services
from app.notifications.models import (
    CHANNEL_EMAIL,
    CHANNEL_PUSH,
    CHANNEL_SMS,
    CHANNEL_WEBPUSH,
    Device,
    Notification,
)
from app.redis import calls
from app.redis.keys import QueueKeys
from app.redis.registry import undrained_event_ids
from app.tasking import send_task

log = logging.getLogger(__name__)

# --- delivery --------------------------------------------------------------------------------------

def notify_admitted(user_id: int, event_id: int, admitted_at: float, admitted_until: float) -> list[str]:
    """The admission notice of one user (see ``notify_admissions``)."""
    return notify_admissions(event_id, admitted_at, [(user_id, admitted_until)])


def notify_admissions(event_id: int, admitted_at: float, admissions: list[tuple[int, float]],
                      kind: str = "admitted") -> list[str]:
    """Record one notification per enabled device per notice and commit, then send every row still
    pending. Returns the ids this call sent or tried to send. An admission's notice is owed in Redis
    (ADVANCE wrote it in the admission's own call) until its rows are committed here."""
    token = services.new_claim_token()
    with transaction():  # the new rows are written claimed: no claim round trips after the commit
        pending = services.record_notices(event_id, admitted_at, admissions, kind, claim_token=token)
        jobs = services.jobs_of(services.claim(pending, token))
    if kind == "admitted":
        forget_owed_notices(event_id, admissions)
    return _send(jobs)


def forget_owed_notices(event_id: int, admissions: list[tuple[int, float]]) -> None:
    owed = [(str(user), _lua_number(until)) for user, until in admissions]
    if owed:
        calls.forget_notices(QueueKeys(event_id).notices_due(), owed)


def _lua_number(value: float) -> str:
    """A number as Lua's tostring wrote it in ADVANCE (%.14g)."""
    return f"{value:.14g}"


def recover_owed_notices(older_than_seconds: float = 30.0) -> int:
    """Record and send the admission notices still owed after ``older_than_seconds`` (the task that
    should have done it was lost: a broker blip, a worker killed before its first commit).
    Idempotent: a notice recorded meanwhile adds no row."""
    client = redis_store.client
    recovered = 0
    cutoff = time.time() - older_than_seconds
    for event_id in undrained_event_ids():
        by_moment: dict[float, list[tuple[int, float]]] = {}
        for user, value in client.hgetall(QueueKeys(event_id).notices_due()).items():
            until, at = (float(x) for x in value.split("|"))
            if at <= cutoff:
                by_moment.setdefault(at, []).append((int(user), until))
        for at, admissions in sorted(by_moment.items()):
            log.warning("recovering %s admission notices of event %s owed since %.0f s", len(admissions), event_id,
                        time.time() - at)
            notify_admissions(event_id, at, admissions)
            recovered += len(admissions)
    return recovered


def send(notification_id: str) -> Notification | None:
    """Deliver one notification (the retry path). Raises TransientError for the task to retry."""
    deliver([notification_id], raise_transient=True)
    with transaction() as session:
        return session.get(Notification, notification_id)


def deliver(ids: list[str], *, raise_transient: bool = False) -> list[str]:
    """Claim, commit, send (no row lock is held during the network calls), then record each result.

    Sends are I/O-bound and go out in parallel (``_send``): pushes to phones from the process's
    asyncio loop, other channels on threads, up to NOTIFY_SEND_CONCURRENCY calls in flight each."""
    if not ids:
        return []
    with transaction():
        jobs = services.jobs_of(services.claim(ids))
    return _send(jobs, raise_transient=raise_transient)


def _send(jobs: list[services.Job], *, raise_transient: bool = False) -> list[str]:
    """Send claimed notices (no transaction is open), then record every outcome in one commit."""
    if not jobs:
        return []
    app = current_app._get_current_object()

    def attempt(job: services.Job) -> tuple[str, Any]:
        n, device, message = job
        try:
            with _in_flight(n.channel, app):
                sent = services.send_one(device, n, message)
            return "sent", (*sent, utcnow())  # handed to the provider now
        except channels.TransientError as exc:
            return "transient", exc
        except channels.PermanentError as exc:
            return "permanent", exc

    # mobile pushes go out from the process's asyncio loop, the other channels on threads, at once
    pushes = [(i, arn) for i, (n, device, _message) in enumerate(jobs)
              if (arn := services.sns_push_endpoint(device, n))]
    in_flight = channels.push_sender().publish_all([(arn, jobs[i][2]) for i, arn in pushes]) if pushes else None
    pushed = {i for i, _arn in pushes}
    others = [i for i in range(len(jobs)) if i not in pushed]
    outcomes = dict(zip(others, _on_threads(app, attempt, [jobs[i] for i in others]), strict=True))
    if in_flight is not None:
        outcomes.update((i, _push_outcome(reply)) for (i, _arn), reply in zip(pushes, in_flight.result(), strict=True))
    results = [outcomes[i] for i in range(len(jobs))]
    with transaction():
        retry = services.record(jobs, results)
    if retry and raise_transient:
        raise channels.TransientError(str(results[0][1]))
    for notification_id in retry:
        # backoff with jitter: throttling clears faster when callers spread out
        send_task("notifications.send", [notification_id], countdown=random.uniform(0.5, 2.0))
    return [job[0].id for job in jobs]


def _push_outcome(reply: tuple[str, float] | Exception) -> tuple[str, Any]:
    """A ``PushSender`` reply as ``record`` takes it. An error other than the channels' ends the
    task, as on a sender thread: its rows stay 'sending' for the sweep."""
    if isinstance(reply, channels.TransientError):
        return "transient", reply
    if isinstance(reply, channels.PermanentError):
        return "permanent", reply
    if isinstance(reply, Exception):
        raise reply
    message_id, handed_at = reply
    return "sent", (message_id, "push", datetime.fromtimestamp(handed_at, UTC))


_slots: dict[str, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _in_flight(channel: str, app: Flask) -> threading.BoundedSemaphore:
    """The process's slots for calls to one channel's provider, shared by every task of the worker:
    ``NOTIFY_SEND_CONCURRENCY`` calls in flight per channel and process, whatever the number of
    tasks. Threads past that wait on the semaphore, not for the interpreter's lock: against a
    fast provider, every extra runnable sender thread cost each send CPU in lock hand-offs. One
    set per channel, so slow SMTP calls never hold up SMS or web push (pushes to phones go out
    from ``channels.PushSender``)."""
    slots = _slots.get(channel)
    if slots is None:
        with _slots_lock:
            slots = _slots.setdefault(channel, threading.BoundedSemaphore(app.config["NOTIFY_SEND_CONCURRENCY"]))
    return slots


def _on_threads(app: Flask, attempt: Callable[[services.Job], tuple[str, Any]],
                jobs: list[services.Job]) -> list[tuple[str, Any]]:
    """``attempt`` of every job, in order, on up to NOTIFY_SEND_CONCURRENCY threads that each take
    the next job until none is left (a single job runs on the caller's thread). Not an executor's map: a Future per
    send and a context pushed per send were a tenth of a notification worker's CPU during a burst.
    An error other than the channels' ends the task (its rows stay 'sending' for the sweep), as it
    did through ``Future.result``."""
    workers = min(len(jobs), app.config["NOTIFY_SEND_CONCURRENCY"])
    if workers <= 1:
        return [attempt(job) for job in jobs]
    results: list[tuple[str, Any] | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    indexes = iter(range(len(jobs)))
    taking = threading.Lock()

    def run() -> None:
        with app.app_context():
            while not errors:
                with taking:
                    index = next(indexes, None)
                if index is None:
                    return
                try:
                    results[index] = attempt(jobs[index])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the task's thread below
                    errors.append(exc)

    threads = [threading.Thread(target=run, name=f"notify-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every index was filled


def requeue_stale_sends(older_than_seconds: int = 120, limit: int = 500) -> int:
    with transaction():
        return services.requeue_stale_sends(older_than_seconds, limit)


# --- devices ---------------------------------------------------------------------------------------

def deliver_code(device_id: str, code: str) -> str | None:
    """The task's body: the code through the device's own channel, sent after the read's unit has
    ended. Raises TransientError to retry."""
    with transaction():
        found = services.code_message(device_id, code)
    if found is None:
        return None  # removed, or proved meanwhile: nothing to send
    device, message = found
    provider_id, _used = services.send_one(device, None, message)
    return provider_id


def verify_device(user_id: int, device_id: str, code: str) -> Device:
    with transaction():
        return services.verify_device(user_id, device_id, code)


def delete_device(user_id: int, device_id: str) -> None:
    with transaction():
        services.delete_device(user_id, device_id)


def register_device(user_id: int, data: dict[str, Any]) -> tuple[Device, bool]:
    """Create or refresh a device; the same token/address again returns the same device.

    The SNS call runs first, outside any transaction; then one upsert through a unique key writes
    exactly one row (a push token that another account had moves to this one). A deadlock or lock
    timeout is retried here, never shown to the user."""
    channel = data["channel"]
    subscription = data.get("subscription") or {}
    target = {CHANNEL_PUSH: data.get("token"), CHANNEL_EMAIL: data.get("address"),
              CHANNEL_SMS: data.get("phone"), CHANNEL_WEBPUSH: subscription.get("endpoint")}[channel]
    if channel == CHANNEL_EMAIL:
        target = target.strip().lower()
    if channel == CHANNEL_WEBPUSH:
        services.check_webpush_endpoint(target)
    digest = services.target_hash(target)
    # a push token or a browser's subscription belongs to one device: it moves to the account
    # that registers it last
    exclusive_key = f"{channel}:{digest}" if channel in (CHANNEL_PUSH, CHANNEL_WEBPUSH) else None
    if exclusive_key:
        key_filter = Device.exclusive_key == exclusive_key
        conflict = ["exclusive_key"]
    else:
        key_filter = (Device.user_id == user_id) & (Device.channel == channel) & (Device.target_hash == digest)
        conflict = ["user_id", "channel", "target_hash"]
    with transaction() as session:  # reads only: it ends before the SNS call below
        before = session.execute(select(Device.user_id, Device.endpoint_arn, Device.verified_at)
                                 .where(key_filter)).first()
        if before is None or before.user_id != user_id:
            services.check_channel_cap(session, user_id)  # early: before the SNS call
    endpoint_arn = before.endpoint_arn if before else None
    if channel == CHANNEL_PUSH:
        endpoint_arn = services.ensure_endpoint(data["platform"], target, endpoint_arn, user_id)
    now = utcnow()
    # a push token proves itself; an address or number must be proved with a code, unless this
    # user proved it already (re-registering keeps that) or verification is off (development)
    proved = channel in (CHANNEL_PUSH, CHANNEL_WEBPUSH) or not current_app.config["VERIFY_CHANNELS"]
    verified_at = now if proved else (before.verified_at if before and before.user_id == user_id else None)
    row = {"id": new_uuid(), "user_id": user_id, "channel": channel, "platform": data.get("platform"),
           "target": target, "target_hash": digest, "exclusive_key": exclusive_key,
           "endpoint_arn": endpoint_arn, "enabled": True, "verified_at": verified_at, "created_at": now,
           "updated_at": now, "push_keys": dict(subscription["keys"]) if subscription else None}

    def write() -> None:
        with transaction() as session:
            # the cap is checked again where the row is written, under the account's row lock:
            # concurrent registrations of one account queue here, so they cannot pass the cap together
            services.lock_channels_of(session, user_id)
            mine = session.scalar(select(Device.id).where(key_filter, Device.user_id == user_id))
            if mine is None:
                services.check_channel_cap(session, user_id)
            upsert(session, Device.__table__, [row], conflict, ["user_id", "platform", "endpoint_arn", "enabled",
                                                                "verified_at", "updated_at", "push_keys"])

    retry_when_busy(db.session(), write, attempts=services.REGISTER_ATTEMPTS, first_delay=0.03)
    device = db.session.scalar(select(Device).where(key_filter))
    # a code is sent when none is live: registering the same address again does not draw a new one
    # (with fresh tries) each time; `/devices/{id}/code` asks for a new one, within the limits
    if device.verified_at is None and not verification.has_live_code(f"device:{device.id}"):
        services.send_code(device)
    services.refresh_cache(user_id)
    if before is not None and before.user_id != user_id:
        services.refresh_cache(before.user_id)  # the token left that account
    return device, before is None or before.user_id != user_id


