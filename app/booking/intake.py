"""The accept path of POST /api/tickets/reserve: validate, then one Redis script call.

The request makes no MySQL round trip. The catalogue facts it needs (the event's per-user limit,
the section's kind, price and seats) come from a per-process cache; the RESERVE script checks the
token's revocation, the idempotency key, that the admission is still active, the per-user limit
and the sold-out gate, then records the request and appends it to the sale's reserve stream. From
that moment the request is durable (in Redis, under its AOF policy) and visible as `pending`; the
hold writer (app/booking/writer.py) turns it into a hold or a rejection in MySQL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.booking.holds import MAX_AMOUNT_CENTS
from app.catalogue.models import SECTION_GENERAL, Seat
from app.catalogue.services import get_event, get_section
from app.errors import AppError, Conflict, Forbidden, TokenRevoked, Unprocessable
from app.extensions import db, redis_store
from app.inventory import gate
from app.observability.context import request_id_var
from app.observability.metrics import RESERVATIONS
from app.queue import passes
from app.queue.models import SaleLane
from app.redis import calls, cluster, intake_calls
from app.redis.keys import QueueKeys, user_queues_key

CATALOGUE_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class SectionFacts:
    id: int
    event_id: int
    kind: str
    price_cents: int
    currency: str
    seat_labels: dict[int, str]  # seated sections: seat id -> label
    reserved_for: str | None = None  # the priority lane that keeps it until released_at (app/queue/lanes.py)
    released_at: float = 0.0


@dataclass(frozen=True)
class EventFacts:
    id: int
    max_per_user: int


class CatalogueCache:
    """What the accept path needs of the catalogue, read from MySQL at most every few seconds per
    process. Prices, limits and seat maps change rarely and never mid-request; inventory is not
    cached here (that is the gate's and MySQL's)."""

    def __init__(self, ttl: float = CATALOGUE_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._events: dict[int, tuple[float, EventFacts]] = {}
        self._sections: dict[int, tuple[float, SectionFacts]] = {}
        self._lock = threading.Lock()

    def event(self, event_id: int) -> EventFacts:
        hit = self._events.get(event_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        event = get_event(event_id)  # 404 for an unknown event
        facts = EventFacts(event.id, event.max_per_user)
        with self._lock:
            self._events[event_id] = (time.monotonic() + self.ttl, facts)
        db.session.rollback()
        return facts

    def section(self, event_id: int, section_id: int) -> SectionFacts:
        hit = self._sections.get(section_id)
        if hit and hit[0] > time.monotonic() and hit[1].event_id == event_id:
            return hit[1]
        section = get_section(event_id, section_id)  # 404 for a section of another event
        labels: dict[int, str] = {}
        if section.kind != SECTION_GENERAL:
            seats = db.session.scalars(select(Seat).where(Seat.section_id == section.id))
            labels = {s.id: s.label for s in seats}
        lane = db.session.get(SaleLane, section.lane_id) if section.lane_id is not None else None
        facts = SectionFacts(section.id, section.event_id, section.kind, section.price_cents, section.currency,
                             labels, lane.name if lane else None,
                             lane.sections_released_at.timestamp() if lane and lane.sections_released_at else 0.0)
        with self._lock:
            self._sections[section_id] = (time.monotonic() + self.ttl, facts)
        db.session.rollback()
        return facts

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._sections.clear()


catalogue = CatalogueCache()


@dataclass
class ReserveRequest:
    user_id: int
    event_id: int
    section_id: int
    quantity: int | None
    seat_ids: list[int] | None
    idempotency_key: str
    admission_token: str | None
    revoked_key: str = ""
    offer_token: str | None = None  # a waitlist offer's pass instead of an admission (waitlist.py)


def request_hash(event_id: int, section_id: int, quantity: int | None, seat_ids: list[int] | None) -> str:
    canonical = json.dumps({"event_id": event_id, "section_id": section_id, "quantity": quantity,
                            "seat_ids": sorted(seat_ids) if seat_ids else None}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_selection(section: SectionFacts, quantity: int | None, seat_ids: list[int] | None) -> int:
    if section.kind == SECTION_GENERAL:
        if seat_ids:
            raise Unprocessable("This is a general admission section: give quantity, not seat_ids",
                                errors={"seat_ids": ["not allowed for general admission"]})
        if quantity is None:
            raise Unprocessable("quantity is required", errors={"quantity": ["required"]})
        if quantity < 1:
            raise Unprocessable("quantity must be at least 1", errors={"quantity": ["must be at least 1"]})
        return quantity
    if not seat_ids:
        raise Unprocessable("This is a seated section: give seat_ids", errors={"seat_ids": ["required"]})
    if len(set(seat_ids)) != len(seat_ids):
        raise Unprocessable("seat_ids contains duplicates", errors={"seat_ids": ["duplicates"]})
    if quantity is not None and quantity != len(seat_ids):
        raise Unprocessable("quantity does not match seat_ids", errors={"quantity": ["must equal len(seat_ids)"]})
    if any(seat_id not in section.seat_labels for seat_id in seat_ids):
        raise Unprocessable("Some seats are not in this section", errors={"seat_ids": ["unknown seat"]})
    return len(seat_ids)


def pending_view(record: dict[str, Any]) -> dict[str, Any]:
    """The API view of a request the hold writer has not written yet."""
    labels = _seat_labels(record)
    return {
        "reservation_id": record["id"], "event_id": record["event_id"], "section_id": record["section_id"],
        "status": "pending", "quantity": record["quantity"],
        "seats": [{"id": s, "label": labels.get(s, "")} for s in record.get("seat_ids") or []],
        "amount_cents": record["amount_cents"], "currency": record["currency"], "hold_expires_at": None,
        "reason": None, "created_at": datetime.fromtimestamp(record["created_at"], UTC), "confirmed_at": None,
        "status_url": f"/api/tickets/status/{record['id']}",
    }


def _seat_labels(record: dict[str, Any]) -> dict[int, str]:
    if not record.get("seat_ids"):
        return {}
    try:
        return catalogue.section(record["event_id"], record["section_id"]).seat_labels
    except AppError:
        return {}


def accept(req: ReserveRequest) -> tuple[str, dict[str, Any] | None]:
    """Accept a reserve request: (reservation id, its pending record) when new, (id, None) when the
    same Idempotency-Key and body were accepted before. Raises the 4xx of a refusal."""
    event = catalogue.event(req.event_id)
    if req.offer_token:
        return _accept_offer(req, event)
    passes_claims = passes.decode(req.admission_token, req.user_id, req.event_id)
    section = catalogue.section(req.event_id, req.section_id)
    _check_lane(section, passes_claims)
    if passes_claims.get("lim"):  # an access code's own ticket limit (app/queue/lanes.py)
        event = dataclasses.replace(event, max_per_user=min(event.max_per_user, int(passes_claims["lim"])))
    quantity = validate_selection(section, req.quantity, req.seat_ids)
    if quantity > event.max_per_user:
        raise Unprocessable(f"At most {event.max_per_user} tickets per user for this event",
                            reason="limit_exceeded", errors={"quantity": [f"must be 1..{event.max_per_user}"]},
                            params={"max": event.max_per_user})
    digest = request_hash(req.event_id, req.section_id, req.quantity, req.seat_ids)
    now = time.time()
    record = _record(req, section, quantity, digest, now)
    keys = QueueKeys(req.event_id)
    waitlist, pool, stats = calls.ReleaseKeys.of(req.event_id, section.id)
    script_keys = intake_calls.ReserveKeys(
        active=keys.active, idempotency=keys.idempotency(), user_units=keys.user_units(),
        gate=gate.gate_key(req.event_id, section.id), holds=keys.holds(section.id),
        reserve_stream=keys.reserve_stream(), pending=keys.pending(),
        revoked=cluster.revocation_key(keys, req.revoked_key), waitlist=waitlist, waitlist_pool=pool,
        waitlist_stats=stats, pending_of_user=keys.pending_of(), pending_units=keys.pending_units())
    args = _intake_args(req, passes_claims["exp"], now, digest, record, quantity, event)
    reply = intake_calls.reserve(script_keys, args)
    if reply.outcome == "no_gate":  # the section's first request (or Redis lost the gate): derive it once
        gate.ensure(get_section(req.event_id, section.id))
        db.session.rollback()
        reply = intake_calls.reserve(script_keys, args)
    outcome = reply.outcome
    if outcome == "accepted":
        RESERVATIONS.labels(outcome="requested").inc()
        return record["id"], record
    if outcome == "replay":
        return reply.detail, None
    _raise_shared_refusal(reply, event)
    if outcome == "sold_out":
        RESERVATIONS.labels(outcome="gate_sold_out").inc()
        links = ({"waitlist": f"/api/events/{req.event_id}/sections/{section.id}/waitlist"}
                 if section.kind == SECTION_GENERAL else None)
        raise Conflict("Sold out" + ("; join the waitlist to be offered returned tickets in order" if links else ""),
                       reason="sold_out", links=links)
    if outcome == "admission_inactive":
        raise Forbidden("The admission is no longer active", reason="admission_inactive")
    raise RuntimeError(f"unexpected reply from RESERVE: {reply!r}")


def _check_lane(section: SectionFacts, claims: dict[str, Any]) -> None:
    """A section a priority lane reserves is its fans' alone until its release time."""
    if section.reserved_for and time.time() < section.released_at and claims.get("lane") != section.reserved_for:
        released = datetime.fromtimestamp(section.released_at, UTC).isoformat()
        raise Forbidden(f"This section is reserved for the {section.reserved_for} lane until {released}",
                        reason="section_reserved", params={"lane": section.reserved_for, "released_at": released})


