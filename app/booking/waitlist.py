"""The waitlist of a sold-out general-admission section: released tickets are offered in order.

- **Joining.** An admitted fan whose section is sold out joins with a quantity (within the
  per-user limit). The order is first come, first served, kept in Redis by Lua scripts in the
  sale's slot, like the waiting room (app/redis/lua/join_waitlist.lua).
- **Releases go to the waitlist first.** Every script that puts units back to sale (a hold that
  expires or is cancelled, a rejected request, a refund; app/redis/lua/put_back.lua) sends them to the
  section's waitlist pool while anyone waits there, never to the gate, so nobody who polls
  `reserve` can take them first.
- **Offers.** The tick (beat, every second, `booking.waitlist_tick`) turns the pool into offers in
  arrival order (app/redis/lua/make_offers.lua): a signed offer pass for the section and quantity, open for
  the event's `offer_window_seconds` (default 600), announced on all the fan's channels.
  *Partial fit:* a fan who wants more than the pool holds is skipped and keeps their place; the
  next fan who fits is served. Splitting would hand the first fan fewer tickets than they asked
  for (a group of three cannot use two), and keeping the place means the next larger release
  reaches them first.
- **Claiming.** `POST /api/tickets/reserve` with `X-Offer-Token` instead of an admission pass
  takes the offer's units (app/redis/lua/claim_offer.lua) and goes the usual way to the hold writer; MySQL's
  conditional UPDATE still decides the hold, so nothing can be sold twice. An offer that is
  declined (`DELETE` on the waitlist) or expires passes on to the next fan; once nobody waits,
  what is left opens to everyone.
- **Crashes.** MAKE_OFFERS marks each new offer "fresh"; the tick announces fresh offers (outbox
  event + notifications, both deduplicated by the offer) and only then unmarks them, so a worker
  killed in between leaves them for the next tick.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.catalogue.models import SECTION_GENERAL
from app.catalogue.services import get_event, get_section
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.extensions import db, redis_store
from app.inventory import gate
from app.observability.metrics import WAITLIST_JOINS, WAITLIST_OFFERS
from app.outbox.models import OutboxEvent
from app.outbox.services import record_event
from app.queue import passes
from app.redis import calls
from app.redis.keys import WAITLIST_REGISTRY_KEY, QueueKeys
from app.tasking import call_after_commit

log = logging.getLogger(__name__)

SCAN = 500  # fans looked at per section and tick for a fit
_EVENT_NAMESPACE = uuid.UUID("2f0c1c9e-54a8-4d1e-9a0b-6f1d8f5e7c31")
PARTS = ("wl", "wlq", "pool", "offers", "offerexp", "useroffer", "offered", "seq", "stats", "fresh")


def _keys(event_id: int, section_id: int) -> dict[str, str]:
    keys = QueueKeys(event_id)
    return {part: keys.waitlist(section_id, part) for part in PARTS}


def url(event_id: int, section_id: int) -> str:
    return f"/api/events/{event_id}/sections/{section_id}/waitlist"


# --- the fan's side ----------------------------------------------------------------------------

def _section_for_waitlist(event_id: int, section_id: int) -> int:
    """The event's per-user limit, after checking the section takes a waitlist (and has a gate)."""
    event = get_event(event_id)
    section = get_section(event_id, section_id)
    most, kind = event.max_per_user, section.kind
    if kind == SECTION_GENERAL and not redis_store.client.exists(gate.gate_key(event_id, section_id)):
        gate.ensure(section)
    if kind != SECTION_GENERAL:
        raise Unprocessable("Waitlists are for general admission sections; seats come back on the seat map",
                            reason="waitlist_not_available")
    return most


