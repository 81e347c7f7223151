from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import current_user_id
from app.booking import services
from app.booking.schemas import (
    ConfirmSchema,
    ReservationPageSchema,
    ReservationSchema,
    ReserveHeadersSchema,
    ReserveSchema,
)
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("tickets", __name__, url_prefix="/api/tickets", description="Reservations")


@blp.route("/reserve")
class Reserve(MethodView):
    @jwt_required()
    @blp.arguments(ReserveHeadersSchema, location="headers")
    @blp.arguments(ReserveSchema)
    @blp.response(202, ReservationSchema)
    def post(self, headers: dict, body: dict) -> dict[str, Any]:
        """Request seats: 202 with a pending reservation; a `booking` task holds them.

        Needs the waiting room's pass in X-Admission-Token and an Idempotency-Key.
        """
        res, _created = services.request_reservation(services.ReserveRequest(
            user_id=current_user_id(), event_id=body["event_id"], section_id=body["section_id"],
            quantity=body.get("quantity"), seat_ids=body.get("seat_ids"),
            idempotency_key=headers["idempotency_key"], admission_token=headers.get("admission_token"),
        ))
        return services.view(res)


@blp.route("/status")
class MyReservations(MethodView):
    @jwt_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, ReservationPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """The caller's reservations, newest first (paginated)."""
        items, total = services.list_reservations(current_user_id(), args["page"], args["page_size"])
        return page_body([services.view(r) for r in items], total, args)


@blp.route("/status/<reservation_id>")
class ReservationStatus(MethodView):
    @jwt_required()
    @blp.response(200, ReservationSchema)
    def get(self, reservation_id: str) -> dict[str, Any]:
        """One reservation of the caller (another user's is a 404)."""
        return services.view(services.get_reservation(reservation_id, current_user_id()))


@blp.route("/<reservation_id>/confirm")
class Confirm(MethodView):
    @jwt_required()
    @blp.arguments(ConfirmSchema)
    @blp.response(200, ReservationSchema)
    def post(self, body: dict, reservation_id: str) -> dict[str, Any]:
        """Pay for a hold. Declined payment 402; expired or cancelled hold 409; twice = same result."""
        return services.view(services.confirm(reservation_id, current_user_id(), body["payment_token"]))


@blp.route("/<reservation_id>/cancel")
class Cancel(MethodView):
    @jwt_required()
    @blp.response(200, ReservationSchema)
    def post(self, reservation_id: str) -> dict[str, Any]:
        """Cancel a pending or held reservation; its seats return at once."""
        return services.view(services.cancel(reservation_id, current_user_id()))
