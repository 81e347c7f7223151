"""Booking tasks (queue `booking`). Idempotent: a hold runs only on a pending reservation."""

from __future__ import annotations

import random

from celery import Task
from sqlalchemy.exc import OperationalError

from app.db import is_busy
from tasks.celery_app import celery

MAX_BUSY_RETRIES = 5


@celery.task(name="booking.hold", bind=True, max_retries=MAX_BUSY_RETRIES, acks_late=True)
def hold(self: Task, reservation_id: str) -> str | None:
    from app.booking import services
    from app.extensions import db

    try:
        res = services.hold(reservation_id)
    except OperationalError as exc:
        db.session.rollback()
        if not is_busy(exc):
            raise
        if self.request.retries >= self.max_retries:
            res = services.reject_busy(reservation_id)
            return res.status if res else None
        # exponential backoff with jitter so retried holds do not collide again in lockstep
        backoff = min(10.0, 0.2 * 2**self.request.retries) * random.uniform(0.5, 1.5)
        raise self.retry(exc=exc, countdown=backoff) from exc
    return res.status if res else None


@celery.task(name="booking.sweep_holds", ignore_result=True)
def sweep_holds() -> dict:
    from app.booking.services import requeue_stale_pending, sweep_expired_holds

    return {"expired": sweep_expired_holds(), "requeued": requeue_stale_pending()}


@celery.task(name="booking.reconcile_gates", ignore_result=True)
def reconcile_gates() -> dict:
    from app.booking.gate import reconcile
    from app.queue.services import open_event_ids

    return {str(k): v for k, v in reconcile(open_event_ids()).items()}
