"""Operator and developer commands on the Celery CLI (registered as `celery.commands` entry
points in pyproject.toml; `make install` installs them):

    celery -A tasks queue stats EVENT_ID
    celery -A tasks queue advance EVENT_ID [--count N]
    celery -A tasks queue pause|resume EVENT_ID
    celery -A tasks outbox status | relay
    celery -A tasks holds sweep
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


def _in_app(fn: Callable[[], Any]) -> Any:
    from tasks.celery_app import flask_app

    with flask_app().app_context():
        return fn()


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


@click.group(name="queue", help="Waiting rooms: stats, manual advancement, pause/resume.")
def queue() -> None:
    pass


@queue.command("stats")
@click.argument("event_id", type=int)
def queue_stats(event_id: int) -> None:
    """Waiting, active, totals and measured admission rate of a sale."""
    from app.sales.services import stats

    _echo(_in_app(lambda: stats(event_id)))


@queue.command("close")
@click.argument("event_id", type=int)
@click.option("--force", is_flag=True, help="Close even though the event has not started (an operator's call).")
def queue_close(event_id: int, force: bool) -> None:
    """Close a sale that is over: write every accepted request, release live holds, drain its
    events, keep its final figures in MySQL and delete its Redis keys (beat does this by itself
    SALE_CLOSE_AFTER_START_MINUTES after the event starts)."""
    from app.sales.lifecycle import close_sale

    _echo(_in_app(lambda: close_sale(event_id, force=force)))


@queue.command("advance")
@click.argument("event_id", type=int)
@click.option("--count", type=int, default=None,
              help="Admit up to N users now, regardless of the rate (still capped by max_active).")
def queue_advance(event_id: int, count: int | None) -> None:
    """Run one advancement step now (or admit up to --count users)."""
    from app.queue.services import admit_now, advance

    def run() -> dict:
        result = admit_now(event_id, count) if count else advance(event_id)
        return {"status": result.status, "admitted": result.admitted, "lapsed": result.lapsed,
                "abandoned": result.abandoned}

    _echo(_in_app(run))


@queue.command("pause")
@click.argument("event_id", type=int)
def queue_pause(event_id: int) -> None:
    """Stop admitting users to a sale."""
    from app.queue.services import set_paused
    from app.sales.services import stats

    _echo(_in_app(lambda: (set_paused(event_id, True), stats(event_id))[1]))


@queue.command("resume")
@click.argument("event_id", type=int)
def queue_resume(event_id: int) -> None:
    """Resume admitting users to a sale."""
    from app.queue.services import set_paused
    from app.sales.services import stats

    _echo(_in_app(lambda: (set_paused(event_id, False), stats(event_id))[1]))


@click.group(name="outbox", help="The transactional outbox and its Kafka relay.")
def outbox() -> None:
    pass


@outbox.command("status")
def outbox_status() -> None:
    """Unpublished events and the age of the oldest."""
    from app.outbox.relay import lag

    _echo(_in_app(lag))


@outbox.command("relay")
def outbox_relay() -> None:
    """Publish pending outbox events now."""
    from app.outbox.relay import relay

    _echo({"published": _in_app(relay)})


@click.group(name="holds", help="Reservation holds.")
def holds() -> None:
    pass


@holds.command("sweep")
def holds_sweep() -> None:
    """Release every hold past its deadline now."""
    from app.booking.flows import sweep_expired_holds

    _echo(_in_app(lambda: {"expired": sweep_expired_holds()}))


@holds.command("write")
def holds_write() -> None:
    """Write every accepted request that waits in a reserve stream now (the writer threads do this
    continuously; this is for an operator with no worker running)."""
    from app.booking.writer import HoldWriter

    def run() -> dict:
        from flask import current_app

        return {"written": HoldWriter(current_app._get_current_object(), name="cli").drain(timeout=60)}

    _echo(_in_app(run))


@holds.command("dead-letters")
@click.argument("event_id", type=int)
@click.option("--limit", default=100, show_default=True, help="How many, oldest first.")
def holds_dead_letters(event_id: int, limit: int) -> None:
    """The accepted requests of a sale the hold writer parked (malformed, or refused by MySQL for
    their own values), with the reason and the error (alert HoldWriterDeadLetters)."""
    from app.extensions import redis_store
    from app.redis.keys import QueueKeys

    def run() -> dict:
        entries = redis_store.client.xrange(QueueKeys(event_id).dead_letters(), count=limit)
        return {"event_id": event_id, "dead_letters": [{"id": entry_id, **fields} for entry_id, fields in entries]}

    _echo(_in_app(run))
