from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.auth.jwt_setup import admin_required
from app.catalogue import services
from app.catalogue.models import Event, Section
from app.catalogue.schemas import (
    EventCreateSchema,
    EventDetailSchema,
    EventPageSchema,
    EventSchema,
    EventUpdateSchema,
    SeatMapSchema,
    SectionCapacitySchema,
    SectionCreateSchema,
    SectionSchema,
)
from app.db import transaction
from app.errors import Unprocessable
from app.inventory import gate
from app.inventory.capacity import set_capacity
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("events", __name__, url_prefix="/api/events", description="Events, sections and seat maps")


def _section_view(section: Section, available: int) -> dict[str, Any]:
    return {**{c: getattr(section, c) for c in ("id", "event_id", "name", "kind", "price_cents", "currency",
                                                  "capacity")}, "available": available}


@blp.route("")
class Events(MethodView):
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, EventPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """List events, soonest sale first (paginated)."""
        return page_body(*services.list_events(args["page"], args["page_size"]), args)

    @admin_required
    @blp.arguments(EventCreateSchema)
    @blp.response(201, EventSchema)
    def post(self, data: dict) -> Event:
        """Create an event (admin)."""
        with transaction():
            return services.create_event(data)


@blp.route("/<int:event_id>")
class EventDetail(MethodView):
    @blp.response(200, EventDetailSchema)
    def get(self, event_id: int) -> dict[str, Any]:
        """An event with its sections and live availability."""
        event = services.get_event(event_id)
        # the figures every page shows (gate.figures): a unit kept for the waitlist or about to be
        # taken by an accepted request is not offered as free
        shown = gate.figures(list(event.sections))
        view = {column.name: getattr(event, column.name) for column in event.__table__.columns}
        view["sections"] = [_section_view(s, shown[s.id]["available"]) for s in event.sections]
        return view


    @admin_required
    @blp.arguments(EventUpdateSchema)
    @blp.response(200, EventSchema)
    def patch(self, data: dict, event_id: int) -> Event:
        """Edit an event: name, venue, start, refund policy, offer window (admin). The waiting
        room's settings and the sale window: PATCH /api/queue/{id}."""
        if not data:
            raise Unprocessable("Nothing to change", errors={"_schema": ["give at least one field"]})
        from app.queue.services import sync_meta

        with transaction():
            event = services.update_event(event_id, data)
        sync_meta(event)  # the waiting room's copy of the event follows MySQL, once committed
        return event


@blp.route("/<int:event_id>/sections")
class Sections(MethodView):
    @admin_required
    @blp.arguments(SectionCreateSchema)
    @blp.response(201, SectionSchema)
    def post(self, data: dict, event_id: int) -> dict[str, Any]:
        """Add a general admission section {capacity} or a seated one {rows, seats_per_row} (admin)."""
        with transaction():
            section = services.create_section(event_id, data)
        return _section_view(section, section.capacity)


@blp.route("/<int:event_id>/sections/<int:section_id>")
class SectionCapacity(MethodView):
    @admin_required
    @blp.arguments(SectionCapacitySchema)
    @blp.response(200, SectionSchema)
    def patch(self, data: dict, event_id: int, section_id: int) -> dict[str, Any]:
        """Change a general admission section's capacity (admin); added tickets go to its waitlist first."""
        with transaction():
            section = set_capacity(event_id, section_id, data["capacity"])
        return _section_view(section, gate.figures([section])[section.id]["available"])


@blp.route("/<int:event_id>/sections/<int:section_id>/seats")
class Seats(MethodView):
    @blp.response(200, SeatMapSchema)
    def get(self, event_id: int, section_id: int) -> dict[str, Any]:
        """The seat map of a seated section with each seat's state."""
        section, seats = services.seat_map(event_id, section_id)
        available = sum(1 for s in seats if s["state"] == "available")
        return {"section": _section_view(section, available), "seats": seats}
