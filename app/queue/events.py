"""Queue events are produced atomically by the Lua scripts into a Redis stream per sale; this
moves them into the MySQL outbox with the same envelope and guarantees as every other event.

Idempotent: the outbox id is derived from the stream entry id, so a crash between commit and
XDEL re-inserts nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from app.extensions import db, redis_store
from app.outbox.models import OutboxEvent
from app.outbox.services import record_event
from app.redis.keys import QueueKeys
from app.tasking import call_after_commit

_NAMESPACE = uuid.UUID("0f3a8a6e-3a51-4d4f-a1b1-3f0c9d7e5b21")


def drain_events(event_id: int, batch: int = 500) -> int:
    """Copy up to ``batch`` entries of the sale's Redis event stream into the outbox, in the caller's
    unit of work; they leave the stream once it commits (a re-run skips what was copied)."""
    keys = QueueKeys(event_id)
    client = redis_store.client
    entries = client.xrange(keys.events, "-", "+", count=batch)
    if not entries:
        return 0
    ids = {entry_id: str(uuid.uuid5(_NAMESPACE, f"{event_id}:{entry_id}")) for entry_id, _ in entries}
    session = db.session
    existing = set(session.scalars(select(OutboxEvent.event_id).where(OutboxEvent.event_id.in_(ids.values()))))
    for entry_id, fields in entries:
        if ids[entry_id] in existing:
            continue
        data: dict = {"event_id": event_id}
        if fields.get("user_id"):
            data["user_id"] = int(fields["user_id"])
        for key, value in fields.items():
            if key not in {"type", "user_id", "at"}:
                data[key] = _number(value)
        record_event(session, fields["type"], "queue", event_id, data, event_id=ids[entry_id],
                     occurred_at=datetime.fromtimestamp(float(fields["at"]), UTC))
    drained = list(ids)
    call_after_commit(session, lambda: client.xdel(keys.events, *drained))
    return len(entries)


def _number(value: str) -> float | int | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number
