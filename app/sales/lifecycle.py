"""A sale's lifecycle in Redis: it is born at the first join (``sync_meta`` registers it) and ends
when it closes. Closing is the one step that lets Redis forget a sale:

1. ``events.closed_at`` is set: nothing joins, reserves or re-creates the sale's keys any more;
2. the reserve stream is drained: every accepted request is written by the hold writer;
3. the sale's live holds are released (the event has started: nobody can pay for them now);
4. the queue-event stream is drained into the outbox, to the last event;
5. the final figures (queue totals, each section's figures, waitlist stats, dead letters) are
   written to MySQL (``sale_summaries``);
6. every key of the sale (``q:{event}:*``) is deleted and the sale leaves every registry.

Each step is idempotent: a close interrupted anywhere is finished by running it again (the beat
task does, every few minutes). Key retention is declared in app/redis/keys.py (RETENTION).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, or_, select, update

from app.booking import services, writer
from app.booking.models import HELD, Reservation
from app.booking.waitlist import stats as waitlist_stats
from app.catalogue.models import Event, Section
from app.catalogue.services import get_event
from app.db import transaction, utcnow
from app.errors import Conflict
from app.extensions import db, redis_store
from app.inventory.gate import figures
from app.queue.events import drain_sale
from app.queue.models import SaleSummary
from app.redis.keys import REGISTRY_KEY, UNDRAINED_KEY, WAITLIST_REGISTRY_KEY, QueueKeys

log = logging.getLogger(__name__)


def closable_event_ids(now: datetime | None = None) -> list[int]:
    """Sales that are over and not closed yet: the event started SALE_CLOSE_AFTER_START_MINUTES ago
    (or the sale closed that long ago, whichever comes first)."""

    now = now or utcnow()
    grace = timedelta(minutes=current_app.config["SALE_CLOSE_AFTER_START_MINUTES"])
    ids = list(db.session.scalars(select(Event.id).where(
        Event.closed_at.is_(None),
        or_(Event.starts_at <= now - grace,
            func.coalesce(Event.sale_closes_at, Event.starts_at) <= now - grace))))
    db.session.rollback()
    return ids


def close_sale(event_id: int, *, force: bool = False) -> dict[str, Any]:
    """Close a sale (see the module): returns its summary. Refuses (409 `sale_not_over`) while the
    event has not started and its sale has not closed, unless ``force`` (an operator's decision)."""

    with transaction():
        event = get_event(event_id)
        now = utcnow()
        over = event.starts_at <= now or (event.sale_closes_at is not None and event.sale_closes_at <= now)
        if not (over or force or event.closed_at):
            raise Conflict("The sale is not over: the event has not started and its sale has not closed",
                           reason="sale_not_over")
        db.session.execute(update(Event).where(Event.id == event_id, Event.closed_at.is_(None))
                           .values(closed_at=now).execution_options(synchronize_session=False))
    _write_accepted_requests(event_id)
    _release_live_holds(event_id)
    drain_sale(event_id)
    summary = _record_summary(event_id)
    deleted = _forget(event_id)
    with transaction():

        row = db.session.get(SaleSummary, event_id)
        row.keys_deleted = max(row.keys_deleted, deleted)
    log.info("sale closed", extra={"event_id": event_id, "keys_deleted": deleted})
    return {**summary, "keys_deleted": max(summary["keys_deleted"], deleted)}


def close_ended_sales() -> list[int]:
    """The beat task's body: close every sale that is over (each in its own try)."""
    closed = []
    for event_id in closable_event_ids():
        try:
            close_sale(event_id)
            closed.append(event_id)
        except Exception:  # noqa: BLE001 - one sale's failure must not stop the others; the next run retries
            log.exception("closing sale %s failed; the next run retries", event_id)
    return closed


def _write_accepted_requests(event_id: int, timeout: float = 60.0) -> None:
    """Every request still on the sale's reserve stream is written now (as a hold writer would,
    claiming entries another writer read and left)."""

    client = redis_store.client
    keys = QueueKeys(event_id)
    stream = keys.reserve_stream()
    if not client.exists(stream):
        return
    try:
        client.xgroup_create(stream, writer.GROUP, id="0", mkstream=True)
    except Exception:  # noqa: BLE001 - BUSYGROUP: it exists
        pass
    deadline = time.monotonic() + timeout
    while client.xlen(stream) and time.monotonic() < deadline:
        _next, claimed, *_ = client.xautoclaim(stream, writer.GROUP, "closer", 0, "0-0", count=500)
        entries = [(i, f) for i, f in claimed if f]
        replies = client.xreadgroup(writer.GROUP, "closer", {stream: ">"}, count=500) or []
        entries += [entry for _s, read in replies for entry in read]
        if entries:
            writer.process(event_id, entries)
        else:
            break
    if client.xlen(stream):
        raise RuntimeError(f"sale {event_id}: {client.xlen(stream)} accepted requests are still unwritten")


def _release_live_holds(event_id: int) -> None:

    after = ""
    while True:  # by id: a hold whose payment is being answered is passed over, not retried here
        with transaction() as session:
            ids = list(session.scalars(select(Reservation.id).where(
                Reservation.event_id == event_id, Reservation.status == HELD, Reservation.id > after)
                .order_by(Reservation.id).limit(200)))
            for rid in ids:
                services.end_hold_at_close(session, rid)
        if len(ids) < 200:
            return
        after = ids[-1]


def _record_summary(event_id: int) -> dict[str, Any]:

    client = redis_store.client
    keys = QueueKeys(event_id)
    with transaction() as session:
        existing = session.get(SaleSummary, event_id)
        if existing is not None and not client.exists(keys.stats):
            return _summary_view(existing)  # a re-run after the keys went: the first summary stands
        stats = client.hgetall(keys.stats)
        sections = list(session.scalars(select(Section).where(Section.event_id == event_id).order_by(Section.id)))
        shown = figures(sections)
        dead = [{"id": entry_id, **fields} for entry_id, fields in client.xrange(keys.dead_letters())]
        values = {"closed_at": utcnow(), "joined_total": int(stats.get("joined_total", 0)),
                  "admitted_total": int(stats.get("admitted_total", 0)),
                  "expired_total": int(stats.get("expired_total", 0)),
                  "sections": [{"id": s.id, "name": s.name, **shown[s.id]} for s in sections],
                  "waitlists": waitlist_stats(event_id), "dead_letters": dead, "keys_deleted": 0}
        if existing is None:
            existing = SaleSummary(event_id=event_id, **values)
            session.add(existing)
        else:
            for name, value in values.items():
                setattr(existing, name, value)
        session.flush()
        return _summary_view(existing)


def _summary_view(row: Any) -> dict[str, Any]:
    return {"event_id": row.event_id, "closed_at": row.closed_at, "joined_total": row.joined_total,
            "admitted_total": row.admitted_total, "expired_total": row.expired_total, "sections": row.sections,
            "waitlists": row.waitlists, "dead_letters": len(row.dead_letters), "keys_deleted": row.keys_deleted}


def _forget(event_id: int) -> int:
    """Delete every key of the sale (one slot: the hash tag) and take it out of the registries."""
    client = redis_store.client
    prefix = QueueKeys(event_id).prefix
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    client.srem(REGISTRY_KEY, event_id)
    client.srem(UNDRAINED_KEY, event_id)
    members = [m for m in client.smembers(WAITLIST_REGISTRY_KEY) if m.split(":", 1)[0] == str(event_id)]
    if members:
        client.srem(WAITLIST_REGISTRY_KEY, *members)
    return deleted
