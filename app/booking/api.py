from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_jwt_extended import get_jwt, jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import current_user_id, jwt_required_blocklist_deferred, revoked_key
from app.booking import flows, intake, services
from app.booking.schemas import (
    ConfirmSchema,
    ReservationPageSchema,
    ReservationSchema,
    ReserveSchema,
    parse_reserve,
)
from app.db import transaction
from app.errors import Forbidden
from app.jsonio import json_response
from app.observability.context import set_context
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("tickets", __name__, url_prefix="/api/tickets", description="Reservations")


_RESERVE_DOC = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": ReserveSchema}}},
    "parameters": [
        {"in": "header", "name": "Idempotency-Key", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
        {"in": "header", "name": "X-Admission-Token", "required": False, "schema": {"type": "string"},
         "description": "The waiting room's admission pass"},
        {"in": "header", "name": "X-Offer-Token", "required": False, "schema": {"type": "string"},
         "description": "A waitlist offer's pass (GET .../waitlist), instead of an admission pass"},
    ],
}


REFUSAL = "tickets.reserve.refusal"  # environ key: a refusal the lean path met, for the view to raise


def refusal_of(environ: dict[str, Any]) -> BaseException | None:
    """The refusal the lean path (app/booking/fast_reserve.py) met for this request, or None."""
    return environ.pop(REFUSAL, None)


@blp.route("/reserve")
class Reserve(MethodView):
    @jwt_required_blocklist_deferred
    @blp.doc(**_RESERVE_DOC)
    @blp.response(202, ReservationSchema)
    def post(self) -> Response:
        """Request seats: 202 with a pending reservation; the hold writer holds or rejects it.

        Needs the waiting room's pass in X-Admission-Token and an Idempotency-Key. The same key
        and body answer the same reservation; the same key with another body is a 422.
        """
        refusal = refusal_of(request.environ)
        if refusal is not None:  # met by the lean path (app/booking/fast_reserve.py): answered here
            raise refusal
        view = accept_reserve(get_jwt(), request.get_json(silent=True), request.headers.get("Idempotency-Key"),
                              request.headers.get("X-Admission-Token"), request.headers.get("X-Offer-Token"))
        return json_response(view, 202)


def accept_reserve(claims: Mapping[str, Any], body: Any, idempotency_key: str | None, admission_token: str | None,
                   offer_token: str | None = None) -> dict[str, Any]:
    """The reserve endpoint's work once the access token is verified (``claims``): the pending
    reservation's view, or the refusal raised. The view and the lean WSGI path both call it."""
    cfg = current_app.config
    if cfg["REQUIRE_VERIFIED_EMAIL"] and not claims.get("ev"):
        # from the token: no database round trip on the hot path (POST /api/auth/verify-email
        # answers a token that carries it)
        raise Forbidden("Confirm your e-mail before buying (POST /api/auth/verify-email)", reason="email_unverified")
    body, key = parse_reserve(body, idempotency_key)
    user_id = int(claims[cfg["JWT_IDENTITY_CLAIM"]])
    set_context(user_id=user_id)
    req = intake.ReserveRequest(
        user_id=user_id, event_id=body["event_id"], section_id=body["section_id"], quantity=body.get("quantity"),
        seat_ids=body.get("seat_ids"), idempotency_key=key, admission_token=admission_token,
        revoked_key=revoked_key(claims), offer_token=offer_token)
    if req.offer_token:  # claiming an offer records OfferClaimed in the outbox: a unit of work
        with transaction():
            view, _created = services.request_reservation(req)
    else:  # the hot path: one Redis call, nothing written to MySQL here
        view, _created = services.request_reservation(req)
    return view


@blp.route("/status")
class MyReservations(MethodView):
    @jwt_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, ReservationPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """The caller's reservations, newest first (paginated); just-accepted ones are `pending`."""
        items, total = services.list_reservations(current_user_id(), args["page"], args["page_size"])
        return page_body(items, total, args)


@blp.route("/status/<reservation_id>")
class ReservationStatus(MethodView):
    @jwt_required()
    @blp.response(200, ReservationSchema)
    def get(self, reservation_id: str) -> Response:
        """One reservation of the caller (another user's is a 404); `pending` from the 202 on."""
        return json_response(services.reservation_view(reservation_id, current_user_id()), 200)


@blp.route("/<reservation_id>/confirm")
class Confirm(MethodView):
    @jwt_required()
    @blp.arguments(ConfirmSchema)
    @blp.response(200, ReservationSchema)
    def post(self, body: dict, reservation_id: str) -> dict[str, Any]:
        """Pay for a hold. Declined payment 402 (with the decline reason); expired or cancelled hold
        409; twice = same result. With Stripe, `payment_token` is the card's PaymentMethod id from
        Stripe.js, and a card that asks for 3-D Secure answers 202 `requires_action` with the
        client secret for Stripe.js, then `POST /api/payments/{payment_id}/complete`."""
        try:
            return services.view(flows.confirm(reservation_id, current_user_id(), body["payment_token"]))
        except services.PaymentPending as pending:
            return json_response(pending.body(), 202)


@blp.route("/<reservation_id>/cancel")
class Cancel(MethodView):
    @jwt_required()
    @blp.response(200, ReservationSchema)
    def post(self, reservation_id: str) -> dict[str, Any]:
        """Cancel a pending or held reservation; its seats return at once."""
        return services.view(flows.cancel(reservation_id, current_user_id()))
