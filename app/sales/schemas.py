"""The registration lottery's request and answer shapes (app/sales/lottery.py)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate


class LotteryCreateSchema(Schema):
    lane = fields.String(required=True, validate=validate.Length(min=1, max=32),
                         metadata={"description": "the lane whose single-use codes the winners get"})
    winners = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1_000_000))
    closes_at = fields.AwareDateTime(required=True, default_timezone=UTC,
                                     metadata={"description": "registration closes and the draw runs"})
    losers = fields.String(load_default="notice", validate=validate.OneOf(["waitlist", "notice"]), metadata={
        "description": "waitlist: a standby place (promoted in draw order); notice: 'not this time'"})
    codes_valid_until = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    ticket_limit = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=100))


class LotterySchema(Schema):
    event_id = fields.Integer()
    algorithm = fields.String()
    state = fields.String(metadata={"description": "open (the seed is secret) | drawn (seed and order published)"})
    lane = fields.String(allow_none=True)
    winners = fields.Integer()
    losers = fields.String()
    registered = fields.Integer()
    commitment = fields.String()
    committed_at = fields.String()
    closes_at = fields.String()
    opens_at = fields.String(metadata={"description": "the deadline the commitment must precede (the verifier's)"})
    seed = fields.String(allow_none=True)
    drawn_at = fields.String(allow_none=True)
    entrants = fields.Integer(allow_none=True)
    entrants_digest = fields.String(allow_none=True)
    entrants_url = fields.String(allow_none=True)
    promoted = fields.Integer()


class LotteryEntrySchema(Schema):
    state = fields.String(metadata={"description": "not_registered | registered | won | standby | lost"})
    entrant_id = fields.String()
    registered_at = fields.String()
    place = fields.Integer(allow_none=True)
    closes_at = fields.String()
    code = fields.String(metadata={"description": "a winner's access code (join the presale lane with it)"})
    standby_place = fields.Integer()


class PromoteSchema(Schema):
    count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000))
