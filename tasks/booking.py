"""Booking tasks (queue `booking`). Holds are written by the hold writer, a thread of every worker
that consumes this queue (see tasks/celery_app.py and app/booking/writer.py), not by a task per
request."""

from __future__ import annotations

from tasks.celery_app import celery


@celery.task(name="booking.sweep_holds", ignore_result=True)
def sweep_holds() -> dict:
    from app.booking.services import sweep_expired_holds

    return {"expired": sweep_expired_holds()}


@celery.task(name="booking.reconcile_gates", ignore_result=True)
def reconcile_gates() -> dict:
    from app.booking.gate import reconcile
    from app.queue.services import open_event_ids

    return {str(k): v for k, v in reconcile(open_event_ids()).items()}
