"""Outbox tasks (queue `outbox`): relay to Kafka (kicked after commit and swept by beat), prune."""

from __future__ import annotations

from celery import Task

from tasks.celery_app import celery


@celery.task(name="outbox.relay", bind=True, max_retries=None, ignore_result=True)
def relay(self: Task) -> int:
    from app.outbox.relay import RelayError
    from app.outbox.relay import relay as run

    try:
        return run()
    except RelayError as exc:
        # Kafka down: rows stay; back off up to a minute (beat also sweeps every few seconds)
        raise self.retry(exc=exc, countdown=min(60, 2 ** min(self.request.retries, 6))) from exc


@celery.task(name="outbox.prune", ignore_result=True)
def prune() -> int:
    from flask import current_app

    from app.outbox.relay import prune as run

    return run(current_app.config["OUTBOX_RETENTION_HOURS"])
