"""The Redis sold-out gate: a per-section counter of units a new request could still get.

gate = capacity - sold - live holds - pending requests. The API takes units here first, so a
sold-out sale costs one Redis call per request; MySQL still decides every hold. The counter is
derived state: the reconciler re-derives it from MySQL and reports the drift it fixed.
"""

from __future__ import annotations

import logging
import time

import redis
from sqlalchemy import func, select

from app.booking.models import PENDING, Reservation
from app.catalogue.models import Section
from app.catalogue.services import availability
from app.extensions import db, redis_store
from app.observability.metrics import GATE_DRIFT, GATE_DRIFT_FIXES
from app.queue.keys import QueueKeys

log = logging.getLogger(__name__)

# KEYS: gate, holds. ARGV: units wanted, now.
# -2: the gate is not initialised; -1: not enough units; else the units left after taking.
# When short, holds whose deadline has passed are reclaimed first (their units are free in MySQL
# too: availability never counts an expired hold, even before the sweeper runs).
_TAKE = """
local v = redis.call('GET', KEYS[1])
if not v then return -2 end
local want = tonumber(ARGV[1])
if tonumber(v) < want then
  local back = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, 200)) do
    back = back + tonumber(string.match(member, ':(%d+)$'))
    redis.call('ZREM', KEYS[2], member)
  end
  if back > 0 then v = redis.call('INCRBY', KEYS[1], back) end
  if tonumber(v) < want then return -1 end
end
return redis.call('DECRBY', KEYS[1], want)
"""
_GIVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return -2
"""
# KEYS: gate, holds. ARGV: member, give back (0|1). A hold's units return to the gate at most once:
# either here (expiry/cancel) or when _TAKE reclaimed them after the deadline.
_RELEASE_HOLD = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 and ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  local qty = tonumber(string.match(ARGV[1], ':(%d+)$'))
  return redis.call('INCRBY', KEYS[1], qty)
end
return -1
"""
# KEYS: gate, holds. ARGV: expected units, now.
_RESET = """
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
return previous
"""


def gate_key(event_id: int, section_id: int) -> str:
    return QueueKeys(event_id).gate(section_id)


def _keys(event_id: int, section_id: int) -> list[str]:
    keys = QueueKeys(event_id)
    return [keys.gate(section_id), keys.holds(section_id)]


def _member(reservation_id: str, quantity: int) -> str:
    return f"{reservation_id}:{quantity}"


def expected_units(section: Section) -> int:
    pending = db.session.scalar(
        select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
            Reservation.section_id == section.id, Reservation.status == PENDING)
    )
    return max(0, availability([section])[section.id] - int(pending or 0))


def take(section: Section, quantity: int) -> bool:
    """Take ``quantity`` units; False means sold out (for now)."""
    keys = _keys(section.event_id, section.id)
    client = redis_store.client
    now = f"{time.time():.6f}"
    result = int(client.eval(_TAKE, 2, *keys, quantity, now))
    if result == -2:
        client.set(keys[0], expected_units(section), nx=True)
        result = int(client.eval(_TAKE, 2, *keys, quantity, now))
    return result >= 0


def give_back(event_id: int, section_id: int, quantity: int) -> None:
    if quantity <= 0:
        return
    try:
        redis_store.client.eval(_GIVE, 1, gate_key(event_id, section_id), quantity)
    except redis.RedisError:
        log.warning("gate give-back failed for section %s; the reconciler will fix it", section_id, exc_info=True)


def track_hold(event_id: int, section_id: int, reservation_id: str, quantity: int, expires_at: float) -> None:
    """Remember a hold's deadline so the gate can reclaim its units the moment it lapses."""
    try:
        redis_store.client.zadd(_keys(event_id, section_id)[1], {_member(reservation_id, quantity): expires_at})
    except redis.RedisError:
        log.warning("could not track hold %s in the gate", reservation_id, exc_info=True)


def release_hold(event_id: int, section_id: int, reservation_id: str, quantity: int, *, give_back: bool) -> None:
    """A hold ended: expired/cancelled (units back, unless already reclaimed) or confirmed (sold)."""
    try:
        redis_store.client.eval(_RELEASE_HOLD, 2, *_keys(event_id, section_id), _member(reservation_id, quantity),
                                "1" if give_back else "0")
    except redis.RedisError:
        log.warning("gate release failed for hold %s; the reconciler will fix it", reservation_id, exc_info=True)


def reconcile(event_ids: list[int]) -> dict[int, int]:
    """Reset each section's gate to what MySQL says; returns {section_id: drift fixed}."""
    fixed: dict[int, int] = {}
    if not event_ids:
        return fixed
    sections = db.session.scalars(select(Section).where(Section.event_id.in_(event_ids))).all()
    client = redis_store.client
    for section in sections:
        expected = expected_units(section)
        previous = client.eval(_RESET, 2, *_keys(section.event_id, section.id), expected, f"{time.time():.6f}")
        drift = 0 if previous is None else int(previous) - expected
        if drift:
            fixed[section.id] = drift
            GATE_DRIFT.inc(abs(drift))
            GATE_DRIFT_FIXES.inc()
            log.warning("gate drift fixed", extra={"section_id": section.id, "drift": drift})
    db.session.rollback()  # read-only
    return fixed
