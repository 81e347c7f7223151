"""Booking rules: request, hold, confirm, cancel and expire reservations.

MySQL is the truth. Every inventory change is one conditional UPDATE (general admission) or a
row-locked all-or-nothing claim of seats in id order (seated), committed in one transaction with
the reservation row and its outbox event. Lock order everywhere: reservation -> user -> section
or seats, so two transactions never wait on each other in a cycle.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.booking import gate
from app.booking.models import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    PENDING,
    REJECTED,
    Reservation,
)
from app.booking.payments import get_provider
from app.catalogue.models import SEAT_HELD, SEAT_SOLD, SECTION_GENERAL, Event, Seat, Section
from app.catalogue.services import get_event, get_section, seat_is_free
from app.db import utcnow
from app.errors import Conflict, NotFound, PaymentRequired, Unprocessable
from app.extensions import db
from app.observability.context import set_context
from app.observability.metrics import HOLD_LATENCY, RESERVATIONS
from app.outbox.services import record_event
from app.pagination import paginate
from app.queue import passes
from app.queue.services import release_active_slot
from app.tasking import call_after_commit, enqueue_after_commit

log = logging.getLogger(__name__)


# --- views -------------------------------------------------------------------------------------

def effective_status(res: Reservation, now: datetime | None = None) -> str:
    """A hold past its deadline is expired for the user even before the sweeper has run."""
    if res.status == HELD and res.hold_expires_at is not None and res.hold_expires_at <= (now or utcnow()):
        return EXPIRED
    return res.status


def view(res: Reservation) -> dict[str, Any]:
    seats: list[dict[str, Any]] = []
    if res.seat_ids:
        rows = db.session.scalars(select(Seat).where(Seat.id.in_(res.seat_ids)).order_by(Seat.id)).all()
        seats = [{"id": s.id, "label": s.label} for s in rows]
    status = effective_status(res)
    return {
        "reservation_id": res.id,
        "event_id": res.event_id,
        "section_id": res.section_id,
        "status": status,
        "quantity": res.quantity,
        "seats": seats,
        "amount_cents": res.amount_cents,
        "currency": res.currency,
        "hold_expires_at": res.hold_expires_at,
        "reason": res.reason if status == res.status else "hold_expired",
        "created_at": res.created_at,
        "confirmed_at": res.confirmed_at,
        "status_url": f"/api/tickets/status/{res.id}",
    }


def get_reservation(reservation_id: str, user_id: int) -> Reservation:
    res = db.session.get(Reservation, reservation_id)
    if res is None or res.user_id != user_id:  # someone else's reservation does not exist for you
        raise NotFound("Reservation not found", reason="reservation_not_found")
    return res


def list_reservations(user_id: int, page: int, page_size: int) -> tuple[list[Reservation], int]:
    return paginate(select(Reservation).where(Reservation.user_id == user_id)
                    .order_by(Reservation.created_at.desc(), Reservation.id), page, page_size)


# --- request (API) -----------------------------------------------------------------------------

def request_hash(event_id: int, section_id: int, quantity: int | None, seat_ids: list[int] | None) -> str:
    canonical = json.dumps({"event_id": event_id, "section_id": section_id, "quantity": quantity,
                            "seat_ids": sorted(seat_ids) if seat_ids else None}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _live_quantity(session: Session, user_id: int, event_id: int, now: datetime, *,
                   include_pending: bool, exclude_id: str | None = None) -> int:
    """Units the user already has in this event: confirmed, unexpired holds (and pending)."""
    live = or_(Reservation.status == CONFIRMED,
               and_(Reservation.status == HELD, Reservation.hold_expires_at > now))
    if include_pending:
        live = or_(live, Reservation.status == PENDING)
    query = select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
        Reservation.user_id == user_id, Reservation.event_id == event_id, live)
    if exclude_id:
        query = query.where(Reservation.id != exclude_id)
    return int(session.scalar(query) or 0)


@dataclass
class ReserveRequest:
    user_id: int
    event_id: int
    section_id: int
    quantity: int | None
    seat_ids: list[int] | None
    idempotency_key: str
    admission_token: str | None


def _replay(existing: Reservation, digest: str) -> Reservation:
    if existing.request_hash != digest:
        raise Unprocessable("This Idempotency-Key was used with a different request body",
                            reason="idempotency_key_reused")
    return existing


def request_reservation(req: ReserveRequest) -> tuple[Reservation, bool]:
    """Validate, pass the Redis gate, record a pending reservation and enqueue its hold.

    Returns (reservation, created). The same key and body return the same reservation.
    """
    session = db.session
    digest = request_hash(req.event_id, req.section_id, req.quantity, req.seat_ids)
    existing = session.scalar(select(Reservation).where(Reservation.user_id == req.user_id,
                                                        Reservation.idempotency_key == req.idempotency_key))
    if existing is not None:
        return _replay(existing, digest), False

    event = get_event(req.event_id)
    passes.verify(req.admission_token, req.user_id, req.event_id)
    section = get_section(req.event_id, req.section_id)
    quantity = _validate_selection(section, req.quantity, req.seat_ids)
    now = utcnow()
    if quantity > event.max_per_user:
        raise Unprocessable(f"At most {event.max_per_user} tickets per user for this event",
                            reason="limit_exceeded", errors={"quantity": [f"must be 1..{event.max_per_user}"]})
    already = _live_quantity(session, req.user_id, req.event_id, now, include_pending=True)
    if already + quantity > event.max_per_user:
        raise Unprocessable(f"At most {event.max_per_user} tickets per user for this event; you have {already}",
                            reason="limit_exceeded",
                            errors={"quantity": [f"at most {event.max_per_user - already} more"]})

    if not gate.take(section, quantity):
        RESERVATIONS.labels(outcome="gate_sold_out").inc()
        raise Conflict("Sold out", reason="sold_out")

    res = Reservation(user_id=req.user_id, event_id=event.id, section_id=section.id, quantity=quantity,
                      seat_ids=sorted(req.seat_ids) if req.seat_ids else None, status=PENDING,
                      amount_cents=section.price_cents * quantity, currency=section.currency,
                      idempotency_key=req.idempotency_key, request_hash=digest)
    session.add(res)
    session.flush()
    record_event(session, "ReservationRequested", "reservation", res.id, _event_data(res))
    enqueue_after_commit(session, "booking.hold", [res.id])
    try:
        session.commit()
    except IntegrityError:
        # a concurrent request with the same key won the unique index
        session.rollback()
        gate.give_back(event.id, section.id, quantity)
        existing = session.scalar(select(Reservation).where(Reservation.user_id == req.user_id,
                                                            Reservation.idempotency_key == req.idempotency_key))
        if existing is None:
            raise
        return _replay(existing, digest), False
    RESERVATIONS.labels(outcome="requested").inc()
    return res, True


def _validate_selection(section: Section, quantity: int | None, seat_ids: list[int] | None) -> int:
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
    found = db.session.scalar(select(func.count(Seat.id)).where(Seat.id.in_(seat_ids),
                                                                  Seat.section_id == section.id))
    if found != len(seat_ids):
        raise Unprocessable("Some seats are not in this section", errors={"seat_ids": ["unknown seat"]})
    return len(seat_ids)


def _event_data(res: Reservation, **extra: Any) -> dict[str, Any]:
    data = {"reservation_id": res.id, "user_id": res.user_id, "event_id": res.event_id,
            "section_id": res.section_id, "quantity": res.quantity, "seat_ids": res.seat_ids,
            "amount_cents": res.amount_cents, "currency": res.currency, "status": res.status}
    data.update(extra)
    return data


# --- hold (Celery task) ------------------------------------------------------------------------

def _lock_reservation(session: Session, reservation_id: str) -> Reservation | None:
    """Lock the reservation row for this transaction and read its current state.

    A write comes first: on MySQL it takes the row lock like FOR UPDATE; on SQLite (which has no
    row locks and starts a transaction only at the first write) it takes the write lock, so a
    second worker can never act on a state the first has already changed.
    """
    session.execute(update(Reservation).where(Reservation.id == reservation_id)
                    .values(updated_at=Reservation.updated_at).execution_options(synchronize_session=False))
    return session.scalar(select(Reservation).where(Reservation.id == reservation_id).with_for_update()
                          .execution_options(populate_existing=True))


def _take_general(session: Session, section: Section, quantity: int, now: datetime) -> bool:
    def attempt() -> bool:
        result = session.execute(
            update(Section)
            .where(Section.id == section.id, Section.sold + Section.held + quantity <= Section.capacity)
            .values(held=Section.held + quantity)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    if attempt():
        return True
    # capacity may be tied up in holds past their deadline: release those, then try once more
    if release_expired_in_section(session, section, now):
        return attempt()
    return False


def _take_seats(session: Session, res: Reservation, hold_until: datetime, now: datetime) -> bool:
    seat_ids = sorted(res.seat_ids or [])
    # lock in id order: two buyers of overlapping seats queue up instead of deadlocking
    seats = session.scalars(select(Seat).where(Seat.id.in_(seat_ids), Seat.section_id == res.section_id)
                            .order_by(Seat.id).with_for_update()).all()
    free = session.scalars(select(Seat.id).where(Seat.id.in_(seat_ids), seat_is_free(now))).all()
    if len(seats) != len(seat_ids) or len(free) != len(seat_ids):
        return False
    result = session.execute(
        update(Seat).where(Seat.id.in_(seat_ids), seat_is_free(now))
        .values(state=SEAT_HELD, reservation_id=res.id, held_until=hold_until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == len(seat_ids)


def _lock_pending(session: Session, reservation_id: str) -> tuple[Reservation | None, bool]:
    """(reservation, True) when it is pending and now locked; else (it or None, False), rolled back."""
    res = _lock_reservation(session, reservation_id)
    if res is None or res.status != PENDING:
        session.rollback()
        return res, False
    return res, True


def hold(reservation_id: str) -> Reservation | None:
    """Turn a pending reservation into a hold, or reject it. Safe to run any number of times."""
    session = db.session
    res, pending = _lock_pending(session, reservation_id)
    if not pending:
        return res
    set_context(user_id=res.user_id, event_id=res.event_id)
    event = session.get(Event, res.event_id)
    section = session.get(Section, res.section_id)
    now = utcnow()
    session.execute(select(User.id).where(User.id == res.user_id).with_for_update())  # per-user limit
    if _live_quantity(session, res.user_id, res.event_id, now, include_pending=False,
                      exclude_id=res.id) + res.quantity > event.max_per_user:
        return _reject(session, res, "limit_exceeded")
    hold_until = now + timedelta(seconds=event.hold_seconds)
    if section.kind == SECTION_GENERAL:
        taken = _take_general(session, section, res.quantity, now)
    else:
        taken = _take_seats(session, res, hold_until, now)
    if not taken:
        return _reject(session, res, "sold_out" if section.kind == SECTION_GENERAL else "seats_unavailable")
    res.status = HELD
    res.hold_expires_at = hold_until
    record_event(session, "SeatsHeld", "reservation", res.id, _event_data(res, hold_expires_at=hold_until.isoformat()))
    event_id, section_id, quantity, rid = res.event_id, res.section_id, res.quantity, res.id
    call_after_commit(session, lambda: gate.track_hold(event_id, section_id, rid, quantity, hold_until.timestamp()))
    session.commit()
    log.info("seats held", extra={"reservation_id": res.id, "quantity": res.quantity})
    RESERVATIONS.labels(outcome="held").inc()
    HOLD_LATENCY.observe(max(0.0, (utcnow() - res.created_at).total_seconds()))
    return res


def _reject(session: Session, res: Reservation, reason: str) -> Reservation:
    res.status = REJECTED
    res.reason = reason
    record_event(session, "ReservationRejected", "reservation", res.id, _event_data(res, reason=reason))
    event_id, section_id, quantity = res.event_id, res.section_id, res.quantity
    call_after_commit(session, lambda: gate.give_back(event_id, section_id, quantity))
    session.commit()
    log.info("reservation rejected", extra={"reservation_id": res.id, "reason": reason})
    RESERVATIONS.labels(outcome="rejected").inc()
    return res


def reject_busy(reservation_id: str) -> Reservation | None:
    """After the hold's retries are spent on lock timeouts: rejected, never stuck in pending."""
    session = db.session
    res, pending = _lock_pending(session, reservation_id)
    return _reject(session, res, "busy") if pending else res


