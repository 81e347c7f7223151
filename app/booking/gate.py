"""The Redis sold-out gate: a per-section counter of units a new request could still get.

gate = capacity - sold - live holds - pending requests. The API takes units here first, so a
sold-out sale costs one Redis call per request; MySQL still decides every hold. The counter is
derived state: the reconciler re-derives it from MySQL and reports the drift it fixed.
"""

from __future__ import annotations

import logging

import redis
from sqlalchemy import func, select

from app.booking.models import PENDING, Reservation
from app.catalogue.models import Section
from app.catalogue.services import availability
from app.extensions import db, redis_store
from app.observability.metrics import GATE_DRIFT, GATE_DRIFT_FIXES
from app.queue.keys import QueueKeys

log = logging.getLogger(__name__)

# -2: the gate is not initialised; -1: not enough units; else the units left after taking
_TAKE = """
local v = redis.call('GET', KEYS[1])
if not v then return -2 end
local want = tonumber(ARGV[1])
if tonumber(v) < want then return -1 end
return redis.call('DECRBY', KEYS[1], want)
"""
_GIVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return -2
"""


def gate_key(event_id: int, section_id: int) -> str:
    return QueueKeys(event_id).gate(section_id)


def expected_units(section: Section) -> int:
    pending = db.session.scalar(
        select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
            Reservation.section_id == section.id, Reservation.status == PENDING)
    )
    return max(0, availability([section])[section.id] - int(pending or 0))


def take(section: Section, quantity: int) -> bool:
    """Take ``quantity`` units; False means sold out (for now)."""
    key = gate_key(section.event_id, section.id)
    client = redis_store.client
    result = int(client.eval(_TAKE, 1, key, quantity))
    if result == -2:
        client.set(key, expected_units(section), nx=True)
        result = int(client.eval(_TAKE, 1, key, quantity))
    return result >= 0


def give_back(event_id: int, section_id: int, quantity: int) -> None:
    if quantity <= 0:
        return
    try:
        redis_store.client.eval(_GIVE, 1, gate_key(event_id, section_id), quantity)
    except redis.RedisError:
        log.warning("gate give-back failed for section %s; the reconciler will fix it", section_id, exc_info=True)


def reconcile(event_ids: list[int]) -> dict[int, int]:
    """Reset each section's gate to what MySQL says; returns {section_id: drift fixed}."""
    fixed: dict[int, int] = {}
    if not event_ids:
        return fixed
    sections = db.session.scalars(select(Section).where(Section.event_id.in_(event_ids))).all()
    client = redis_store.client
    for section in sections:
        expected = expected_units(section)
        key = gate_key(section.event_id, section.id)
        previous = client.getset(key, expected)
        drift = 0 if previous is None else int(previous) - expected
        if drift:
            fixed[section.id] = drift
            GATE_DRIFT.inc(abs(drift))
            GATE_DRIFT_FIXES.inc()
            log.warning("gate drift fixed", extra={"section_id": section.id, "drift": drift})
    db.session.rollback()  # read-only
    return fixed
