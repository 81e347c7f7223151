"""Stripe, through the official SDK: one PaymentIntent per payment attempt.

- ``create_intent``: the intent, for the card's PaymentMethod (created in the browser by Stripe.js),
  with the attempt id as the idempotency key and in ``metadata.payment_id``. The confirm flow
  records its id on the attempt before confirming: Stripe replays an idempotency key, but not
  every test double does (localstripe ignores it), and after a crash the recorded id is what
  ``lookup`` retrieves, so a retry never makes a second intent.
- ``charge``: confirms it. ``succeeded`` is approved; ``requires_action`` (3-D Secure) is pending,
  with the client secret the browser hands to Stripe.js; a failed one is declined with Stripe's
  decline code.
- ``refund``: a Refund of the intent with the refund id as the idempotency key and in its
  metadata; an earlier refund with that id is found first, for the same reason.

Webhooks (``payment_intent.succeeded``, ``payment_intent.payment_failed``, ``charge.refunded``)
settle what arrives later than the confirm call: app/booking/payments_api.py.
"""

from __future__ import annotations

from typing import Any

import stripe
from flask import current_app

from app.booking.payments import PaymentResult


class StripeProvider:
    creates_intents = True

    def __init__(self) -> None:
        cfg = current_app.config
        base = cfg.get("STRIPE_API_BASE") or None
        self.client = stripe.StripeClient(cfg["STRIPE_SECRET_KEY"], max_network_retries=2,
                                          **({"base_addresses": {"api": base}} if base else {}))

    def create_intent(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        intent = self.client.v1.payment_intents.create(
            params={"amount": amount_cents, "currency": currency.lower(), "payment_method": token,
                    "payment_method_types": ["card"], "metadata": {"payment_id": idempotency_key}},
            options={"idempotency_key": f"intent:{idempotency_key}"})
        return intent.id

    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str,
               intent: str | None = None) -> PaymentResult:
        if intent is None:
            intent = self.create_intent(amount_cents=amount_cents, currency=currency, token=token,
                                        idempotency_key=idempotency_key)
        try:
            current = self.client.v1.payment_intents.retrieve(intent)
            if current.status == "requires_confirmation":
                current = self.client.v1.payment_intents.confirm(
                    intent, options={"idempotency_key": f"confirm:{idempotency_key}"})
        except stripe.CardError as exc:
            return PaymentResult(False, reference=intent, decline_reason=_decline_code(exc.error))
        return intent_result(current)

    def lookup(self, idempotency_key: str, reference: str | None = None) -> PaymentResult | None:
        if not reference:
            return None  # no intent was recorded: Stripe never charged this attempt
        try:
            return intent_result(self.client.v1.payment_intents.retrieve(reference))
        except stripe.InvalidRequestError:
            return None

    def refund(self, *, charge_id: str, amount_cents: int, idempotency_key: str) -> PaymentResult:
        for earlier in self.client.v1.refunds.list(params={"payment_intent": charge_id, "limit": 100}).data:
            if (earlier.metadata or {}).get("refund_id") == idempotency_key:
                return _refund_result(earlier)
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": charge_id, "amount": amount_cents,
                        "metadata": {"refund_id": idempotency_key}},
                options={"idempotency_key": f"refund:{idempotency_key}"})
        except stripe.InvalidRequestError as exc:
            return PaymentResult(False, decline_reason=(exc.code or "refund_refused")[:64])
        return _refund_result(refund)


def intent_result(intent: Any) -> PaymentResult:
    """A PaymentIntent's state as our answer."""
    if intent.status == "succeeded":
        return PaymentResult(True, reference=intent.id)
    if intent.status in ("requires_action", "processing"):
        return PaymentResult(False, reference=intent.id, pending=True,
                             client_secret=intent.client_secret if intent.status == "requires_action" else None)
    error = getattr(intent, "last_payment_error", None)
    return PaymentResult(False, reference=intent.id, decline_reason=_decline_code(error) if error else
                         ("payment_canceled" if intent.status == "canceled" else "payment_declined"))


def _decline_code(error: Any) -> str:
    if error is None:
        return "card_declined"
    get = error.get if isinstance(error, dict) else lambda name, default=None: getattr(error, name, default)
    return str(get("decline_code", None) or get("code", None) or "card_declined")[:64]


def _refund_result(refund: Any) -> PaymentResult:
    if refund.status in ("succeeded", "pending"):
        return PaymentResult(True, reference=refund.id)
    return PaymentResult(False, reference=refund.id, decline_reason=f"refund_{refund.status}"[:64])
