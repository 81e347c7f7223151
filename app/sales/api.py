"""A sale as its organiser runs it: the events, their sections and what is left of them (the
catalogue with inventory's figures), and a live sale's controls and figures (the waiting room's
settings, pause, close and the dashboard's stats, which span queue, inventory and booking).

The fan's side of the waiting room is app/queue/api.py; these admin routes share its URL prefix.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import admin_required, current_user_id
from app.booking.intake import catalogue as intake_catalogue
from app.catalogue import services as catalogue
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
from app.jsonio import json_response
from app.pagination import PageArgsSchema, page_body
from app.queue import draws, lanes
from app.queue import services as queue_services
from app.queue.schemas import (
    CodeBatchCreateSchema,
    CodeBatchSchema,
    CodeListArgsSchema,
    CodeListSchema,
    DrawEntrantsArgsSchema,
    DrawEntrantsSchema,
    LaneCreateSchema,
    LaneSchema,
    LaneUpdateSchema,
    QueueSettingsSchema,
    QueueStatsSchema,
    SaleSummarySchema,
)
from app.queue.services import sync_meta
from app.sales import lifecycle, lottery, lottery_flows
from app.sales import services as sale_services
from app.sales.schemas import LotteryCreateSchema, LotteryEntrySchema, LotterySchema, PromoteSchema

blp = Blueprint("events", __name__, url_prefix="/api/events", description="Events, sections and seat maps")
sale_blp = Blueprint("sales", __name__, url_prefix="/api/queue", description="Waiting room: an organiser's controls")


def _section_view(section: Section, available: int) -> dict[str, Any]:
    return {**{c: getattr(section, c) for c in ("id", "event_id", "name", "kind", "price_cents", "currency",
                                                  "capacity")}, "available": available}


@blp.route("")
class Events(MethodView):
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, EventPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """List events, soonest sale first (paginated)."""
        return page_body(*catalogue.list_events(args["page"], args["page_size"]), args)

    @admin_required
    @blp.arguments(EventCreateSchema)
    @blp.response(201, EventSchema)
    def post(self, data: dict) -> Event:
        """Create an event (admin). Its pre-queue's draw is committed at once: the SHA-256 of a
        secret seed, public (`GET /api/queue/{id}/draw`) long before the sale opens."""
        with transaction():
            event = catalogue.create_event(data)
            draws.make_commitment(event.id)
            return event


@blp.route("/<int:event_id>")
class EventDetail(MethodView):
    @blp.response(200, EventDetailSchema)
    def get(self, event_id: int) -> dict[str, Any]:
        """An event with its sections and live availability."""
        event = catalogue.get_event(event_id)
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
        with transaction():
            event = catalogue.update_event(event_id, data)
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
            section = catalogue.create_section(event_id, data)
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


@blp.route("/<int:event_id>/lanes")
class Lanes(MethodView):
    @admin_required
    @blp.response(200, LaneSchema(many=True))
    def get(self, event_id: int) -> list[dict[str, Any]]:
        """The sale's priority lanes with their codes, redemptions, waiting and admitted (admin)."""
        return lanes.lane_views(event_id)

    @admin_required
    @blp.arguments(LaneCreateSchema)
    @blp.response(201, LaneSchema)
    def post(self, data: dict, event_id: int) -> dict[str, Any]:
        """Add a priority lane (admin): its share of the admissions, an earlier opening (presale),
        and sections only its fans may buy until a release time (VIP). Fans enter it with one of
        its access codes (POST /api/events/{id}/codes)."""
        with transaction():
            lane = lanes.create_lane(event_id, data)
            event = catalogue.get_event(event_id)
        sync_meta(event)  # the waiting room's copy follows MySQL, once committed
        return next(view for view in lanes.lane_views(event_id) if view["id"] == lane.id)


