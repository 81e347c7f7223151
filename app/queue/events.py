"""Queue events are produced atomically by the Lua scripts into a Redis stream per sale; this
moves them into the MySQL outbox with the same envelope and guarantees as every other event.

Idempotent: the outbox id is derived from the stream entry id, so a crash between commit and
XDEL re-inserts nothing. The stream is never trimmed: ``drain_all`` visits every sale that may
have events left (UNDRAINED_KEY, which keeps a sale after it ended until its stream is empty) and
drains each until it is empty, one unit of work per batch.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from app.extensions import db, redis_store
from app.outbox.models import OutboxEvent
from app.outbox.services import outbox_row, record_events
from app.queue import lanes
from app.redis.keys import REGISTRY_KEY, UNDRAINED_KEY, QueueKeys
from app.redis.locks import LockTimeout, redis_lock
from app.redis.registry import undrained_event_ids
from app.tasking import call_after_commit

BATCH = 500

_NAMESPACE = uuid.UUID("0f3a8a6e-3a51-4d4f-a1b1-3f0c9d7e5b21")


def drain_events(event_id: int, batch: int = BATCH) -> int:
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
    rows, redeemed = [], []
    for entry_id, fields in entries:
        if ids[entry_id] in existing:
            continue
        occurred_at = datetime.fromtimestamp(float(fields["at"]), UTC)
        if fields["type"] == "CodeRedeemed":  # the record of a code's use (app/queue/lanes.py)
            redeemed.append({"user_id": int(fields["user_id"]), "code_id": int(fields["code_id"]), "at": occurred_at})
        data: dict = {"event_id": event_id}
        if fields.get("user_id"):
            data["user_id"] = int(fields["user_id"])
        for key, value in fields.items():
            if key not in {"type", "user_id", "at"}:
                data[key] = _number(value)
        rows.append(outbox_row(fields["type"], "queue", event_id, data, event_id=ids[entry_id],
                               occurred_at=occurred_at))
    record_events(session, rows)
    lanes.record_redemptions(session, event_id, redeemed)
    drained = list(ids)
    call_after_commit(session, lambda: client.xdel(keys.events, *drained))
    return len(entries)


def _number(value: str) -> float | int | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def drain_sale(event_id: int, deadline: float | None = None, batch: int = BATCH) -> int:
    """Drain one sale's event stream until it is empty (or ``deadline``, a monotonic time, has
    passed), one unit of work per batch; returns how many events it copied."""
    from app.db import transaction

    drained = 0
    while True:
        with transaction():
            n = drain_events(event_id, batch)
        drained += n
        if n < batch or (deadline is not None and time.monotonic() > deadline):
            return drained


def drain_all(budget_seconds: float = 5.0, batch: int = BATCH) -> int:
    """Drain every sale's event stream until it is empty (or the time budget is spent: the next
    run goes on); forget a sale that ended once its stream is empty."""
    client = redis_store.client
    deadline = time.monotonic() + budget_seconds
    drained = 0
    for event_id in undrained_event_ids():
        keys = QueueKeys(event_id)
        try:
            with redis_lock(keys.drain_lock(), ttl_ms=int(budget_seconds * 1000) + 30_000):
                drained += drain_sale(event_id, deadline, batch)
                if client.xlen(keys.events) == 0 and not client.sismember(REGISTRY_KEY, event_id):
                    client.srem(UNDRAINED_KEY, event_id)
        except LockTimeout:
            continue  # another drain has this sale
        if time.monotonic() > deadline:
            break
    return drained


def lag(event_ids: list[int] | None = None) -> dict[int, tuple[int, float]]:
    """Per sale: events not yet in the outbox, and the age in seconds of the oldest of them."""
    client = redis_store.client
    now = time.time()
    found: dict[int, tuple[int, float]] = {}
    for event_id in event_ids if event_ids is not None else undrained_event_ids():
        keys = QueueKeys(event_id)
        pipe = client.pipeline(transaction=False)
        pipe.xlen(keys.events)
        pipe.xrange(keys.events, "-", "+", count=1)
        length, oldest = pipe.execute()
        age = max(0.0, now - int(oldest[0][0].split("-")[0]) / 1000) if oldest else 0.0
        found[event_id] = (int(length), age)
    return found
