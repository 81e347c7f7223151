from __future__ import annotations

from marshmallow import Schema, fields, validate


class ScanSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=200),
                         metadata={"description": "the code in the ticket's QR (T2.<event>.<ticket>.<mac>)"})
    gate = fields.String(load_default="main", validate=validate.Length(min=1, max=64))


class ScannedTicketSchema(Schema):
    ticket_id = fields.String()
    section = fields.String()
    label = fields.String()
    status = fields.String()


class ScanResultSchema(Schema):
    result = fields.String(metadata={"description": "admitted|already_used|refunded|wrong_event|invalid"})
    admitted = fields.Boolean()
    ticket = fields.Nested(ScannedTicketSchema, allow_none=True)
    checked_in_at = fields.DateTime(metadata={"description": "when the ticket was admitted (also on already_used)"})
    gate = fields.String(metadata={"description": "where the ticket was admitted (also on already_used)"})


class SectionCountSchema(Schema):
    section_id = fields.Integer()
    name = fields.String()
    sold = fields.Integer()
    checked_in = fields.Integer()


class CheckinStatsSchema(Schema):
    event_id = fields.Integer()
    sold = fields.Integer()
    checked_in = fields.Integer()
    sections = fields.List(fields.Nested(SectionCountSchema))


class GrantStaffSchema(Schema):
    email = fields.Email(required=True)


class StaffSchema(Schema):
    user_id = fields.Integer()
    email = fields.String()
    name = fields.String()
    granted_at = fields.DateTime()
