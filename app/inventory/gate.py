"""The Redis sold-out gate: a per-section counter of units a new request could still get.

gate = capacity - sold - live holds - accepted requests not yet written. The API takes units here
(inside the one RESERVE script call), so a sold-out sale costs one Redis call per request; MySQL
still decides every hold. The counter is derived state: the reconciler re-derives it from MySQL
and reports the drift it fixed.
"""

from __future__ import annotations

import logging
import time

import redis
from sqlalchemy import select

from app.catalogue.models import Section
from app.extensions import db, redis_store
from app.inventory.counts import availability, sold_and_held
from app.observability.metrics import GATE_DRIFT, GATE_DRIFT_FIXES
from app.redis import calls
from app.redis.keys import QueueKeys

log = logging.getLogger(__name__)

def gate_key(event_id: int, section_id: int) -> str:
    return QueueKeys(event_id).gate(section_id)


def hold_member(reservation_id: str, quantity: int) -> str:
    """A live hold in the section's holds zset (score: its deadline); the writer adds it."""
    return f"{reservation_id}:{quantity}"


def figures(sections: list[Section]) -> dict[int, dict[str, int]]:
    """The one source of every figure shown of a section (the public event page, the console, the
    CLI) and of the gate itself: capacity, sold, held, kept for the waitlist (its pool and open
    offers), and available = what a new reserve could get now (free in MySQL, less what is kept
    for the waitlist and what accepted requests are about to take)."""
    if not sections:
        return {}
    # free in MySQL = capacity - sold - live holds, from the same read that gives sold and held (a
    # seated section's capacity is its number of seats)
    taken = sold_and_held(sections)
    pipe = redis_store.client.pipeline(transaction=False)
    for s in sections:
        keys = QueueKeys(s.event_id)
        pipe.get(keys.waitlist(s.id, "pool"))
        pipe.get(keys.waitlist(s.id, "offered"))
        pipe.hget(keys.pending_units(), str(s.id))
    replies = pipe.execute()
    out = {}
    for i, s in enumerate(sections):
        pool, offered, pending = (int(x or 0) for x in replies[3 * i:3 * i + 3])
        kept = pool + offered
        sold, held = taken[s.id]
        free = max(0, s.capacity - sold - held)
        out[s.id] = {"capacity": s.capacity, "sold": sold, "held": held,
                     "kept_for_waitlist": kept, "available": max(0, free - kept - max(0, pending))}
    return out


def pending_units(event_id: int, section_id: int) -> int:
    """Units of requests accepted by the API and not yet written to MySQL by the hold writer."""
    return max(0, int(redis_store.client.hget(QueueKeys(event_id).pending_units(), str(section_id)) or 0))


def expected_units(section: Section) -> int:
    """What the gate should hold for the section (``figures``' available)."""
    return figures([section])[section.id]["available"]


def ensure(section: Section) -> None:
    """Create the section's gate from MySQL if it does not exist (first request, or Redis lost it)."""
    redis_store.client.set(gate_key(section.event_id, section.id), expected_units(section), nx=True)


def give_back(event_id: int, section_id: int, quantity: int, user_id: int | None = None) -> None:
    """Units that never became a hold (cancelled while pending, an offer declined) go back to the
    gate and off the user's live count (``user_id`` None: the gate only)."""
    if quantity <= 0:
        return
    try:
        calls.give(gate_key(event_id, section_id), QueueKeys(event_id).user_units(),
                   calls.ReleaseKeys.of(event_id, section_id), quantity=quantity, user_id=user_id)
    except redis.RedisError:
        log.warning("gate give-back failed for section %s; the reconciler will fix it", section_id, exc_info=True)


def release_hold(event_id: int, section_id: int, reservation_id: str, quantity: int, *, give_back: bool,
                 user_id: int | None = None) -> None:
    """A hold ended: expired/cancelled (units back, unless already reclaimed) or confirmed (sold)."""
    try:
        keys = QueueKeys(event_id)
        calls.release_hold(calls.HoldKeys(keys.gate(section_id), keys.holds(section_id), keys.user_units()),
                           calls.ReleaseKeys.of(event_id, section_id), member=hold_member(reservation_id, quantity),
                           give_back=give_back, user_id=user_id)
    except redis.RedisError:
        log.warning("gate release failed for hold %s; the reconciler will fix it", reservation_id, exc_info=True)


def reconcile(event_ids: list[int]) -> dict[int, int]:
    """Reset each section's gate to what MySQL says; returns {section_id: drift fixed}.

    A sale with requests between the API and MySQL is skipped this round (app/redis/lua/reset.lua)."""
    fixed: dict[int, int] = {}
    if not event_ids:
        return fixed
    sections = db.session.scalars(select(Section).where(Section.event_id.in_(event_ids))).all()
    client = redis_store.client
    for section in sections:
        keys = QueueKeys(section.event_id)
        writes = client.get(keys.writes()) or "0"  # read before MySQL
        expected = availability([section])[section.id]
        db.session.rollback()  # the next section reads a fresh snapshot
        reply = calls.reset(calls.ResetKeys(keys.gate(section.id), keys.holds(section.id), keys.pending(),
                                            keys.writes(), keys.waitlist(section.id, "pool"),
                                            keys.waitlist(section.id, "offered")),
                            expected=expected, now=time.time(), writes=writes)
        if not reply.reset:
            continue
        previous, value = reply.previous, reply.value
        # (before, the drift was measured against MySQL's count before the waitlist's share: a
        # unit kept for an offer read as a drift on every round, for as long as the offer stood)
        drift = 0 if previous is None else int(previous) - value
        if drift:
            fixed[section.id] = drift
            GATE_DRIFT.inc(abs(drift))
            GATE_DRIFT_FIXES.inc()
            log.warning("gate drift fixed: sale %s section %s had %+d units (gate %s, now %s)", section.event_id,
                        section.id, drift, previous, value,
                        extra={"event_id": section.event_id, "section_id": section.id, "drift": drift,
                               "gate_before": int(previous), "gate_after": value})
    db.session.rollback()  # read-only
    return fixed
