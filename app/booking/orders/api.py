"""A fan's orders and tickets (support finds any order by its number), and an event's orders and
attendees for its organisers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import admin_required, current_user_id
from app.auth.services import is_admin_now
from app.booking.orders import services
from app.booking.orders.schemas import EventOrderPageSchema, EventOrdersArgsSchema, OrderPageSchema, OrderSchema
from app.catalogue.services import get_event
from app.extensions import db
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("orders", __name__, url_prefix="/api/orders", description="Orders and tickets")
EXPORT_BATCH = 1000  # tickets per read of the attendee export
event_blp = Blueprint("event_orders", __name__, url_prefix="/api/events", description="An event's orders")


@blp.route("")
class MyOrders(MethodView):
    @jwt_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, OrderPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """The caller's orders, newest first, each with its lines, refund and tickets."""
        items, total = services.list_orders(current_user_id(), args["page"], args["page_size"])
        return page_body(items, total, args)


@blp.route("/<number>")
class OneOrder(MethodView):
    @jwt_required()
    @blp.response(200, OrderSchema)
    def get(self, number: str) -> dict[str, Any]:
        """One order by its number (dashes and case do not matter): the buyer's, or any for an admin."""
        user_id = current_user_id()
        return services.get_order(number, user_id, admin=is_admin_now(user_id))


def spreadsheet_safe(cell: object) -> object:
    """A fan's name like `=HYPERLINK(...)` would be a formula when the organiser opens the export
    in a spreadsheet (CSV injection, OWASP): such a cell starts with a quote instead."""
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


@event_blp.route("/<int:event_id>/orders")
class EventOrders(MethodView):
    @admin_required
    @event_blp.arguments(EventOrdersArgsSchema, location="query")
    @event_blp.response(200, EventOrderPageSchema)
    def get(self, args: dict, event_id: int) -> dict[str, Any]:
        """The event's orders, newest first, with their buyers; `q` finds one by its number or
        by the buyer's e-mail (the start is enough)."""
        get_event(event_id)
        items, total = services.event_orders(event_id, args["q"], args["page"], args["page_size"])
        return page_body(items, total, args)


@event_blp.route("/<int:event_id>/attendees.csv")
class Attendees(MethodView):
    @admin_required
    @event_blp.response(200, content_type="text/csv")
    def get(self, event_id: int) -> Response:
        """Every ticket with its holder (name, e-mail, order, section, seat, checked in), as CSV,
        streamed in batches so a large event never sits in memory."""
        event = get_event(event_id)

        def lines() -> Iterator[str]:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(services.ATTENDEE_COLUMNS)
            after = ""
            while True:
                batch = services.attendee_batch(event_id, after, limit=EXPORT_BATCH)
                db.session.rollback()  # each batch its own read: no snapshot held open for the whole export
                writer.writerows([[spreadsheet_safe(cell) for cell in row] for row in batch])
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if len(batch) < EXPORT_BATCH:
                    return
                after = batch[-1][5]

        return Response(stream_with_context(lines()), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="attendees-event-{event.id}.csv"',
            "Cache-Control": "no-store"})