def _intake_args(req: ReserveRequest, pass_id: str | float, now: float, digest: str, record: dict[str, Any],
                 quantity: int, event: EventFacts) -> intake_calls.IntakeArgs:
    return intake_calls.IntakeArgs(
        user_id=req.user_id, pass_id=pass_id, now=f"{now:.6f}",
        idempotency_field=f"{req.user_id}:{req.idempotency_key}", request_hash=digest,
        reservation_id=record["id"], quantity=quantity, max_per_user=event.max_per_user,
        record_json=json.dumps(record, separators=(",", ":")), section_id=int(record["section_id"]))


def _raise_shared_refusal(reply: intake_calls.IntakeReply, event: EventFacts) -> None:
    """The refusals RESERVE and CLAIM_OFFER share (their common intake: app/redis/lua/intake.lua)."""
    outcome = reply.outcome
    if outcome == "limit_exceeded":
        already = int(reply.detail or 0)
        raise Unprocessable(f"At most {event.max_per_user} tickets per user for this event; you have {already}",
                            reason="limit_exceeded", params={"max": event.max_per_user, "held": already},
                            errors={"quantity": [f"at most {max(0, event.max_per_user - already)} more"]})
    if outcome == "idempotency_key_reused":
        raise Unprocessable("This Idempotency-Key was used with a different request body",
                            reason="idempotency_key_reused")
    if outcome == "token_revoked":
        raise TokenRevoked()


