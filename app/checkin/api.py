"""The door: scanning tickets (an event's staff) and granting the staff role (admins)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import admin_required, current_user_id
from app.checkin import services
from app.checkin.schemas import CheckinStatsSchema, GrantStaffSchema, ScanResultSchema, ScanSchema, StaffSchema
from app.db import transaction

blp = Blueprint("checkin", __name__, url_prefix="/api/events", description="Check-in at the door")


@blp.route("/<int:event_id>/checkin")
class Checkin(MethodView):
    @jwt_required()
    @blp.arguments(ScanSchema)
    @blp.response(200, ScanResultSchema)
    def post(self, body: dict, event_id: int) -> dict[str, Any]:
        """Scan a ticket: `admitted` once; then `already_used` (with when and at which gate),
        `refunded`, `wrong_event` or `invalid`. Every scan is recorded. The event's staff or an admin."""
        user_id = current_user_id()
        with transaction():
            services.require_staff(event_id, user_id)
            return services.scan(event_id, body["code"], body["gate"], user_id)

    @jwt_required()
    @blp.response(200, CheckinStatsSchema)
    def get(self, event_id: int) -> dict[str, Any]:
        """Checked in / sold, in all and per section (the event's staff or an admin)."""
        services.require_staff(event_id, current_user_id())
        return services.stats(event_id)


@blp.route("/<int:event_id>/staff")
class Staff(MethodView):
    @admin_required
    @blp.response(200, StaffSchema(many=True))
    def get(self, event_id: int) -> list[dict[str, Any]]:
        """Who may scan this event's tickets."""
        return services.staff_of(event_id)

    @admin_required
    @blp.arguments(GrantStaffSchema)
    @blp.response(201, StaffSchema)
    def post(self, body: dict, event_id: int) -> dict[str, Any]:
        """Grant the staff role of this event to an account, by e-mail (granting twice is harmless)."""
        with transaction():
            return services.grant(event_id, body["email"], current_user_id())


@blp.route("/<int:event_id>/staff/<int:user_id>")
class StaffMember(MethodView):
    @admin_required
    @blp.response(204)
    def delete(self, event_id: int, user_id: int) -> None:
        """Take the staff role of this event back."""
        with transaction():
            services.revoke(event_id, user_id)
