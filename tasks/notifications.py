"""Notification tasks (queue `notifications`): exactly one message per device per admission."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from celery import Task

from tasks.celery_app import celery


@celery.task(name="notifications.notify_admitted")
def notify_admitted(user_id: int, event_id: int, admitted_at: float, admitted_until: float) -> int:
    from app.notifications.flows import notify_admitted as run

    return len(run(user_id, event_id, admitted_at, admitted_until))


@celery.task(name="notifications.notify_admissions")
def notify_admissions(event_id: int, admitted_at: float, admissions: list[list]) -> int:
    """One task per advancer batch: [[user_id, admitted_until], ...]."""
    from app.notifications.flows import notify_admissions as run

    return len(run(event_id, admitted_at, [(int(u), float(t)) for u, t in admissions]))


@celery.task(name="notifications.notify_users")
def notify_users(event_id: int, kind: str, notices: list[list]) -> int:
    """Notices of one kind (`offer`, `refunded`, `admitted`): [[user_id, until], ...]; one message
    per device per notice, as for admissions."""
    import time

    from app.notifications.flows import notify_admissions as run

    return len(run(event_id, time.time(), [(int(u), float(t)) for u, t in notices], kind=kind))


@celery.task(name="notifications.deliver", ignore_result=True)
def deliver(notification_ids: list[str]) -> int:
    """Send notices already recorded as pending rows (a lottery's, recorded with its draw)."""
    from app.notifications.flows import deliver as run

    return len(run(notification_ids))


@celery.task(name="notifications.sweep", ignore_result=True)
def sweep() -> int:
    """Notices owed but never recorded (a lost task), then rows left pending or mid-send."""
    from app.notifications.flows import recover_owed_notices, requeue_stale_sends

    return recover_owed_notices() + requeue_stale_sends()


@celery.task(name="notifications.send", bind=True, max_retries=8, ignore_result=True)
def send(self: Task, notification_id: str) -> str | None:
    from app.channels import TransientError
    from app.notifications.flows import send as run

    try:
        n = run(notification_id)
    except TransientError as exc:
        raise self.retry(exc=exc, countdown=backoff(self)) from exc
    return n.status if n else None


def backoff(task: Task) -> float:
    """Exponential backoff with full jitter (throttling clears faster when callers spread out)."""
    return random.uniform(0, min(60.0, 0.5 * 2 ** task.request.retries))


def send_or_retry(task: Task, send: Callable[..., str | None], *args: Any) -> str | None:
    """A one-off message (a verification code): retried with backoff while the provider is
    throttling or down; given up when the address refuses it (it then stays unproved)."""
    from app.channels import PermanentError, TransientError

    try:
        return send(*args)
    except TransientError as exc:
        raise task.retry(exc=exc, countdown=backoff(task)) from exc
    except PermanentError:
        return None


@celery.task(name="notifications.send_code", bind=True, max_retries=5, ignore_result=True)
def send_code(self: Task, device_id: str, code: str) -> str | None:
    """A verification code to the e-mail address or phone number being proved."""
    from app.notifications.flows import deliver_code

    return send_or_retry(self, deliver_code, device_id, code)
