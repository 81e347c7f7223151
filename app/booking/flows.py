"""The booking domain's units of work that a single transaction cannot hold: each function here
opens its own ``transaction()`` blocks (app/db.py) around the rules of services.py and refunds.py.

- Payment and refund: one unit records the intent, the provider is called holding nothing, a
  second unit applies the answer. The crash window in between is closed by the sweepers below,
  which ask the provider what came of the call (the same idempotency key gives the same answer).
- Sweeps: one unit per batch, so a long sweep never holds its locks for long.
- Waitlist offers: Redis makes and expires offers; each announcement (an outbox row) is its own
  unit, and an offer is unmarked as fresh only once its announcement is committed and its notice
  queued, so a worker killed in between announces it on the next tick, once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.booking import refunds, services, waitlist
from app.booking.models import CONFIRMED, Payment, Refund, Reservation
from app.booking.payments import PaymentResult, get_provider
from app.catalogue.models import Event
from app.db import transaction, utcnow
from app.errors import AppError, Conflict, NotFound, PaymentRequired
from app.extensions import redis_store
from app.redis.keys import WAITLIST_REGISTRY_KEY
from app.tasking import send_task

log = logging.getLogger(__name__)


# --- confirm: record the attempt, charge, apply the answer ----------------------------------------

def confirm(reservation_id: str, user_id: int, payment_token: str) -> Reservation:
    with transaction():
        started = services.start_payment(reservation_id, user_id)
    if started is None:  # the hold's expiry was recorded just now
        raise Conflict("The hold has expired", reason="hold_expired")
    if isinstance(started, Reservation):  # confirmed before: the same answer
        return started
    provider = get_provider(current_app.config["PAYMENT_PROVIDER"])
    charge = {"amount_cents": started.amount_cents, "currency": started.currency, "token": payment_token,
              "idempotency_key": started.id}
    if provider.creates_intents:
        # the intent's id is recorded before it is confirmed: after a crash the sweeper (or a
        # retry) finds that intent, and no second one is ever made for this attempt
        intent = provider.create_intent(**charge)
        with transaction():
            services.record_intent(started.id, intent)
        result = provider.charge(**charge, intent=intent)
    else:
        result = provider.charge(**charge)
    return _apply_payment(started.id, result)


def complete_payment(payment_id: str, user_id: int) -> Reservation:
    """After the browser ran the card's 3-D Secure step: ask the provider what came of the intent
    and apply it (the webhook may have done so already: the same answer)."""
    with transaction():
        payment = services.get_payment(payment_id, user_id)
    if payment.status != services.PAYMENT_PENDING:
        with transaction():
            return services.payment_answer(payment, services.get_reservation(payment.reservation_id, user_id))
    provider = get_provider(current_app.config["PAYMENT_PROVIDER"])
    result = provider.lookup(payment.id, reference=payment.provider_ref) or PaymentResult(
        False, decline_reason="never_charged")
    return _apply_payment(payment.id, result)


def apply_provider_outcome(reference: str, result: PaymentResult) -> str:
    """A webhook's outcome of an intent (the provider is the truth for what arrives later than the
    confirm call): applied once to its attempt. A success for an attempt already settled
    otherwise (declined or voided) is refunded: nobody pays for a ticket they do not get."""
    with transaction():
        payment = services.payment_by_reference(reference)
    if payment is None:
        return "unknown_payment"
    if payment.status == services.PAYMENT_PENDING:
        try:
            _apply_payment(payment.id, result)
        except (Conflict, PaymentRequired):
            pass  # recorded: a decline, or a voided (refunded) charge
        return "applied"
    if result.approved and payment.status == services.PAYMENT_DECLINED:
        services.refund_voided(payment)
        return "refunded"
    return "already_settled"


def _apply_payment(payment_id: str, result: PaymentResult) -> Reservation:
    if result.pending:  # 3-D Secure or processing: the webhook or /complete settles it
        with transaction():
            payment = services.mark_pending_action(payment_id, result)
        raise services.PaymentPending(payment, result.client_secret)
    with transaction():
        payment, res = services.finish_payment(payment_id, result)
    if payment.status == services.PAYMENT_VOIDED:
        services.refund_voided(payment)  # after the commit: no lock is held during the call
    return services.payment_answer(payment, res)


def sweep_pending_payments(older_than_seconds: int = 60, limit: int = 200) -> int:
    """Finish payment attempts whose process died between recording and finishing them: the
    provider says what came of the charge (never seen: declined, nobody was charged)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with transaction() as session:
        ids = list(session.scalars(select(Payment.id).where(Payment.status == services.PAYMENT_PENDING,
                                                             Payment.updated_at <= cutoff).limit(limit)))
    provider = get_provider(current_app.config["PAYMENT_PROVIDER"])
    for payment_id in ids:
        with transaction() as session:
            payment = session.get(Payment, payment_id)
            reference, hold_over = payment.provider_ref, services.hold_is_over(session, payment)
        never = PaymentResult(False, decline_reason="never_charged")
        result = provider.lookup(payment_id, reference=reference) or never
        if result.pending and hold_over:  # the fan never finished 3-D Secure before the hold ended
            result = PaymentResult(False, reference=reference, decline_reason="authentication_abandoned")
        elif result.pending:
            continue  # still in the fan's hands (3-D Secure): the webhook or a later sweep settles it
        try:
            _apply_payment(payment_id, result)
        except (Conflict, PaymentRequired):
            pass  # a decline or a voided charge: recorded, nobody to answer
        log.info("payment finished by the sweeper", extra={"payment_id": payment_id})
    return len(ids)