def _record(req: ReserveRequest, section: SectionFacts, quantity: int, digest: str, now: float) -> dict[str, Any]:
    if section.price_cents * quantity > MAX_AMOUNT_CENTS:  # what reservations.amount_cents holds
        raise Unprocessable("The order's amount is larger than the platform can record", reason="amount_too_large",
                            errors={"quantity": ["the amount exceeds the largest recordable amount"]})
    return {"id": str(uuid.uuid4()), "user_id": req.user_id, "event_id": req.event_id,
            "section_id": req.section_id, "quantity": quantity,
            "seat_ids": sorted(req.seat_ids) if req.seat_ids else None,
            "amount_cents": section.price_cents * quantity, "currency": section.currency,
            "idempotency_key": req.idempotency_key, "request_hash": digest, "created_at": now,
            "request_id": _request_id()}


def _accept_offer(req: ReserveRequest, event: EventFacts) -> tuple[str, dict[str, Any] | None]:
    """A reserve that claims a waitlist offer (X-Offer-Token): one CLAIM_OFFER call, no admission."""
    from app.booking import waitlist

    claims = passes.decode_offer(req.offer_token or "", req.user_id, req.event_id)
    if int(claims["sid"]) != req.section_id:
        raise Unprocessable("The offer is for another section", reason="offer_wrong_section",
                            errors={"section_id": [f"the offer is for section {claims['sid']}"]})
    section = catalogue.section(req.event_id, req.section_id)
    quantity = validate_selection(section, req.quantity, req.seat_ids)
    digest = request_hash(req.event_id, req.section_id, req.quantity, req.seat_ids)
    now = time.time()
    record = _record(req, section, quantity, digest, now)
    keys = QueueKeys(req.event_id)
    wl = calls.WaitlistKeys.of(req.event_id, section.id)
    reply = intake_calls.claim_offer(
        intake_calls.ClaimOfferKeys(
            offers=wl.offers, idempotency=keys.idempotency(), user_units=keys.user_units(),
            offer_expiries=wl.offer_expiries, user_offer=wl.user_offer, reserve_stream=keys.reserve_stream(),
            pending=keys.pending(), revoked=cluster.revocation_key(keys, req.revoked_key), offered=wl.offered,
            gate=wl.gate, waitlist=wl.waitlist, waitlist_pool=wl.pool, waitlist_stats=wl.stats,
            fresh_offers=wl.fresh, pending_of_user=keys.pending_of(), pending_units=keys.pending_units()),
        _intake_args(req, claims["jti"], now, digest, record, quantity, event))
    outcome = reply.outcome
    if outcome == "accepted":
        RESERVATIONS.labels(outcome="requested").inc()
        waitlist.claimed(req.event_id, section.id, req.user_id, claims["jti"], record["id"], quantity)
        return record["id"], record
    if outcome == "replay":
        return reply.detail, None
    _raise_shared_refusal(reply, event)
    if outcome == "offer_gone":
        raise Conflict("The offer is no longer open (claimed, declined or expired)", reason="offer_gone")
    if outcome == "more_than_offered":
        raise Unprocessable(f"The offer is for {reply.detail} tickets", reason="more_than_offered",
                            errors={"quantity": [f"at most {reply.detail}"]})
    raise RuntimeError(f"unexpected reply from CLAIM_OFFER: {reply!r}")


