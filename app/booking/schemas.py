from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from app.errors import Unprocessable
from app.pagination import page_schema


class ReserveSchema(Schema):
    event_id = fields.Integer(strict=True, required=True)
    section_id = fields.Integer(strict=True, required=True)
    quantity = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))
    seat_ids = fields.List(fields.Integer(strict=True, ), validate=validate.Length(min=1, max=100))


def parse_reserve(body: Any, key: str | None) -> tuple[dict[str, Any], str]:
    """The reserve body (parsed JSON, or None) and Idempotency-Key, checked as ReserveSchema
    documents them, without a marshmallow load on the hot path. Integers are strict (1.5 and true
    are not integers)."""
    errors: dict[str, list[str]] = {}
    if not key:
        errors["Idempotency-Key"] = ["Missing data for required field."]
    elif len(key) > 128:
        errors["Idempotency-Key"] = ["Length must be between 1 and 128."]
    if not isinstance(body, dict):
        raise Unprocessable("The body must be a JSON object", errors={"json": ["expected an object"], **errors})
    for name in body.keys() - _RESERVE_FIELDS:
        errors[name] = ["Unknown field."]
    for name in ("event_id", "section_id"):
        if name not in body:
            errors[name] = ["Missing data for required field."]
        elif not _is_int(body[name]):
            errors[name] = ["Not a valid integer."]
    if "quantity" in body and body["quantity"] is not None:
        if not _is_int(body["quantity"]):
            errors["quantity"] = ["Not a valid integer."]
        elif not 1 <= body["quantity"] <= 100:
            errors["quantity"] = ["Must be greater than or equal to 1 and less than or equal to 100."]
    if "seat_ids" in body and body["seat_ids"] is not None:
        seats = body["seat_ids"]
        if not isinstance(seats, list) or not all(_is_int(s) for s in seats):
            errors["seat_ids"] = ["Not a valid list of integers."]
        elif not 1 <= len(seats) <= 100:
            errors["seat_ids"] = ["Length must be between 1 and 100."]
    if errors:
        raise Unprocessable("The request is invalid", errors=errors)
    return body, key


_RESERVE_FIELDS = {"event_id", "section_id", "quantity", "seat_ids"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SeatRefSchema(Schema):
    id = fields.Integer()
    label = fields.String()


class ReservationSchema(Schema):
    reservation_id = fields.String()
    event_id = fields.Integer()
    section_id = fields.Integer()
    status = fields.String(metadata={"description": "pending|held|confirmed|rejected|expired|cancelled"})
    quantity = fields.Integer()
    seats = fields.List(fields.Nested(SeatRefSchema))
    amount_cents = fields.Integer()
    currency = fields.String()
    hold_expires_at = fields.DateTime(allow_none=True)
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    confirmed_at = fields.DateTime(allow_none=True)
    order_number = fields.String(allow_none=True, metadata={"description": "the order of a paid reservation"})
    status_url = fields.String()


ReservationPageSchema = page_schema(ReservationSchema, "ReservationPage")


class ConfirmSchema(Schema):
    payment_token = fields.String(required=True, validate=validate.Length(min=1, max=255))


# --- after the sell-out ----------------------------------------------------------------------------

class WaitlistJoinSchema(Schema):
    quantity = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=100),
                              metadata={"description": "tickets wanted (within the event's per-user limit)"})


class OfferSchema(Schema):
    offer_token = fields.String(metadata={"description": "send as X-Offer-Token with POST /api/tickets/reserve"})
    quantity = fields.Integer()
    expires_at = fields.String()
    reserve_url = fields.String()


class WaitlistPlaceSchema(Schema):
    event_id = fields.Integer()
    section_id = fields.Integer()
    status = fields.String(metadata={"description": "waiting | offered"})
    position = fields.Integer(allow_none=True)
    quantity = fields.Integer()
    units_ahead = fields.Integer(metadata={"description": "tickets wanted by the fans ahead"})
    eta_seconds = fields.Integer(allow_none=True,
                                 metadata={"description": "from the measured release rate; null while none measured"})
    eta_status = fields.String(metadata={"description": "estimated | unknown | now"})
    offer = fields.Nested(OfferSchema, allow_none=True)
    waitlist_url = fields.String()


class WaitlistSectionStatsSchema(Schema):
    section_id = fields.Integer()
    waiting = fields.Integer()
    offers_out = fields.Integer()
    units_offered = fields.Integer()
    units_in_pool = fields.Integer()
    offers_made = fields.Integer()
    offers_claimed = fields.Integer()
    offers_expired = fields.Integer()
    offers_declined = fields.Integer()
    conversion = fields.Float(allow_none=True, metadata={"description": "claimed / made"})
    units_released = fields.Integer()


class RefundSchema(Schema):
    refund_id = fields.String()
    reservation_id = fields.String()
    status = fields.String(metadata={"description": "pending | succeeded | declined"})
    amount_cents = fields.Integer(metadata={"description": "paid back"})
    fee_cents = fields.Integer(metadata={"description": "kept under the event's refund policy"})
    currency = fields.String()
    reason = fields.String()
    decline_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class EventRefundJobSchema(Schema):
    task_id = fields.String()
    state = fields.String(metadata={"description": "PENDING | PROGRESS | SUCCESS | FAILURE"})
    progress = fields.Dict(metadata={"description": "{done, total, refunded, declined, skipped}"})
    status_url = fields.String()
