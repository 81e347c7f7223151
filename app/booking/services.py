"""Booking rules after the intake: view, confirm, cancel and expire reservations.

These functions never commit: they lock, change and flush inside the caller's unit of work
(app/db.transaction), opened by the view, the task or app/booking/flows.py.

MySQL is the truth. Requests are accepted by one Redis call (app/booking/intake.py) and written as
holds or rejections in batches by the hold writer (app/booking/writer.py). Every inventory change
is a conditional UPDATE (general admission) or a row-locked claim of seats in id order (seated),
committed in one transaction with the reservation rows and their outbox events. Lock order
everywhere: (users ->) reservation -> section or seats, so no two transactions wait on each other
in a cycle.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.booking import intake
from app.booking.models import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    PENDING,
    REFUNDED,
    REJECTED,
    Payment,
    Reservation,
    reservation_event_data,
)
from app.booking.orders.services import order_numbers, place_order
from app.booking.payments import PaymentResult, get_provider
from app.catalogue.models import Seat, Section
from app.db import lock_rows, utcnow
from app.errors import Conflict, NotFound, PaymentRequired
from app.extensions import db
from app.inventory import units
from app.observability.metrics import RESERVATIONS
from app.outbox.services import record_event
from app.pagination import paginate
from app.queue.services import release_active_slot
from app.tasking import call_after_commit

log = logging.getLogger(__name__)

ORDERED = (CONFIRMED, REFUNDED)  # the states of a reservation that has an order


# --- views -------------------------------------------------------------------------------------

def effective_status(res: Reservation, now: datetime | None = None) -> str:
    """A hold past its deadline is expired for the user even before the sweeper has run."""
    if res.status == HELD and res.hold_expires_at is not None and res.hold_expires_at <= (now or utcnow()):
        return EXPIRED
    return res.status


def seat_labels(reservations: list[Reservation]) -> dict[int, str]:
    """The labels of every seat of these reservations: one query for a whole page."""
    seat_ids = sorted({s for res in reservations for s in res.seat_ids or []})
    if not seat_ids:
        return {}
    return {s.id: s.label for s in db.session.scalars(select(Seat).where(Seat.id.in_(seat_ids)))}


def view(res: Reservation, labels: dict[int, str] | None = None, numbers: dict[str, str] | None = None
         ) -> dict[str, Any]:
    if labels is None:
        labels = seat_labels([res])
    if numbers is None:
        numbers = order_numbers([res.id]) if res.status in ORDERED else {}
    seats = [{"id": s, "label": labels.get(s, "")} for s in sorted(res.seat_ids or [])]
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
        "order_number": numbers.get(res.id),
        "status_url": f"/api/tickets/status/{res.id}",
    }


def get_reservation(reservation_id: str, user_id: int) -> Reservation:
    res = db.session.get(Reservation, reservation_id)
    if res is None:
        if intake.pending_records_of(user_id, reservation_id):
            raise Conflict("The request is accepted and not held yet; try again shortly", reason="not_held_yet",
                           headers={"Retry-After": "1"})
        # the writer may have committed meanwhile: READ COMMITTED, so this read sees it
        res = db.session.get(Reservation, reservation_id)
    if res is None or res.user_id != user_id:  # someone else's reservation does not exist for you
        raise NotFound("Reservation not found", reason="reservation_not_found")
    return res


def reservation_view(reservation_id: str, user_id: int) -> dict[str, Any]:
    """One reservation of the user: from MySQL, or `pending` from the moment its 202 was answered."""
    res = db.session.get(Reservation, reservation_id)
    if res is None:
        pending = intake.pending_records_of(user_id, reservation_id)
        if pending:
            return intake.pending_view(pending[0])
        # the writer may have committed between the two reads (it retires the record after
        # COMMIT): READ COMMITTED, so this read sees it
        res = db.session.get(Reservation, reservation_id)
    if res is not None and res.user_id == user_id:
        return view(res)
    raise NotFound("Reservation not found", reason="reservation_not_found")


def list_reservations(user_id: int, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """Newest first; requests not yet written by the hold writer lead the first page."""
    pending = [intake.pending_view(r) for r in intake.pending_records_of(user_id)]
    rows, total = paginate(select(Reservation).where(Reservation.user_id == user_id)
                           .order_by(Reservation.created_at.desc(), Reservation.id), page, page_size)
    labels = seat_labels(rows)
    numbers = order_numbers([r.id for r in rows if r.status in ORDERED])
    items = [view(r, labels, numbers) for r in rows]
    if page == 1:
        items = (pending + items)[:page_size]
    return items, total + len(pending)


def request_reservation(req: intake.ReserveRequest) -> tuple[dict[str, Any], bool]:
    """Accept a reserve request (one Redis call, see app/booking/intake.py): (view, created).
    The same key and body return the same reservation."""
    reservation_id, record = intake.accept(req)
    if record is not None:
        return intake.pending_view(record), True
    return reservation_view(reservation_id, req.user_id), False


def _lock_reservation(session: Session, reservation_id: str) -> Reservation | None:
    """Lock the reservation row for this transaction and read its current state.

    SELECT ... FOR UPDATE under READ COMMITTED reads the latest committed row, so a second worker
    can never act on a state the first has already changed.
    """
    return lock_rows(session, select(Reservation).where(Reservation.id == reservation_id).with_for_update()
                     .execution_options(populate_existing=True)).scalar()


# --- release (expiry, cancel) --------------------------------------------------------------------

def _expire(session: Session, res: Reservation) -> None:
    # conditional: only the transaction that moves the hold out of `held` releases its inventory
    moved = session.execute(update(Reservation).where(Reservation.id == res.id, Reservation.status == HELD)
                            .values(status=EXPIRED).execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        return
    units.release_held(session, res.units())
    res.status = EXPIRED
    res.reason = "hold_expired"
    record_event(session, "ReservationExpired", "reservation", res.id, reservation_event_data(res))
    RESERVATIONS.labels(outcome="expired").inc()


def end_hold_at_close(session: Session, reservation_id: str) -> bool:
    """The sale closed (its event started): a live hold ends now, unless a payment for it is being
    answered (its own flow, or the payment sweeper, finishes it). True when it ended."""
    res = _lock_reservation(session, reservation_id)
    if res is None or res.status != HELD:
        return False
    if session.scalar(select(Payment.id).where(Payment.reservation_id == res.id,
                                                Payment.status == PAYMENT_PENDING)):
        return False
    _expire(session, res)
    return True


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


def expire_due_holds(session: Session, batch: int = 500) -> int:
    """Release up to ``batch`` holds past their deadline; SKIP LOCKED lets several sweepers share
    the work (app/booking/flows.sweep_expired_holds commits each batch)."""
    expired = lock_rows(session,
        select(Reservation).where(Reservation.status == HELD, Reservation.hold_expires_at <= utcnow())
        .order_by(Reservation.hold_expires_at, Reservation.id).limit(batch).with_for_update(skip_locked=True)
    ).scalars().all()
    for res in expired:
        _expire(session, res)
    return len(expired)


def cancel(reservation_id: str, user_id: int) -> Reservation:
    session = db.session
    get_reservation(reservation_id, user_id)
    res = _lock_reservation(session, reservation_id)
    if res.status == CANCELLED:
        return res
    if res.status == CONFIRMED:
        raise Conflict("A confirmed reservation cannot be cancelled here", reason="already_confirmed")
    if res.status in {REJECTED, EXPIRED}:
        raise Conflict(f"The reservation is already {res.status}", reason=f"already_{res.status}")
    units.release_held(session, res.units())  # held (pending requests are not in MySQL: get_reservation said 409)
    res.status = CANCELLED
    res.reason = "cancelled_by_user"
    record_event(session, "ReservationCancelled", "reservation", res.id, reservation_event_data(res))
    event_id = res.event_id
    call_after_commit(session, lambda: RESERVATIONS.labels(outcome="cancelled").inc())
    call_after_commit(session, lambda: release_active_slot(event_id, user_id))
    return res


# --- confirm -------------------------------------------------------------------------------------
# Three steps, so no row lock is held while the payment provider answers (it may take seconds):
# 1. lock the reservation, check the hold, record a `pending` payment attempt, commit;
# 2. charge, with the attempt's id as idempotency key, holding nothing;
# 3. lock again and apply the answer once: approved -> sold and `confirmed`; declined -> 402; a
#    hold that ended meanwhile (expired, cancelled) -> the charge is refunded and the answer is 409.
# A process that dies after 1 leaves a `pending` attempt: the sweeper asks the provider what came
# of it (``lookup``) and finishes it the same way.

PAYMENT_PENDING, PAYMENT_APPROVED, PAYMENT_DECLINED, PAYMENT_VOIDED = "pending", "approved", "declined", "voided"


def start_payment(reservation_id: str, user_id: int) -> Payment | Reservation | None:
    """Step 1: a `pending` attempt for the hold (the provider is called after this commits), the
    reservation when it is confirmed already, or None when the hold has just expired (recorded)."""
    session = db.session
    get_reservation(reservation_id, user_id)
    res = _lock_reservation(session, reservation_id)
    now = utcnow()
    if res.status == CONFIRMED:
        return res
    if res.status == PENDING:
        raise Conflict("The seats are not held yet; try again shortly", reason="not_held_yet")
    if res.status == HELD and res.hold_expires_at <= now:
        _expire(session, res)
        return None
    if res.status != HELD:
        raise Conflict(f"The reservation is {res.status}", reason=f"reservation_{res.status}")
    if session.scalar(select(Payment.id).where(Payment.reservation_id == res.id, Payment.status == PAYMENT_PENDING)):
        raise Conflict("A payment for this hold is in progress", reason="payment_in_progress",
                       headers={"Retry-After": "1"})
    payment = Payment(reservation_id=res.id, status=PAYMENT_PENDING, amount_cents=res.amount_cents,
                      currency=res.currency)
    session.add(payment)
    session.flush()
    return payment


def finish_payment(payment_id: str, result: PaymentResult) -> tuple[Payment, Reservation]:
    """Step 3 (also the sweeper's): apply the provider's answer to the attempt, once. A payment
    that ends `voided` (the hold ended while the provider answered) is refunded after commit."""
    session = db.session
    payment = session.get(Payment, payment_id)
    res = _lock_reservation(session, payment.reservation_id)
    session.refresh(payment, with_for_update=True)
    if payment.status != PAYMENT_PENDING:  # finished already (a twin, the sweeper)
        return payment, res
    if not result.approved:
        payment.status, payment.decline_reason = PAYMENT_DECLINED, result.decline_reason or "payment_declined"
        return payment, res
    if res.status != HELD or not units.sell_held(session, res.units()):
        # the hold ended while the provider answered (expired, cancelled): give the money back
        payment.status, payment.provider_ref, payment.decline_reason = PAYMENT_VOIDED, result.reference, "hold_gone"
        if res.status == HELD:  # lapsed, and another buyer took some of its seats: what is left goes back now
            log.warning("confirm found the units of reservation %s taken", res.id)
            _expire(session, res)
        return payment, res
    now = utcnow()
    res.status, res.confirmed_at, res.payment_ref, res.reason = CONFIRMED, now, result.reference, None
    payment.status, payment.provider_ref = PAYMENT_APPROVED, result.reference
    place_order(session, res, payment.id, result.reference)
    record_event(session, "ReservationConfirmed", "reservation", res.id,
                 reservation_event_data(res, payment_ref=result.reference))
    event_id, owner = res.event_id, res.user_id
    call_after_commit(session, lambda: RESERVATIONS.labels(outcome="confirmed").inc())
    call_after_commit(session, lambda: release_active_slot(event_id, owner))
    return payment, res


class PaymentPending(Exception):  # noqa: N818 - an outcome, not an error: the view answers 202
    """The provider has not decided: the card asks for 3-D Secure (``client_secret`` lets the
    browser run it), or the charge is processing. The webhook or /complete settles it."""

    def __init__(self, payment: Payment, client_secret: str | None) -> None:
        super().__init__(payment.id)
        self.payment, self.client_secret = payment, client_secret

    def body(self) -> dict[str, Any]:
        return {"status": "requires_action" if self.client_secret else "processing", "payment_id": self.payment.id,
                "reservation_id": self.payment.reservation_id, "client_secret": self.client_secret,
                "complete_url": f"/api/payments/{self.payment.id}/complete"}


def record_intent(payment_id: str, intent_id: str) -> None:
    """The provider's intent of an attempt, recorded before it is confirmed (no second intent
    after a crash: the sweeper and /complete look this one up)."""
    db.session.execute(update(Payment).where(Payment.id == payment_id, Payment.status == PAYMENT_PENDING)
                       .values(provider_ref=intent_id, updated_at=utcnow())
                       .execution_options(synchronize_session=False))


def mark_pending_action(payment_id: str, result: PaymentResult) -> Payment:
    payment = db.session.get(Payment, payment_id)
    if payment.status == PAYMENT_PENDING and result.reference:
        payment.provider_ref = result.reference
    db.session.flush()
    return payment


def get_payment(payment_id: str, user_id: int) -> Payment:
    payment = db.session.get(Payment, payment_id)
    if payment is None or get_reservation(payment.reservation_id, user_id) is None:
        raise NotFound("Payment not found", reason="payment_not_found")
    return payment


def payment_by_reference(reference: str) -> Payment | None:
    """The attempt a provider's intent or charge belongs to."""
    return db.session.scalar(select(Payment).where(Payment.provider_ref == reference))


def hold_is_over(session: Session, payment: Payment) -> bool:
    res = session.get(Reservation, payment.reservation_id)
    return res is None or res.status != HELD or (res.hold_expires_at is not None and res.hold_expires_at <= utcnow())


def refund_voided(payment: Payment) -> None:
    """A charge for a hold that was gone: refunded, outside any transaction (idempotent by key)."""
    answer = get_provider(current_app.config["PAYMENT_PROVIDER"]).refund(
        charge_id=payment.provider_ref or "", amount_cents=payment.amount_cents, idempotency_key=f"void-{payment.id}")
    log.warning("payment %s refunded: its hold ended while the provider answered (refund %s)", payment.id,
                "approved" if answer.approved else answer.decline_reason)


def payment_answer(payment: Payment, res: Reservation) -> Reservation:
    """The buyer's answer for a finished attempt: the reservation, or the 402/409 to raise."""
    if payment.status == PAYMENT_APPROVED:
        return res
    if payment.status == PAYMENT_DECLINED:
        raise PaymentRequired("Payment declined", reason=payment.decline_reason or "payment_declined")
    raise Conflict("The hold ended before the payment was approved; the charge is refunded", reason="hold_expired")