def _request_id() -> str | None:
    return request_id_var.get()


def pending_records_of(user_id: int, reservation_id: str | None = None) -> list[dict[str, Any]]:
    """The user's requests not yet in MySQL (all, or the one ``reservation_id``), looked up in the
    sales the user joined (a reserve needs an admission, so it is always one of those)."""
    client = redis_store.client
    event_ids = sorted(int(e) for e in client.smembers(user_queues_key(user_id)))
    if not event_ids:
        return []
    if reservation_id:
        wanted = {event_id: [reservation_id] for event_id in event_ids}
    else:  # the user's own pending ids per sale: work grows with the user's requests, not the sale's
        pipe = client.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.hget(QueueKeys(event_id).pending_of(), str(user_id))
        wanted = {event_id: ids.split() for event_id, ids in zip(event_ids, pipe.execute(), strict=True) if ids}
    if not wanted:
        return []
    pipe = client.pipeline(transaction=False)
    for event_id, ids in wanted.items():
        pipe.hmget(QueueKeys(event_id).pending(), ids)
    found = []
    for values in pipe.execute():
        for raw in values:
            if raw:
                record = json.loads(raw)
                if record["user_id"] == user_id:
                    found.append(record)
    return sorted(found, key=lambda r: r["created_at"], reverse=True)
