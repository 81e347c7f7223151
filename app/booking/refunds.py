"""Refunds of confirmed tickets: by the owner within the event's policy, or by an admin (one ticket,
or a whole event as a Celery task).

The rules of each step; app/booking/flows.py runs them as units of work (this module never
commits). No row lock is held across the provider call. Three steps, each its own transaction or call:
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
from typing import Any

from flask import current_app
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from app.booking.models import CONFIRMED, REFUNDED, Refund, Reservation
from app.booking.orders.services import void_tickets
from app.booking.payments import PaymentResult, get_provider
from app.catalogue.models import Event
from app.channels import Message
from app.db import lock_rows, utcnow
from app.errors import Conflict, NotFound, PaymentRequired
from app.extensions import db
from app.inventory import units
from app.notifications.services import notice
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
    return lock_rows(session, select(Reservation).where(Reservation.id == reservation_id).with_for_update()
                     .execution_options(populate_existing=True)).scalar()


def record_intent(reservation_id: str, actor_id: int, *, admin: bool, reason: str | None) -> Refund:
    """Step 1: a `pending` refund row (or the existing refund: a repeat gets the same one).
    Raises 404 (not yours / unknown) and 409 (not confirmed, deadline passed)."""
    session = db.session
    res = _lock(session, reservation_id)
    if res is None or (not admin and res.user_id != actor_id):
        raise NotFound("Reservation not found", reason="reservation_not_found")
    existing = session.scalar(select(Refund).where(Refund.reservation_id == res.id))
    if existing is not None:  # a repeat (or a concurrent twin that committed first): the same refund
        return existing
    event = session.get(Event, res.event_id)
    refused = _refusal(res, event, admin=admin)
    if refused is not None:
        raise refused
    fee = 0 if admin else owner_fee(res.amount_cents, event.refund_fee_percent)
    refund = Refund(reservation_id=res.id, user_id=res.user_id, event_id=res.event_id, status=PENDING,
                    amount_cents=res.amount_cents - fee, fee_cents=fee, currency=res.currency,
                    requested_by=actor_id, reason=reason or ("admin" if admin else "requested_by_owner"))
    session.add(refund)
    session.flush()
    return refund


def _refusal(res: Reservation, event: Event, *, admin: bool) -> Conflict | None:
    """Why this ticket cannot be refunded now (not confirmed; for its owner, the deadline passed)."""
    if res.status != CONFIRMED:
        return Conflict(f"Only a confirmed ticket can be refunded; this one is {res.status}", reason="not_refundable")
    if not admin and event.refund_deadline is not None and utcnow() > event.refund_deadline:
        return Conflict(f"Refunds for this event closed at {event.refund_deadline.isoformat()}",
                        reason="refund_deadline_passed")
    return None


def owner_fee(amount_cents: int, fee_percent: int) -> int:
    """The event's refund fee on an owner's refund, rounded half up (an admin's refund has none)."""
    return (amount_cents * fee_percent + 50) // 100


def quote(reservation_id: str, user_id: int) -> dict[str, Any] | None:
    """What the owner would get back by refunding now (the order page shows it before they ask),
    or None when they cannot: not theirs, not confirmed, refunded already, or past the deadline."""
    session = db.session
    res = session.get(Reservation, reservation_id)
    if res is None or res.user_id != user_id:
        return None
    if session.scalar(select(Refund.id).where(Refund.reservation_id == res.id)) is not None:
        return None
    event = session.get(Event, res.event_id)
    if _refusal(res, event, admin=False) is not None:
        return None
    fee = owner_fee(res.amount_cents, event.refund_fee_percent)
    return {"reservation_id": res.id, "amount_cents": res.amount_cents - fee, "fee_cents": fee,
            "fee_percent": event.refund_fee_percent, "deadline": event.refund_deadline, "currency": res.currency}


def ask_provider(refund: Refund, charge_id: str) -> PaymentResult:
    """Step 2, outside any unit of work: the provider's answer (the same for the same refund id)."""
    return get_provider(current_app.config["PAYMENT_PROVIDER"]).refund(
        charge_id=charge_id, amount_cents=refund.amount_cents, idempotency_key=refund.id)


def finish(refund_id: str, result: PaymentResult) -> Refund:
    """Step 3 (also the sweeper's): apply the provider's answer once."""
    session = db.session
    refund = session.get(Refund, refund_id)
    res = _lock(session, refund.reservation_id)
    session.refresh(refund, with_for_update=True)
    if refund.status != PENDING:  # finished by a twin or by the sweeper
        return refund
    channel = via()
    if not result.approved:
        refund.status, refund.decline_reason = DECLINED, result.decline_reason or "refund_declined"
        call_after_commit(session, lambda: REFUNDS.labels(outcome="declined", via=channel).inc())
        return refund
    units.release_sold(session, res.units())  # back to sale (the waitlist's offers first) after COMMIT
    res.status, res.reason = REFUNDED, refund.reason
    void_tickets(session, res.id)
    refund.status, refund.provider_ref = SUCCEEDED, result.reference
    record_event(session, "TicketRefunded", "reservation", res.id, {
        "reservation_id": res.id, "refund_id": refund.id, "user_id": res.user_id, "event_id": res.event_id,
        "section_id": res.section_id, "quantity": res.quantity, "seat_ids": res.seat_ids,
        "amount_cents": refund.amount_cents, "fee_cents": refund.fee_cents, "currency": refund.currency,
        "reason": refund.reason, "provider_ref": result.reference})
    event_id, user_id = res.event_id, res.user_id
    # the owner hears of it after COMMIT
    refunded_at = refund.created_at.timestamp()  # one notice per refund, however often this runs
    call_after_commit(session, lambda: _notify_owner(event_id, user_id, refunded_at))
    call_after_commit(session, lambda: REFUNDS.labels(outcome="succeeded", via=channel).inc())
    return refund


def _notify_owner(event_id: int, user_id: int, refunded_at: float) -> None:
    from app.tasking import send_task

    send_task("notifications.notify_users", [event_id, "refunded", [[user_id, refunded_at]]], queue="notifications")


def answer(refund: Refund) -> Refund:
    """The caller's answer: the refund, or the 402 of a declined one."""
    if refund.status == DECLINED:
        raise PaymentRequired("The payment provider declined the refund; the ticket stays confirmed",
                              reason=refund.decline_reason or "refund_declined")
    return refund


def refund_notice(n: Row, user: Row, event: Event) -> Message:
    """The "refunded" notice names the refund's amount and fee (registered as its message by
    create_app: notifications imports nothing of booking)."""
    refund = db.session.scalar(select(Refund).where(Refund.user_id == user.id, Refund.event_id == event.id,
                                                     Refund.status == SUCCEEDED)
                               .order_by(Refund.updated_at.desc()).limit(1))
    return notice(n, user, event, refund=refund)
