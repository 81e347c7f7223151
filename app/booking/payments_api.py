"""The payment provider's side of checkout: finishing a card's 3-D Secure step, the provider's
webhooks, and what the browser needs to load the provider's script."""

from __future__ import annotations

from typing import Any

import stripe
from flask import current_app, request
from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import current_user_id
from app.booking import flows, services
from app.booking.models import ProviderEvent
from app.booking.schemas import ReservationSchema
from app.db import insert_ignore, transaction, utcnow
from app.errors import AppError
from app.jsonio import json_response

blp = Blueprint("payments", __name__, url_prefix="/api/payments", description="Payments: 3-D Secure and webhooks")

# the events that settle an attempt later than its confirm call (docs/payments.md)
HANDLED = {"payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"}


@blp.route("/config")
class PaymentConfig(MethodView):
    @blp.response(200)
    def get(self) -> dict[str, Any]:
        """Which provider checkout uses, and for Stripe its publishable key and Stripe.js address."""
        cfg = current_app.config
        return {"provider": cfg["PAYMENT_PROVIDER"], "publishable_key": cfg.get("STRIPE_PUBLISHABLE_KEY") or None,
                "js_url": cfg.get("STRIPE_JS_URL") or None}


@blp.route("/<payment_id>/complete")
class CompletePayment(MethodView):
    @jwt_required()
    @blp.response(200, ReservationSchema)
    @blp.alt_response(202, description="Still waiting for the card's 3-D Secure step")
    def post(self, payment_id: str) -> Any:
        """After the card's 3-D Secure step in the browser: the attempt's outcome, applied once
        (200 confirmed, 402 declined with the reason, 202 still waiting)."""
        try:
            return services.view(flows.complete_payment(payment_id, current_user_id()))
        except services.PaymentPending as pending:
            return json_response(pending.body(), 202)


@blp.route("/stripe/webhook")
class StripeWebhook(MethodView):
    @blp.response(200)
    def post(self) -> dict[str, Any]:
        """Stripe's webhooks: the signature is verified with the endpoint secret, each event id is
        applied once, and a PaymentIntent's late outcome settles its attempt."""
        secret = current_app.config.get("STRIPE_WEBHOOK_SECRET") or ""
        if not secret:
            raise AppError("Stripe webhooks are not configured", status_code=404, reason="webhooks_not_configured")
        try:
            event = stripe.Webhook.construct_event(request.get_data(), request.headers.get("Stripe-Signature", ""),
                                                   secret)
        except (ValueError, stripe.SignatureVerificationError) as exc:
            raise AppError("The webhook's signature does not verify", status_code=400,
                           reason="bad_signature") from exc
        with transaction() as session:
            if session.get(ProviderEvent, event.id) is not None:
                return {"received": True, "duplicate": True}
        outcome = "ignored"
        if event.type in HANDLED:
            outcome = _apply(event)
        with transaction() as session:
            insert_ignore(session, ProviderEvent.__table__, [{"id": event.id, "type": event.type[:64],
                                                              "outcome": outcome, "received_at": utcnow()}])
        return {"received": True, "outcome": outcome}


def _apply(event: Any) -> str:
    from app.booking.stripe_provider import intent_result

    obj = event.data.object
    if event.type.startswith("payment_intent."):
        return flows.apply_provider_outcome(obj.id, intent_result(obj))
    if event.type == "charge.refunded":  # refunds settle in their own flow; recorded for the trail
        return "refund_noted" if obj.get("payment_intent") else "ignored"
    return "ignored"
