"""Recording domain events in the outbox, in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from app.db import bulk_insert, utcnow
from app.outbox.models import OutboxEvent
from app.redis.keys import OUTBOX_KICK_KEY
from app.tasking import call_after_commit, send_task

# aggregate type -> topic suffix (topic = "<KAFKA_TOPIC_PREFIX>.<suffix>")
TOPIC_BY_AGGREGATE = {"queue": "queue", "reservation": "reservations", "order": "orders",
                      "notification": "notifications"}
SCHEMA_VERSION = 1


def topic_for(aggregate_type: str) -> str:
    prefix = current_app.config["KAFKA_TOPIC_PREFIX"] if has_app_context() else "tickets"
    return f"{prefix}.{TOPIC_BY_AGGREGATE[aggregate_type]}"


def record_event(session: Session, type_: str, aggregate_type: str, aggregate_id: str | int,
                 data: dict[str, Any], *, event_id: str | None = None,
                 occurred_at: datetime | None = None) -> OutboxEvent:
    """Add one event to ``session``; it commits (or rolls back) with the caller's change."""
    row = OutboxEvent(**outbox_row(type_, aggregate_type, aggregate_id, data, event_id=event_id,
                                   occurred_at=occurred_at))
    session.add(row)
    kick_relay_after_commit(session)
    return row


def outbox_row(type_: str, aggregate_type: str, aggregate_id: str | int, data: dict[str, Any], *,
               event_id: str | None = None, occurred_at: datetime | None = None) -> dict[str, Any]:
    """One event as a row of the outbox table, for ``record_events``."""
    return {"event_id": event_id or str(uuid.uuid4()), "type": type_, "topic": topic_for(aggregate_type),
            "aggregate_type": aggregate_type, "aggregate_id": str(aggregate_id), "schema_version": SCHEMA_VERSION,
            "occurred_at": occurred_at or utcnow(), "data": data, "attempts": 0}


def record_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add many events (``outbox_row``s) to ``session``'s transaction in one multi-row INSERT: the
    hold writer's and the queue-event drain's batches (an ORM object each cost their worker more
    CPU than the API's answer, on the same cores, during a sale)."""
    if rows:
        bulk_insert(session, OutboxEvent.__table__, rows)
        kick_relay_after_commit(session)


def kick_relay_after_commit(session: Session) -> None:
    """Ask for a relay run once this transaction commits (callers that insert outbox rows in bulk)."""
    if has_app_context() and current_app.config["KAFKA_BOOTSTRAP_SERVERS"]:
        # one relay kick per transaction, and at most one per KICK_DEBOUNCE_MS across transactions
        # (a running relay drains everything); the beat sweep covers a kick that was skipped or lost
        call_after_commit(session, _kick_relay)


KICK_DEBOUNCE_MS = 200


def _kick_relay() -> None:
    from app.extensions import redis_store

    # the relay runs when the window closes, so it includes every commit made within the window
    if redis_store.client.set(OUTBOX_KICK_KEY, "1", nx=True, px=KICK_DEBOUNCE_MS):
        send_task("outbox.relay", countdown=KICK_DEBOUNCE_MS / 1000)


def envelope(row: Any) -> dict[str, Any]:
    """The published form of an outbox row (an OutboxEvent, or a row of the relay's plain select)."""
    return {
        "id": row.event_id,
        "type": row.type,
        "occurred_at": row.occurred_at.isoformat(),
        "aggregate_type": row.aggregate_type,
        "aggregate_id": row.aggregate_id,
        "schema_version": row.schema_version,
        "data": row.data,
    }