# --- release (expiry, cancel) --------------------------------------------------------------------

def _release_inventory(session: Session, res: Reservation) -> None:
    """Return a hold's units to MySQL, and to the gate after commit (unless it reclaimed them)."""
    if res.seat_ids:
        # only seats still ours: after the deadline another buyer may already have taken some
        session.execute(
            update(Seat).where(Seat.reservation_id == res.id, Seat.state == SEAT_HELD)
            .values(state="available", reservation_id=None, held_until=None)
            .execution_options(synchronize_session=False)
        )
    else:
        session.execute(
            update(Section).where(Section.id == res.section_id, Section.held >= res.quantity)
            .values(held=Section.held - res.quantity).execution_options(synchronize_session=False)
        )
    event_id, section_id, rid, quantity = res.event_id, res.section_id, res.id, res.quantity
    call_after_commit(session, lambda: gate.release_hold(event_id, section_id, rid, quantity, give_back=True))


def _expire(session: Session, res: Reservation) -> None:
    # conditional: only the transaction that moves the hold out of `held` releases its inventory
    moved = session.execute(update(Reservation).where(Reservation.id == res.id, Reservation.status == HELD)
                            .values(status=EXPIRED).execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        return
    _release_inventory(session, res)
    res.status = EXPIRED
    res.reason = "hold_expired"
    record_event(session, "ReservationExpired", "reservation", res.id, _event_data(res))
    RESERVATIONS.labels(outcome="expired").inc()


def release_expired_in_section(session: Session, section: Section, now: datetime, limit: int = 100) -> int:
    expired = session.scalars(
        select(Reservation).where(Reservation.section_id == section.id, Reservation.status == HELD,
                                  Reservation.hold_expires_at <= now)
        .order_by(Reservation.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    for res in expired:
        _expire(session, res)
    session.flush()
    return len(expired)


def sweep_expired_holds(batch: int = 500) -> int:
    """Release holds past their deadline in batches; SKIP LOCKED lets several sweepers share work."""
    total = 0
    session = db.session
    while True:
        now = utcnow()
        expired = session.scalars(
            select(Reservation).where(Reservation.status == HELD, Reservation.hold_expires_at <= now)
            .order_by(Reservation.hold_expires_at, Reservation.id).limit(batch).with_for_update(skip_locked=True)
        ).all()
        if not expired:
            session.rollback()
            return total
        for res in expired:
            _expire(session, res)
        session.commit()
        total += len(expired)
        if len(expired) < batch:
            return total


def requeue_stale_pending(older_than_seconds: int = 30, limit: int = 500) -> int:
    """Re-enqueue holds whose message was lost (crash between commit and publish)."""
    from app.tasking import send_task

    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    ids = db.session.scalars(select(Reservation.id).where(Reservation.status == PENDING,
                                                          Reservation.created_at <= cutoff).limit(limit)).all()
    db.session.rollback()
    for reservation_id in ids:
        send_task("booking.hold", [reservation_id])
    return len(ids)


def cancel(reservation_id: str, user_id: int) -> Reservation:
    session = db.session
    get_reservation(reservation_id, user_id)
    res = _lock_reservation(session, reservation_id)
    if res.status == CANCELLED:
        session.rollback()
        return res
    if res.status == CONFIRMED:
        session.rollback()
        raise Conflict("A confirmed reservation cannot be cancelled here", reason="already_confirmed")
    if res.status in {REJECTED, EXPIRED}:
        session.rollback()
        raise Conflict(f"The reservation is already {res.status}", reason=f"already_{res.status}")
    if res.status == HELD:
        _release_inventory(session, res)
    else:  # pending: the hold task will find it cancelled and do nothing
        event_id, section_id, quantity = res.event_id, res.section_id, res.quantity
        call_after_commit(session, lambda: gate.give_back(event_id, section_id, quantity))
    res.status = CANCELLED
    res.reason = "cancelled_by_user"
    record_event(session, "ReservationCancelled", "reservation", res.id, _event_data(res))
    session.commit()
    RESERVATIONS.labels(outcome="cancelled").inc()
    release_active_slot(res.event_id, user_id)
    return res


# --- confirm -------------------------------------------------------------------------------------

def confirm(reservation_id: str, user_id: int, payment_token: str) -> Reservation:
    session = db.session
    get_reservation(reservation_id, user_id)
    res = _lock_reservation(session, reservation_id)
    now = utcnow()
    if res.status == CONFIRMED:
        session.rollback()
        return res
    if res.status == PENDING:
        session.rollback()
        raise Conflict("The seats are not held yet; try again shortly", reason="not_held_yet")
    if res.status == HELD and res.hold_expires_at <= now:
        _expire(session, res)
        session.commit()
        raise Conflict("The hold has expired", reason="hold_expired")
    if res.status != HELD:
        session.rollback()
        raise Conflict(f"The reservation is {res.status}", reason=f"reservation_{res.status}")

    payment = get_provider(current_app.config["PAYMENT_PROVIDER"]).charge(
        amount_cents=res.amount_cents, currency=res.currency, token=payment_token, idempotency_key=res.id)
    if not payment.approved:
        session.rollback()
        raise PaymentRequired("Payment declined", reason=payment.decline_reason or "payment_declined")

    if res.seat_ids:
        sold = session.execute(
            update(Seat).where(Seat.reservation_id == res.id, Seat.state == SEAT_HELD)
            .values(state=SEAT_SOLD, held_until=None).execution_options(synchronize_session=False)
        ).rowcount
        ok = sold == len(res.seat_ids)
    else:
        ok = session.execute(
            update(Section).where(Section.id == res.section_id, Section.held >= res.quantity)
            .values(held=Section.held - res.quantity, sold=Section.sold + res.quantity)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
    if not ok:  # cannot happen while the hold is ours; refuse rather than sell what we do not hold
        session.rollback()
        log.error("confirm found inventory out of step for reservation %s", res.id)
        raise Conflict("The hold could not be confirmed", reason="hold_lost")
    res.status = CONFIRMED
    res.confirmed_at = now
    res.payment_ref = payment.reference
    res.reason = None
    record_event(session, "ReservationConfirmed", "reservation", res.id,
                 _event_data(res, payment_ref=payment.reference))
    event_id, section_id, quantity = res.event_id, res.section_id, res.quantity
    call_after_commit(session, lambda: gate.release_hold(event_id, section_id, reservation_id, quantity,
                                                         give_back=False))
    session.commit()
    RESERVATIONS.labels(outcome="confirmed").inc()
    release_active_slot(res.event_id, user_id)
    return res
