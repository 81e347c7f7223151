"""Booking tasks (queue `booking`). Holds are written by the hold writer, a thread of every worker
that consumes this queue (see tasks/celery_app.py and app/booking/writer.py), not by a task per
request."""

from __future__ import annotations

from celery import Task

from tasks.celery_app import celery


@celery.task(name="booking.sweep_holds", ignore_result=True)
def sweep_holds() -> dict:
    from app.booking.flows import sweep_expired_holds

    return {"expired": sweep_expired_holds()}


@celery.task(name="booking.reconcile_gates", ignore_result=True)
def reconcile_gates() -> dict:
    from app.inventory.gate import reconcile
    from app.queue.services import open_event_ids

    return {str(k): v for k, v in reconcile(open_event_ids()).items()}


@celery.task(name="booking.waitlist_tick", ignore_result=True)
def waitlist_tick() -> dict:
    """Expire waitlist offers, make new ones from released tickets, announce them (every second)."""
    from app.booking.flows import tick

    return tick()


@celery.task(name="booking.sweep_payments", ignore_result=True)
def sweep_payments() -> dict:
    """Finish payment attempts whose process died between recording and finishing them."""
    from app.booking.flows import sweep_pending_payments

    return {"finished": sweep_pending_payments()}


@celery.task(name="booking.sweep_refunds", ignore_result=True)
def sweep_refunds() -> dict:
    """Finish refunds whose process died between recording the intent and finishing it."""
    from app.booking.flows import sweep_pending_refunds

    return {"finished": sweep_pending_refunds()}


@celery.task(name="booking.refund_event", bind=True)
def refund_event(self: Task, event_id: int, actor_id: int) -> dict:
    """Refund every confirmed ticket of an event (an admin's call). Progress is the task's state
    (PROGRESS, {done, total, refunded, declined, skipped}): GET /api/events/{id}/refunds/{task id}
    and Flower show it."""
    from app.booking.flows import refund_event as run

    def progress(done: int, total: int, counts: dict) -> None:
        self.update_state(state="PROGRESS", meta={"done": done, **counts, "total": total})

    counts = run(event_id, actor_id, progress)
    return {"done": counts["total"], **counts}
