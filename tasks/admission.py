"""Waiting-room tasks (queue `admission`): beat advances every sale about once a second."""

from __future__ import annotations

from tasks.celery_app import celery


@celery.task(name="queue.advance_all", ignore_result=True)
def advance_all() -> int:
    from app.queue.services import advance_all as run

    return sum(len(r.admitted) for r in run())


@celery.task(name="queue.advance", ignore_result=False)
def advance(event_id: int) -> dict:
    from app.queue.services import advance as run

    result = run(event_id)
    return {"status": result.status, "admitted": result.admitted, "lapsed": result.lapsed,
            "abandoned": result.abandoned}


@celery.task(name="queue.close_ended_sales", ignore_result=True)
def close_ended_sales() -> list[int]:
    from app.sales.lifecycle import close_ended_sales as run

    return run()


@celery.task(name="queue.draw_lotteries", ignore_result=True)
def draw_lotteries() -> int:
    """Draw the registration lotteries whose deadline has passed (app/sales/lottery_flows.py)."""
    from app.sales.lottery_flows import draw_due

    return draw_due()


@celery.task(name="queue.drain_events", ignore_result=True)
def drain_events() -> int:
    from app.queue.events import drain_all

    return drain_all()  # every sale until its stream is empty, ended sales included
