"""Booking tasks (queue `booking`). Idempotent: a hold runs only on a pending reservation."""

from __future__ import annotations

import random

from celery import Task
from sqlalchemy.exc import OperationalError

from tasks.celery_app import celery

# MySQL/MariaDB: lock wait timeout, deadlock. Both mean "busy": roll back and retry later.
BUSY_ERRORS = {1205, 1213}
MAX_BUSY_RETRIES = 5


def _is_busy(exc: OperationalError) -> bool:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return code in BUSY_ERRORS or "database is locked" in str(exc)


@celery.task(name="booking.hold", bind=True, max_retries=MAX_BUSY_RETRIES, acks_late=True)
def hold(self: Task, reservation_id: str) -> str | None:
    from app.booking import services
    from app.extensions import db

    try:
        res = services.hold(reservation_id)
    except OperationalError as exc:
        db.session.rollback()
        if not _is_busy(exc):
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