def join(event_id: int, section_id: int, user_id: int, quantity: int) -> tuple[dict[str, Any], bool]:
    """Take a place on the section's waitlist: (view, created). Needs an active admission and a
    sold-out section; joining twice answers the same place."""
    most = _section_for_waitlist(event_id, section_id)
    if not 1 <= quantity <= most:
        raise Unprocessable(f"quantity must be 1..{most}", reason="limit_exceeded",
                            errors={"quantity": [f"must be 1..{most}"]})
    q = QueueKeys(event_id)
    reply = calls.join_waitlist(calls.WaitlistKeys.of(event_id, section_id), q.active, q.user_units(),
                                user_id=user_id, now=time.time(), quantity=quantity, max_per_user=most)
    outcome = reply.outcome
    if outcome == "admission_inactive":
        raise Forbidden("Join the waiting room first: the waitlist is for admitted fans", reason="admission_inactive")
    if outcome == "not_sold_out":
        raise Conflict("Tickets are still on sale in this section: reserve them", reason="not_sold_out")
    if outcome == "limit_exceeded":
        raise Unprocessable(f"At most {most} tickets per user; you have {reply.detail}",
                            reason="limit_exceeded")
    if outcome == "joined":
        redis_store.client.sadd(WAITLIST_REGISTRY_KEY, f"{event_id}:{section_id}")
        session = db.session
        record_event(session, "WaitlistJoined", "queue", event_id, {
            "event_id": event_id, "section_id": section_id, "user_id": user_id, "quantity": quantity,
            "position": reply.detail})
        call_after_commit(session, WAITLIST_JOINS.inc)
    return view(event_id, section_id, user_id), outcome == "joined"


def leave(event_id: int, section_id: int, user_id: int) -> bool:
    """Leave the waitlist, or decline an open offer: True when an offer was declined (its tickets
    pass to the next fan: app/booking/flows.leave_waitlist ticks the section after commit)."""
    _section_for_waitlist(event_id, section_id)
    keys = calls.WaitlistKeys.of(event_id, section_id)
    declined = calls.decline_offer(keys, user_id=user_id)
    left = calls.leave_waitlist(keys, user_id=user_id)
    if not declined and not left:
        raise NotFound("You are not on this waitlist", reason="not_waitlisted")
    if declined:
        WAITLIST_OFFERS.labels(outcome="declined").inc()
        _count(event_id, section_id, "declined")
        record_event(db.session, "OfferExpired", "queue", event_id, {
            "event_id": event_id, "section_id": section_id, "user_id": user_id, "quantity": declined,
            "reason": "declined"})
    return bool(declined)


def _count(event_id: int, section_id: int, what: str) -> None:
    redis_store.client.hincrby(_keys(event_id, section_id)["stats"], what, 1)


def release_rate(stats: dict[str, str], now: float) -> float | None:
    """Units released to the waitlist per second since the first release (None: none yet)."""
    released, first = int(stats.get("released") or 0), stats.get("first_release_at")
    if not released or not first:
        return None
    return released / max(60.0, now - float(first))


def view(event_id: int, section_id: int, user_id: int) -> dict[str, Any]:
    """The fan's place: waiting (position, people and units ahead, an estimate from the measured
    release rate, or none while nothing has been released), offered (the pass), or 404."""
    keys = _keys(event_id, section_id)
    client = redis_store.client
    pipe = client.pipeline(transaction=False)
    pipe.zrank(keys["wl"], user_id)
    pipe.hget(keys["wlq"], user_id)
    pipe.hget(keys["useroffer"], user_id)
    pipe.hgetall(keys["stats"])
    rank, quantity, offer_id, stats = pipe.execute()
    base = {"event_id": event_id, "section_id": section_id, "waitlist_url": url(event_id, section_id)}
    if offer_id:
        value = client.hget(keys["offers"], offer_id)
        if value:
            _user, qty, expires = value.split(":")
            token = passes.issue_offer(user_id, event_id, section_id, offer_id, int(qty), float(expires))
            return {**base, "status": "offered", "position": None, "quantity": int(qty), "units_ahead": 0,
                    "eta_seconds": None, "eta_status": "now",
                    "offer": {"offer_token": token, "quantity": int(qty),
                              "expires_at": datetime.fromtimestamp(float(expires), UTC).isoformat(),
                              "reserve_url": "/api/tickets/reserve"}}
    if rank is None:
        raise NotFound("You are not on this waitlist", reason="not_waitlisted")
    ahead = client.zrange(keys["wl"], 0, rank - 1) if rank else []
    units_ahead = sum(int(q or 0) for q in (client.hmget(keys["wlq"], ahead) if ahead else []))
    rate = release_rate(stats, time.time())
    eta = None if rate is None else int((units_ahead + int(quantity or 0)) / rate)
    return {**base, "status": "waiting", "position": rank + 1, "quantity": int(quantity or 0),
            "units_ahead": units_ahead, "eta_seconds": eta, "eta_status": "unknown" if eta is None else "estimated",
            "offer": None}


# --- the tick -------------------------------------------------------------------------------------

