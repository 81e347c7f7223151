"""After the sell-out: the waitlist of a section, refunds of tickets, and an event's refund job."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView
from flask_jwt_extended import get_jwt, jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import admin_required, current_user_id
from app.booking import flows, refunds, waitlist
from app.booking.schemas import (
    EventRefundJobSchema,
    RefundSchema,
    WaitlistJoinSchema,
    WaitlistPlaceSchema,
    WaitlistSectionStatsSchema,
)
from app.db import transaction
from app.errors import NotFound
from app.extensions import celery, redis_store
from app.jsonio import json_response
from app.redis.keys import refund_job_key

blp = Blueprint("after_sale", __name__, url_prefix="/api", description="Waitlists and refunds")


@blp.route("/events/<int:event_id>/sections/<int:section_id>/waitlist")
class Waitlist(MethodView):
    @jwt_required()
    @blp.arguments(WaitlistJoinSchema)
    @blp.response(201, WaitlistPlaceSchema)
    @blp.alt_response(200, schema=WaitlistPlaceSchema, description="already on the waitlist: the same place")
    def post(self, body: dict, event_id: int, section_id: int) -> Response:
        """Join a sold-out section's waitlist (an admitted fan; 409 `not_sold_out` while tickets remain)."""
        with transaction():
            view, created = waitlist.join(event_id, section_id, current_user_id(), body["quantity"])
        return json_response(view, 201 if created else 200)

    @jwt_required()
    @blp.response(200, WaitlistPlaceSchema)
    def get(self, event_id: int, section_id: int) -> Response:
        """Your place (position, tickets ahead, estimate) or your open offer with its pass."""
        return json_response(waitlist.view(event_id, section_id, current_user_id()), 200)

    @jwt_required()
    @blp.response(204)
    def delete(self, event_id: int, section_id: int) -> None:
        """Leave the waitlist, or decline your open offer (it passes to the next fan at once)."""
        flows.leave_waitlist(event_id, section_id, current_user_id())


@blp.route("/events/<int:event_id>/waitlists")
class WaitlistStats(MethodView):
    @admin_required
    @blp.response(200, WaitlistSectionStatsSchema(many=True))
    def get(self, event_id: int) -> list[dict[str, Any]]:
        """Per section: waiting fans, offers out, made/claimed/expired/declined, conversion (admin)."""
        return waitlist.stats(event_id)


@blp.route("/tickets/<reservation_id>/refund")
class Refund(MethodView):
    @jwt_required()
    @blp.response(200, RefundSchema)
    def post(self, reservation_id: str) -> dict[str, Any]:
        """Refund a confirmed ticket: its owner within the event's deadline (minus its fee), or an
        admin (any ticket, in full). Twice = the same refund; a provider decline is a 402 and the
        ticket stays confirmed."""
        admin = "admin" in get_jwt().get("roles", [])
        return refunds.refund_view(flows.request_refund(reservation_id, current_user_id(), admin=admin))


@blp.route("/events/<int:event_id>/refunds")
class EventRefunds(MethodView):
    @admin_required
    @blp.response(202, EventRefundJobSchema)
    def post(self, event_id: int) -> dict[str, Any]:
        """Refund every confirmed ticket of the event (admin): a Celery task, followed at its status_url
        and in Flower."""
        from app.catalogue.services import get_event
        get_event(event_id)  # 404 before anything is queued
        # the job belongs to its event before it exists: its status is readable under this event only
        task_id = str(uuid.uuid4())
        redis_store.client.set(refund_job_key(event_id, task_id), 1, ex=7 * 86_400)
        result = celery.send_task("booking.refund_event", args=[event_id, current_user_id()], task_id=task_id)
        return {"task_id": result.id, "state": "PENDING", "progress": {},
                "status_url": f"/api/events/{event_id}/refunds/{result.id}"}


@blp.route("/events/<int:event_id>/refunds/<task_id>")
class EventRefundStatus(MethodView):
    @admin_required
    @blp.response(200, EventRefundJobSchema)
    def get(self, event_id: int, task_id: str) -> dict[str, Any]:
        """Progress of an event's refund job (admin)."""
        # whatever its state: a job of another event (or an unknown id, which looks PENDING) is not
        # found under this one
        if not redis_store.client.exists(refund_job_key(event_id, task_id)):
            raise NotFound("No such refund job", reason="refund_job_not_found")
        result = celery.AsyncResult(task_id)
        info = result.info if isinstance(result.info, dict) else {}
        return {"task_id": task_id, "state": result.state, "progress": info,
                "status_url": f"/api/events/{event_id}/refunds/{task_id}"}
