from __future__ import annotations

from datetime import UTC

from babel.numbers import list_currencies
from marshmallow import Schema, ValidationError, fields, validate, validates

from app.pagination import page_schema

ISO_4217 = frozenset(list_currencies()) - {"XXX", "XTS"}  # no 'no currency' or 'testing' code


class EventCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    venue = fields.String(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    sale_opens_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    sale_closes_at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=UTC)
    admit_per_minute = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=1_000_000))
    max_active = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=10_000_000))
    admission_window_seconds = fields.Integer(strict=True, load_default=600, validate=validate.Range(min=1, max=86_400))
    prequeue_minutes = fields.Integer(strict=True, load_default=15, validate=validate.Range(min=0, max=1440))
    heartbeat_timeout_seconds = fields.Integer(strict=True, load_default=60, validate=validate.Range(min=1, max=86_400))
    pow_difficulty = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=24),
                                    metadata={"description": "proof of work asked at join, in zero bits (0: none)"})
    pow_adaptive_threshold = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=10_000_000),
                                            metadata={"description": "join attempts a second above which the proof "
                                                      "of work rises (0: it stays at pow_difficulty)"})
    pow_max_difficulty = fields.Integer(strict=True, load_default=17, validate=validate.Range(min=0, max=24),
                                        metadata={"description": "the most the adaptive proof of work asks"})
    max_per_user = fields.Integer(strict=True, load_default=None, validate=validate.Range(min=1, max=100),
                                  metadata={"description": "default: MAX_TICKETS_PER_USER (4)"})
    hold_seconds = fields.Integer(strict=True, load_default=None, validate=validate.Range(min=1, max=86_400),
                                  metadata={"description": "default: HOLD_SECONDS (300)"})
    refund_deadline = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=UTC,
                                           metadata={"description": "fans may refund until then (none: any time)"})
    refund_fee_percent = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=100),
                                        metadata={"description": "kept from a fan's own refund (admins: none)"})
    offer_window_seconds = fields.Integer(strict=True, load_default=600, validate=validate.Range(min=30, max=86_400),
                                          metadata={"description": "how long a waitlist offer stays open"})


class EventUpdateSchema(Schema):
    """What can change on a sale once it exists (its waiting-room settings and window: PATCH
    /api/queue/{id}; per-fan limits and hold length stay as the sale started)."""
    name = fields.String(validate=validate.Length(min=1, max=200))
    venue = fields.String(validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(default_timezone=UTC)
    refund_deadline = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    refund_fee_percent = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    offer_window_seconds = fields.Integer(strict=True, validate=validate.Range(min=30, max=86_400))


class SectionCapacitySchema(Schema):
    capacity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=1_000_000),
                              metadata={"description": "new capacity of a general admission section"})


class SectionCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    price_cents = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=100_000_000))
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z]{3}$", error="ISO 4217 code"))
    capacity = fields.Integer(strict=True, validate=validate.Range(min=1, max=1_000_000))
    rows = fields.Integer(strict=True, validate=validate.Range(min=1, max=500))
    seats_per_row = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))

    @validates("currency")
    def _iso_4217(self, value: str, **_kwargs: object) -> None:
        # a real currency (Babel's ISO 4217 list, pinned with the app): `zzz` sells nothing
        if value.upper() not in ISO_4217:
            raise ValidationError(f"{value!r} is not an ISO 4217 currency code")


class SectionSchema(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    price_cents = fields.Integer()
    currency = fields.String()
    capacity = fields.Integer()
    available = fields.Integer()


class EventSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    venue = fields.String()
    starts_at = fields.DateTime()
    sale_opens_at = fields.DateTime()
    sale_closes_at = fields.DateTime(allow_none=True)
    admit_per_minute = fields.Integer()
    max_active = fields.Integer()
    admission_window_seconds = fields.Integer()
    prequeue_minutes = fields.Integer()
    heartbeat_timeout_seconds = fields.Integer()
    pow_difficulty = fields.Integer()
    pow_adaptive_threshold = fields.Integer()
    pow_max_difficulty = fields.Integer()
    max_per_user = fields.Integer()
    hold_seconds = fields.Integer()
    refund_deadline = fields.DateTime(allow_none=True)
    refund_fee_percent = fields.Integer()
    offer_window_seconds = fields.Integer()


class EventDetailSchema(EventSchema):
    sections = fields.List(fields.Nested(SectionSchema))


EventPageSchema = page_schema(EventSchema, "EventPage")


class SeatSchema(Schema):
    id = fields.Integer()
    row = fields.String()
    number = fields.Integer()
    label = fields.String()
    state = fields.String()


class SeatMapSchema(Schema):
    section = fields.Nested(SectionSchema)
    seats = fields.List(fields.Nested(SeatSchema))