def expire_and_offer(event_id: int, section_id: int) -> list[tuple[int, str, int]]:
    """Expire lapsed offers and make new ones in waitlist order (two Lua calls): the expired
    offers as (user, offer id, quantity). Their announcements follow (app/booking/flows.py)."""
    event = get_event(event_id)
    keys, now = calls.WaitlistKeys.of(event_id, section_id), time.time()
    expired = calls.expire_offers(keys, now=now)
    calls.make_offers(keys, now=now, window_seconds=event.offer_window_seconds, scan=SCAN)
    return [(offer.user_id, offer.offer_id, offer.quantity) for offer in expired]


def announce_expired(event_id: int, section_id: int, user_id: int, offer_id: str, quantity: int) -> None:
    announce_once(event_id, "OfferExpired", offer_id, {
        "event_id": event_id, "section_id": section_id, "user_id": user_id, "offer_id": offer_id,
        "quantity": quantity, "reason": "expired"})
    WAITLIST_OFFERS.labels(outcome="expired").inc()
    _count(event_id, section_id, "expired")


def fresh_offers(event_id: int, section_id: int) -> list[tuple[str, int, int, float]]:
    """Offers not yet announced: (offer id, user, quantity, expiry); dropped ones are unmarked."""
    keys = _keys(event_id, section_id)
    client = redis_store.client
    out = []
    for offer_id in sorted(client.smembers(keys["fresh"])):
        value = client.hget(keys["offers"], offer_id)
        if not value:
            client.srem(keys["fresh"], offer_id)
            continue
        user, qty, expires = value.split(":")
        out.append((offer_id, int(user), int(qty), float(expires)))
    return out


def announce_made(event_id: int, section_id: int, offer_id: str, user_id: int, quantity: int,
                  expires: float) -> None:
    if announce_once(event_id, "OfferMade", offer_id, {
            "event_id": event_id, "section_id": section_id, "user_id": user_id, "offer_id": offer_id,
            "quantity": quantity, "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()}):
        WAITLIST_OFFERS.labels(outcome="made").inc()
        _count(event_id, section_id, "made")


def mark_announced(event_id: int, section_id: int, offer_ids: list[str]) -> None:
    if offer_ids:
        redis_store.client.srem(_keys(event_id, section_id)["fresh"], *offer_ids)


def announce_once(event_id: int, type_: str, offer_id: str, data: dict[str, Any]) -> bool:
    """Record the event unless a previous (killed) run did; True when recorded now."""
    session = db.session
    event_uuid = str(uuid.uuid5(_EVENT_NAMESPACE, f"{event_id}:{data['section_id']}:{offer_id}:{type_}"))
    if session.scalar(select(OutboxEvent.id).where(OutboxEvent.event_id == event_uuid)) is not None:
        return False
    record_event(session, type_, "queue", event_id, data, event_id=event_uuid)
    return True


def claimed(event_id: int, section_id: int, user_id: int, offer_id: str, reservation_id: str, quantity: int) -> None:
    """After CLAIM_OFFER accepted a reserve: the event and the counters."""
    WAITLIST_OFFERS.labels(outcome="claimed").inc()
    _count(event_id, section_id, "claimed")
    announce_once(event_id, "OfferClaimed", offer_id, {
        "event_id": event_id, "section_id": section_id, "user_id": user_id, "offer_id": offer_id,
        "reservation_id": reservation_id, "quantity": quantity})


def stats(event_id: int) -> list[dict[str, Any]]:
    """Per section with a waitlist: length, offers out, and made/claimed/expired/declined counts."""
    client = redis_store.client
    out = []
    for member in sorted(client.smembers(WAITLIST_REGISTRY_KEY)):
        e, section_id = (int(x) for x in member.split(":"))
        if e != event_id:
            continue
        keys = _keys(event_id, section_id)
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keys["wl"])
        pipe.hlen(keys["offers"])
        pipe.get(keys["offered"])
        pipe.get(keys["pool"])
        pipe.hgetall(keys["stats"])
        length, offers_out, offered, pool, counts = pipe.execute()
        made = int(counts.get("made") or 0)
        claimed_n = int(counts.get("claimed") or 0)
        out.append({"section_id": section_id, "waiting": int(length), "offers_out": int(offers_out),
                    "units_offered": int(offered or 0), "units_in_pool": int(pool or 0), "offers_made": made,
                    "offers_claimed": claimed_n, "offers_expired": int(counts.get("expired") or 0),
                    "offers_declined": int(counts.get("declined") or 0),
                    "conversion": round(claimed_n / made, 3) if made else None,
                    "units_released": int(counts.get("released") or 0)})
    return out