# --- holds -----------------------------------------------------------------------------------------

def cancel(reservation_id: str, user_id: int) -> Reservation:
    with transaction():
        return services.cancel(reservation_id, user_id)


def sweep_expired_holds(batch: int = 500) -> int:
    """Release holds past their deadline, one unit of work per batch."""
    total = 0
    while True:
        with transaction() as session:
            count = services.expire_due_holds(session, batch)
        total += count
        if count < batch:
            return total


# --- refunds: record the intent, ask the provider, apply the answer -------------------------------

def request_refund(reservation_id: str, actor_id: int, *, admin: bool = False, reason: str | None = None) -> Refund:
    """Refund one confirmed ticket (idempotent: a second call returns the first refund).

    The owner: within the event's refund deadline, minus its fee. An admin: any ticket, in full.
    Raises 404 (not yours / unknown), 409 (not confirmed, deadline passed), 402 (declined)."""
    with transaction():
        refund = refunds.record_intent(reservation_id, actor_id, admin=admin, reason=reason)
    if refund.status != refunds.PENDING:
        return refunds.answer(refund)
    return refunds.answer(_finish_refund(refund))


def _finish_refund(refund: Refund) -> Refund:
    with transaction() as session:
        charge_id = session.get(Reservation, refund.reservation_id).payment_ref or ""
    result = refunds.ask_provider(refund, charge_id)
    with transaction():
        return refunds.finish(refund.id, result)


def sweep_pending_refunds(older_than_seconds: int = 30, limit: int = 200) -> int:
    """Finish refunds whose process died between recording the intent and finishing it."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with transaction() as session:
        pending = list(session.scalars(select(Refund).where(Refund.status == refunds.PENDING,
                                                            Refund.updated_at <= cutoff)
                                       .order_by(Refund.updated_at).limit(limit)))
    for refund in pending:
        _finish_refund(refund)
        log.info("refund finished by the sweeper", extra={"refund_id": refund.id})
    return len(pending)


def refund_event(event_id: int, actor_id: int, progress: Any = None) -> dict[str, int]:
    """Refund every confirmed ticket of an event (an admin's call, e.g. the event is cancelled).
    ``progress(done, total, counts)`` is called after each ticket. Re-running it is harmless."""
    with transaction() as session:
        if session.get(Event, event_id) is None:
            raise NotFound("Event not found", reason="event_not_found")
        ids = list(session.scalars(select(Reservation.id).where(Reservation.event_id == event_id,
                                                                 Reservation.status == CONFIRMED)
                                   .order_by(Reservation.id)))
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


# --- the waitlist's offers ---------------------------------------------------------------------------

def leave_waitlist(event_id: int, section_id: int, user_id: int) -> None:
    with transaction():
        declined = waitlist.leave(event_id, section_id, user_id)
    if declined:
        tick_section(event_id, section_id)  # the next fan need not wait for beat


def tick() -> dict[str, int]:
    """Expire offers, make new ones, announce them: every section with a waitlist (beat, 1 s)."""
    totals = {"made": 0, "expired": 0}
    for member in sorted(redis_store.client.smembers(WAITLIST_REGISTRY_KEY)):
        event_id, section_id = (int(x) for x in member.split(":"))
        try:
            result = tick_section(event_id, section_id)
        except AppError:
            redis_store.client.srem(WAITLIST_REGISTRY_KEY, member)  # the event or section is gone
            continue
        for k in totals:
            totals[k] += result[k]
    return totals


def tick_section(event_id: int, section_id: int) -> dict[str, int]:
    with transaction():
        expired = waitlist.expire_and_offer(event_id, section_id)
    for user_id, offer_id, quantity in expired:
        with transaction():
            waitlist.announce_expired(event_id, section_id, user_id, offer_id, quantity)
    return {"made": announce_fresh(event_id, section_id), "expired": len(expired)}


def announce_fresh(event_id: int, section_id: int) -> int:
    """Announce every offer not yet announced: the OfferMade event and the fan's notifications,
    each at most once per offer; unmarked only after both are committed or queued."""
    fresh = waitlist.fresh_offers(event_id, section_id)
    for offer_id, user_id, quantity, expires in fresh:
        with transaction():
            waitlist.announce_made(event_id, section_id, offer_id, user_id, quantity, expires)
    if fresh:
        # one message per device per offer: the notification's dedupe key holds the offer's end
        send_task("notifications.notify_users", [event_id, "offer", [[u, e] for _, u, _, e in fresh]],
                  queue="notifications")
        waitlist.mark_announced(event_id, section_id, [offer_id for offer_id, *_ in fresh])
    return len(fresh)


__all__ = ["announce_fresh", "cancel", "confirm", "leave_waitlist", "refund_event", "request_refund",
           "sweep_expired_holds", "sweep_pending_payments", "sweep_pending_refunds", "tick", "tick_section"]
