from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.pagination import PageArgsSchema, page_schema


class OrderLineSchema(Schema):
    section_id = fields.Integer()
    section = fields.String()
    kind = fields.String(metadata={"description": "general|seated"})
    seats = fields.List(fields.String(), allow_none=True, metadata={"description": "seat labels; null for GA"})
    quantity = fields.Integer()
    unit_price_cents = fields.Integer(metadata={"description": "integer minor units of the currency"})
    fee_cents = fields.Integer()
    amount_cents = fields.Integer()


class TicketSchema(Schema):
    ticket_id = fields.String()
    unit = fields.Integer()
    section_id = fields.Integer()
    section = fields.String()
    seat = fields.String(allow_none=True, metadata={"description": "null for general admission"})
    label = fields.String()
    price_cents = fields.Integer()
    currency = fields.String()
    status = fields.String(metadata={"description": "valid|refunded"})
    checked_in_at = fields.DateTime(allow_none=True)
    code = fields.String(metadata={"description": "the signed code in the QR, checked at the door"})
    qr_url = fields.String()
    print_url = fields.String()


class OrderEventSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    venue = fields.String()
    starts_at = fields.DateTime()


class OrderRefundSchema(Schema):
    refund_id = fields.String()
    status = fields.String(metadata={"description": "pending|succeeded|declined"})
    amount_cents = fields.Integer()
    fee_cents = fields.Integer()
    currency = fields.String()
    reason = fields.String()
    by = fields.String(metadata={"description": "you|organiser"})
    requested_at = fields.DateTime()
    decline_reason = fields.String(allow_none=True)


class OrderSchema(Schema):
    order_id = fields.String()
    number = fields.String(metadata={"description": "readable over the phone, e.g. 7KQ-M4X2-9PZ"})
    reservation_id = fields.String()
    event = fields.Nested(OrderEventSchema)
    lines = fields.List(fields.Nested(OrderLineSchema))
    currency = fields.String()
    subtotal_cents = fields.Integer()
    fee_cents = fields.Integer()
    total_cents = fields.Integer()
    payment_state = fields.String(metadata={"description": "paid"})
    payment_ref = fields.String(allow_none=True)
    refund_state = fields.String(metadata={"description": "none|pending|succeeded|declined"})
    refund = fields.Nested(OrderRefundSchema, allow_none=True)
    created_at = fields.DateTime()
    tickets = fields.List(fields.Nested(TicketSchema))


OrderPageSchema = page_schema(OrderSchema, "OrderPage")


class BuyerSchema(Schema):
    user_id = fields.Integer()
    email = fields.String()
    name = fields.String()


class EventOrderSchema(OrderSchema):
    buyer = fields.Nested(BuyerSchema)


EventOrderPageSchema = page_schema(EventOrderSchema, "EventOrderPage")


class EventOrdersArgsSchema(PageArgsSchema):
    q = fields.String(load_default=None, validate=validate.Length(max=254),
                      metadata={"description": "an order number, or the start of the buyer's e-mail"})
