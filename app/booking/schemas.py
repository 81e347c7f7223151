from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.pagination import page_schema


class ReserveSchema(Schema):
    event_id = fields.Integer(required=True)
    section_id = fields.Integer(required=True)
    quantity = fields.Integer(validate=validate.Range(min=1, max=100))
    seat_ids = fields.List(fields.Integer(), validate=validate.Length(min=1, max=100))


class ReserveHeadersSchema(Schema):
    class Meta:
        unknown = "exclude"

    admission_token = fields.String(data_key="X-Admission-Token", load_default=None)
    idempotency_key = fields.String(data_key="Idempotency-Key", required=True,
                                    validate=validate.Length(min=1, max=128))


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
    status_url = fields.String()


ReservationPageSchema = page_schema(ReservationSchema, "ReservationPage")


class ConfirmSchema(Schema):
    payment_token = fields.String(required=True, validate=validate.Length(min=1, max=255))