@blp.route("/<int:event_id>/lanes/<string:name>")
class LaneDetail(MethodView):
    @admin_required
    @blp.arguments(LaneUpdateSchema)
    @blp.response(200, LaneSchema)
    def patch(self, data: dict, event_id: int, name: str) -> dict[str, Any]:
        """Change a lane's share, opening (open the presale now) or its sections' release time
        (release the VIP sections now) (admin). Each API process reads a section's release from
        its catalogue cache, so a release reaches every process within 5 s (CATALOGUE_TTL_SECONDS)."""
        if not data:
            raise Unprocessable("Nothing to change", errors={"_schema": ["give at least one field"]})
        with transaction():
            lane = lanes.update_lane(event_id, name, data)
            event = catalogue.get_event(event_id)
        sync_meta(event)
        intake_catalogue.clear()  # this process sees the release at once
        return next(view for view in lanes.lane_views(event_id) if view["id"] == lane.id)


@blp.route("/<int:event_id>/codes")
class AccessCodes(MethodView):
    @admin_required
    @blp.arguments(CodeListArgsSchema, location="query")
    @blp.response(200, CodeListSchema)
    def get(self, args: dict, event_id: int) -> dict[str, Any]:
        """The sale's access codes (never the plain codes) and their redemptions (admin), by pages
        of ids: `next` is the following page's URL."""
        codes = lanes.code_views(event_id, args["after"], args["limit"])
        more = len(codes) == args["limit"]
        return {"codes": codes,
                "next": f"/api/events/{event_id}/codes?after={codes[-1]['id']}&limit={args['limit']}" if more else None}

    @admin_required
    @blp.arguments(CodeBatchCreateSchema)
    @blp.response(201, CodeBatchSchema)
    def post(self, data: dict, event_id: int) -> dict[str, Any]:
        """Make a batch of access codes for a lane (admin): `count` codes, or one per e-mail in
        `emails` (each redeemable by that account only), each good for `uses` joins, within
        `valid_from`..`valid_until`, with an optional `ticket_limit`. The plain codes are in this
        answer only: only their SHA-256 is kept."""
        with transaction():
            lane, made = lanes.create_codes(event_id, data)
        lanes.sync_codes(event_id, [row for row, _ in made])  # the JOIN script's copy, once committed
        return {"batch": made[0][0].batch, "lane": lane.name,
                "codes": [{"id": row.id, "code": plain, "email": row.email} for row, plain in made]}


@blp.route("/<int:event_id>/lottery")
class Lottery(MethodView):
    @blp.response(200, LotterySchema)
    def get(self, event_id: int) -> Response:
        """The sale's registration lottery: before the draw its commitment (SHA-256 of a secret
        seed); after it the seed and the ordered pseudonymous entrants, checked by
        `python -m app.queue.verify_draw URL --lottery` (the pre-queue draw's algorithm)."""
        body = lottery.document(event_id)
        return json_response(body, 200, headers={"Cache-Control": "public, max-age=10"})

    @admin_required
    @blp.arguments(LotteryCreateSchema)
    @blp.response(201, LotterySchema)
    def post(self, data: dict, event_id: int) -> dict[str, Any]:
        """Open a registration lottery for a lane (admin): `winners` get a single-use code of the
        lane, bound to their e-mail, when registration closes at `closes_at`; losers get a standby
        place (`waitlist`) or a "not this time" notice (`notice`)."""
        with transaction():
            lottery.create_lottery(event_id, data)
        return lottery.document(event_id)


@blp.route("/<int:event_id>/lottery/entries")
class LotteryEntries(MethodView):
    @jwt_required()
    @blp.response(201, LotteryEntrySchema)
    def post(self, event_id: int) -> Response:
        """Enter the lottery (a verified e-mail is needed: 403 `email_unverified`); one entry per
        account (200 with the same entry again). 409 `lottery_closed` after the deadline."""
        with transaction():
            _entry, created = lottery.register(event_id, current_user_id())
        return json_response(lottery.my_entry(event_id, current_user_id()), 201 if created else 200)


@blp.route("/<int:event_id>/lottery/me")
class MyLotteryEntry(MethodView):
    @jwt_required()
    @blp.response(200, LotteryEntrySchema)
    def get(self, event_id: int) -> Response:
        """The caller's entry: registered, then won (with the code), standby (with the place) or lost."""
        return json_response(lottery.my_entry(event_id, current_user_id()), 200, headers={"Cache-Control": "private"})


