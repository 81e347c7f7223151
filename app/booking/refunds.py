"""Refunds of confirmed tickets: by the owner within the event's policy, or by an admin (one ticket,
or a whole event as a Celery task).

No row lock is held across the provider call. Three steps, each its own transaction or call:
1. record the intent: lock the reservation, check it, insert a `pending` refund row, commit;
2. ask the provider, with the refund id as idempotency key (a second call gets the same answer);
3. finish: lock the reservation again; approved -> the ticket is `refunded`, its units go back to
   MySQL, a `TicketRefunded` event joins the outbox, all in one commit, and then the units go to
   the gate (or to the waitlist's offers first) and the owner is notified; declined -> the refund
   is `declined` and the ticket stays confirmed.
A process that dies between 1 and 3 leaves a `pending` row: the sweeper (beat, every minute) asks
the provider again with the same key and finishes it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.booking import gate
from app.booking.models import CONFIRMED, REFUNDED, Refund, Reservation
from app.booking.payments import PaymentResult, get_provider
from app.catalogue.models import SEAT_SOLD, Event, Seat, Section
from app.db import utcnow
from app.errors import Conflict, NotFound, PaymentRequired
from app.extensions import db
from app.observability.metrics import REFUNDS, via
from app.outbox.services import record_event
from app.tasking import call_after_commit

log = logging.getLogger(__name__)

PENDING, SUCCEEDED, DECLINED = "pending", "succeeded", "declined"


def refund_view(refund: Refund) -> dict[str, Any]:
    return {"refund_id": refund.id, "reservation_id": refund.reservation_id, "status": refund.status,
            "amount_cents": refund.amount_cents, "fee_cents": refund.fee_cents, "currency": refund.currency,
            "reason": refund.reason, "decline_reason": refund.decline_reason, "created_at": refund.created_at}


def _lock(session: Session, reservation_id: str) -> Reservation | None:
    return session.scalar(select(Reservation).where(Reservation.id == reservation_id).with_for_update()
                          .execution_options(populate_existing=True))


def request_refund(reservation_id: str, actor_id: int, *, admin: bool = False, reason: str | None = None) -> Refund:
    """Refund one confirmed ticket (idempotent: a second call returns the first refund).

    The owner: within the event's refund deadline, minus its fee. An admin: any ticket, in full.
    Raises 404 (not yours / unknown), 409 (not confirmed, deadline passed), 402 (declined)."""
    refund = _record_intent(reservation_id, actor_id, admin=admin, reason=reason)
    if refund.status != PENDING:
        return _answer(refund)
    return _answer(_finish(refund.id, _ask_provider(refund)))


def _record_intent(reservation_id: str, actor_id: int, *, admin: bool, reason: str | None) -> Refund:
    session = db.session
    res = _lock(session, reservation_id)
    if res is None or (not admin and res.user_id != actor_id):
        session.rollback()
        raise NotFound("Reservation not found", reason="reservation_not_found")
    existing = session.scalar(select(Refund).where(Refund.reservation_id == res.id))
    if existing is not None:  # a repeat (or a concurrent twin that committed first): the same refund
        session.rollback()
        return existing
    if res.status != CONFIRMED:
        session.rollback()
        raise Conflict(f"Only a confirmed ticket can be refunded; this one is {res.status}",
                       reason="not_refundable")
    event = session.get(Event, res.event_id)
    now = utcnow()
    if not admin and event.refund_deadline is not None and now > event.refund_deadline:
        session.rollback()
        raise Conflict(f"Refunds for this event closed at {event.refund_deadline.isoformat()}",
                       reason="refund_deadline_passed")
    fee = 0 if admin else (res.amount_cents * event.refund_fee_percent + 50) // 100
    refund = Refund(reservation_id=res.id, user_id=res.user_id, event_id=res.event_id, status=PENDING,
                    amount_cents=res.amount_cents - fee, fee_cents=fee, currency=res.currency,
                    requested_by=actor_id, reason=reason or ("admin" if admin else "requested_by_owner"))
    session.add(refund)
    session.commit()
    return refund


def _ask_provider(refund: Refund) -> PaymentResult:
    res = db.session.get(Reservation, refund.reservation_id)
    charge_id = res.payment_ref or ""
    db.session.rollback()  # nothing stays open during the call
    return get_provider(current_app.config["PAYMENT_PROVIDER"]).refund(
        charge_id=charge_id, amount_cents=refund.amount_cents, idempotency_key=refund.id)


def _finish(refund_id: str, result: PaymentResult) -> Refund:
    """Step 3 (also the sweeper's): apply the provider's answer once."""
    session = db.session
    refund = session.get(Refund, refund_id)
    res = _lock(session, refund.reservation_id)
    session.refresh(refund, with_for_update=True)
    if refund.status != PENDING:  # finished by a twin or by the sweeper
        session.rollback()
        return refund
    if not result.approved:
        refund.status, refund.decline_reason = DECLINED, result.decline_reason or "refund_declined"
        session.commit()
        REFUNDS.labels(outcome="declined", via=via()).inc()
        return refund
    if res.seat_ids:
        session.execute(update(Seat).where(Seat.reservation_id == res.id, Seat.state == SEAT_SOLD)
                        .values(state="available", reservation_id=None, held_until=None)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(update(Section).where(Section.id == res.section_id, Section.sold >= res.quantity)
                        .values(sold=Section.sold - res.quantity).execution_options(synchronize_session=False))
    res.status, res.reason = REFUNDED, refund.reason
    refund.status, refund.provider_ref = SUCCEEDED, result.reference
    record_event(session, "TicketRefunded", "reservation", res.id, {
        "reservation_id": res.id, "refund_id": refund.id, "user_id": res.user_id, "event_id": res.event_id,
        "section_id": res.section_id, "quantity": res.quantity, "seat_ids": res.seat_ids,
        "amount_cents": refund.amount_cents, "fee_cents": refund.fee_cents, "currency": refund.currency,
        "reason": refund.reason, "provider_ref": result.reference})
    event_id, section_id, quantity, user_id = res.event_id, res.section_id, res.quantity, res.user_id
    # the units return to sale (the waitlist's offers first) and the owner hears of it after COMMIT
    call_after_commit(session, lambda: gate.give_back(event_id, section_id, quantity, user_id=user_id))
    refunded_at = refund.created_at.timestamp()  # one notice per refund, however often this runs
    call_after_commit(session, lambda: _notify_owner(event_id, user_id, refunded_at))
    session.commit()
    REFUNDS.labels(outcome="succeeded", via=via()).inc()
    return refund


def _notify_owner(event_id: int, user_id: int, refunded_at: float) -> None:
    from app.tasking import send_task

    send_task("notifications.notify_users", [event_id, "refunded", [[user_id, refunded_at]]], queue="notifications")


def _answer(refund: Refund) -> Refund:
    if refund.status == DECLINED:
        raise PaymentRequired("The payment provider declined the refund; the ticket stays confirmed",
                              reason=refund.decline_reason or "refund_declined")
    return refund


def sweep_pending_refunds(older_than_seconds: int = 30, limit: int = 200) -> int:
    """Finish refunds whose process died between recording the intent and finishing it."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    ids = list(db.session.scalars(select(Refund.id).where(Refund.status == PENDING, Refund.updated_at <= cutoff)
                                  .order_by(Refund.updated_at).limit(limit)))
    db.session.rollback()
    for refund_id in ids:
        refund = db.session.get(Refund, refund_id)
        _finish(refund_id, _ask_provider(refund))
        log.info("refund finished by the sweeper", extra={"refund_id": refund_id})
    return len(ids)


def refund_event(event_id: int, actor_id: int, progress: Any = None) -> dict[str, int]:
    """Refund every confirmed ticket of an event (an admin's call, e.g. the event is cancelled).
    ``progress(done, total, counts)`` is called after each ticket. Re-running it is harmless."""
    if db.session.get(Event, event_id) is None:
        db.session.rollback()
        raise NotFound("Event not found", reason="event_not_found")
    ids = list(db.session.scalars(select(Reservation.id).where(Reservation.event_id == event_id,
                                                                Reservation.status == CONFIRMED)
                                  .order_by(Reservation.id)))
    db.session.rollback()
    counts = {"total": len(ids), "refunded": 0, "declined": 0, "skipped": 0}
    for done, reservation_id in enumerate(ids, start=1):
        try:
            request_refund(reservation_id, actor_id, admin=True, reason="event_refunded")
            counts["refunded"] += 1
        except PaymentRequired:
            counts["declined"] += 1
        except (Conflict, NotFound):
            counts["skipped"] += 1  # changed meanwhile (refunded by its owner, say)
        if progress is not None:
            progress(done, len(ids), counts)
    return counts