@blp.route("/<int:event_id>/lottery/entrants")
class LotteryEntrants(MethodView):
    @blp.arguments(DrawEntrantsArgsSchema, location="query")
    @blp.response(200, DrawEntrantsSchema)
    def get(self, args: dict, event_id: int) -> Response:
        """The drawn order, from place `after + 1` (`next`: the following page); 409
        `draw_not_published` before the draw."""
        page = lottery.entrants(event_id, args["after"], args["limit"])
        return json_response(page.body(event_id, args["limit"], lottery.ENTRANTS_PATH), 200,
                             headers={"Cache-Control": "public, max-age=3600"})


@blp.route("/<int:event_id>/lottery/draw")
class LotteryDrawNow(MethodView):
    @admin_required
    @blp.response(200, LotterySchema)
    def post(self, event_id: int) -> dict[str, Any]:
        """Close registration now and draw (admin)."""
        with transaction():
            lottery.close_now(event_id)
        lottery_flows.draw_due()
        return lottery.document(event_id)


@blp.route("/<int:event_id>/lottery/promote")
class LotteryPromote(MethodView):
    @admin_required
    @blp.arguments(PromoteSchema)
    @blp.response(200, LotterySchema)
    def post(self, data: dict, event_id: int) -> dict[str, Any]:
        """Give the next `count` fans of the standby list, in draw order, a code and its notice (admin)."""
        lottery_flows.promote(event_id, data["count"])
        return lottery.document(event_id)


@blp.route("/<int:event_id>/sections/<int:section_id>/seats")
class Seats(MethodView):
    @blp.response(200, SeatMapSchema)
    def get(self, event_id: int, section_id: int) -> dict[str, Any]:
        """The seat map of a seated section with each seat's state."""
        section, seats = catalogue.seat_map(event_id, section_id)
        available = sum(1 for s in seats if s["state"] == "available")
        return {"section": _section_view(section, available), "seats": seats}


@sale_blp.route("/<int:event_id>")
class SaleSettings(MethodView):
    @admin_required
    @sale_blp.arguments(QueueSettingsSchema)
    @sale_blp.response(200, QueueStatsSchema)
    def patch(self, data: dict, event_id: int) -> dict[str, Any]:
        """Change admit_per_minute, max_active, admission_window_seconds, pow_difficulty or the sale
        window (sale_opens_at: open now; sale_closes_at: stop new joins) of a live sale (admin)."""
        if not data:
            raise Unprocessable("Nothing to change", errors={"_schema": ["give at least one setting"]})
        with transaction():
            queue_services.update_settings(event_id, data)
        return sale_services.stats(event_id)


@sale_blp.route("/<int:event_id>/pause")
class Pause(MethodView):
    @admin_required
    @sale_blp.response(200, QueueStatsSchema)
    def post(self, event_id: int) -> dict[str, Any]:
        """Stop admitting (admin). Waiting users keep their places."""
        queue_services.set_paused(event_id, True)
        return sale_services.stats(event_id)


@sale_blp.route("/<int:event_id>/resume")
class Resume(MethodView):
    @admin_required
    @sale_blp.response(200, QueueStatsSchema)
    def post(self, event_id: int) -> dict[str, Any]:
        """Resume admitting (admin)."""
        queue_services.set_paused(event_id, False)
        return sale_services.stats(event_id)


@sale_blp.route("/<int:event_id>/close")
class Close(MethodView):
    @admin_required
    @sale_blp.response(200, SaleSummarySchema)
    def post(self, event_id: int) -> dict[str, Any]:
        """Close a sale that is over (admin): every accepted request written, live holds released,
        events drained, final figures kept in MySQL, Redis keys deleted. 409 `sale_not_over` before
        the event starts or its sale closes. Idempotent."""
        return lifecycle.close_sale(event_id)


@sale_blp.route("/<int:event_id>/stats")
class Stats(MethodView):
    @admin_required
    @sale_blp.response(200, QueueStatsSchema)
    def get(self, event_id: int) -> dict[str, Any]:
        """Waiting, active, totals, measured admission rate, oldest wait, paused (admin)."""
        return sale_services.stats(event_id)
