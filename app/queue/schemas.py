from __future__ import annotations

from datetime import UTC

from flask import Request
from marshmallow import Schema, ValidationError, fields, validate

from app.errors import Unprocessable


class QueueStatusSchema(Schema):
    status = fields.String(metadata={"description": "waiting | admitted | expired | not_in_queue"})
    position = fields.Integer(allow_none=True)
    ahead = fields.Integer(allow_none=True)
    eta_seconds = fields.Integer(allow_none=True, metadata={
        "description": "expected wait in seconds; null while the sale is paused (no countdown)"})
    eta_range_seconds = fields.List(fields.Integer(), allow_none=True, metadata={
        "description": "[low, high]: a 90 % range, wide while little has been measured"})
    poll_after_ms = fields.Integer(allow_none=True)
    admission_token = fields.String(allow_none=True)
    admitted_until = fields.String(allow_none=True)
    paused = fields.Boolean()
    reason = fields.String(allow_none=True)
    line_number = fields.Integer(allow_none=True, metadata={
        "description": "the place's number in the line; with GET /api/queue/{id}/serving, position is at most "
                       "line_number - served_up_to (docs/waiting-room.md)"})
    place = fields.String(allow_none=True, metadata={
        "description": "the signed place (sale, line number, join time, bound to this user): "
                       "GET /api/queue/{id}/stream?place=... opens a stream without a status call"})
    lane = fields.String(allow_none=True, metadata={
        "description": "the priority lane an access code put this fan in (null: the general line)"})
    ticket_limit = fields.Integer(allow_none=True, metadata={"description": "the access code's ticket limit"})


class JoinSchema(Schema):
    code = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "an access code (presale, fan club): the fan waits in its lane for the whole sale"})


def parse_join(request: Request) -> str | None:
    """The optional join body's access code, checked as JoinSchema documents it. A join sends no
    body but with a code, so the hot path loads no schema (webargs parsing the absent body cost
    re-joins about 7 % of their throughput here)."""
    data = request.get_data(cache=True) if request.is_json else b""
    if not data:
        return None
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Unprocessable("The body must be a JSON object", errors={"json": ["expected an object"]})
    try:
        return JoinSchema().load(body).get("code")
    except ValidationError as exc:
        raise Unprocessable("Validation failed", errors=exc.messages) from exc


class LaneCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=32))
    share_percent = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=90), metadata={
        "description": "the lane's share of the admissions while it holds anyone (the lanes' add up to 90 at most)"})
    opens_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC, metadata={
        "description": "when the lane's fans start being admitted (a presale: before the sale; null: with it)"})
    sections = fields.List(fields.Integer(strict=True), validate=validate.Length(max=100), metadata={
        "description": "sections only this lane's fans may buy until sections_released_at (VIP)"})
    sections_released_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC)


class LaneUpdateSchema(Schema):
    share_percent = fields.Integer(strict=True, validate=validate.Range(min=1, max=90))
    opens_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    sections_released_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC)


class LaneSchema(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    name = fields.String()
    share_percent = fields.Integer()
    opens_at = fields.AwareDateTime()
    sections = fields.List(fields.Integer())
    sections_released_at = fields.AwareDateTime(allow_none=True)
    codes = fields.Integer()
    uses = fields.Integer(metadata={"description": "redemptions the lane's codes allow in all"})
    redeemed = fields.Integer()
    waiting = fields.Integer()
    admitted = fields.Integer()


class CodeBatchCreateSchema(Schema):
    lane = fields.String(required=True, validate=validate.Length(min=1, max=32))
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=10_000))
    emails = fields.List(fields.Email(), validate=validate.Length(min=1, max=10_000), metadata={
        "description": "one code per e-mail, each redeemable by that account only (instead of count)"})
    uses = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=100_000))
    valid_from = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    valid_until = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    ticket_limit = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=100))
    batch = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))


class CodeSchema(Schema):
    id = fields.Integer()
    batch = fields.String()
    lane = fields.String()
    max_uses = fields.Integer()
    redeemed = fields.Integer()
    email = fields.String(allow_none=True)
    valid_from = fields.AwareDateTime(allow_none=True)
    valid_until = fields.AwareDateTime(allow_none=True)
    ticket_limit = fields.Integer(allow_none=True)


class CodeBatchSchema(Schema):
    batch = fields.String()
    lane = fields.String()
    codes = fields.List(fields.Dict(), metadata={
        "description": "[{id, code, email}]: the plain codes, shown this once (only their SHA-256 is kept)"})


class CodeListArgsSchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=5000))


class CodeListSchema(Schema):
    codes = fields.List(fields.Nested(CodeSchema))
    next = fields.String(allow_none=True)


class QueueSettingsSchema(Schema):
    admit_per_minute = fields.Integer(strict=True, validate=validate.Range(min=1, max=1_000_000))
    max_active = fields.Integer(strict=True, validate=validate.Range(min=1, max=10_000_000))
    admission_window_seconds = fields.Integer(strict=True, validate=validate.Range(min=1, max=86_400))
    pow_difficulty = fields.Integer(strict=True, validate=validate.Range(min=0, max=24))
    pow_adaptive_threshold = fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000_000))
    pow_max_difficulty = fields.Integer(strict=True, validate=validate.Range(min=0, max=24))
    # the sale window: open it now (an earlier start), or stop new joins (an earlier end)
    sale_opens_at = fields.AwareDateTime(default_timezone=UTC)
    sale_closes_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC)


class QueueStatsSchema(Schema):
    event_id = fields.Integer()
    last_eta_seconds = fields.Integer(allow_none=True,
                                      metadata={"description": "the last fan's wait at the measured rate"})
    sections = fields.List(fields.Dict(), metadata={
        "description": "[{id, name, capacity, sold, held, kept_for_waitlist, available}]: the figures every page "
                       "shows (app/inventory/gate.figures)"})
    holds_expiring_60s = fields.Integer(metadata={"description": "holds ending within a minute"})
    outbox_lag_seconds = fields.Float(metadata={"description": "age of the oldest unpublished event"})
    waitlists = fields.List(fields.Dict(), metadata={
        "description": "per section with a waitlist: waiting, offers_out, offers made/claimed/expired/declined, "
                       "conversion (as GET /api/events/{id}/waitlists)"})
    waiting = fields.Integer()
    pre_queue = fields.Integer()
    active = fields.Integer()
    admitted_total = fields.Integer()
    expired_total = fields.Integer()
    joined_total = fields.Integer()
    admit_rate_per_minute = fields.Float()
    configured_admit_per_minute = fields.Integer()
    max_active = fields.Integer()
    admission_window_seconds = fields.Integer()
    oldest_wait_seconds = fields.Float()
    paused = fields.Boolean()
    pow_difficulty = fields.Integer(metadata={"description": "the proof of work a new join is asked now (zero "
                                                             "bits; adaptive: risen with the join rate)"})
    join_attempts_per_second = fields.Float(metadata={"description": "measured by the adaptive proof of work"})
    pow_adaptive_threshold = fields.Integer(metadata={"description": "join attempts a second above which it rises"})
    pow_max_difficulty = fields.Integer()


class SaleSummarySchema(Schema):
    """The final figures of a closed sale (kept in MySQL; its Redis keys are gone)."""

    event_id = fields.Integer()
    closed_at = fields.DateTime()
    joined_total = fields.Integer()
    admitted_total = fields.Integer()
    expired_total = fields.Integer()
    sections = fields.List(fields.Dict(), metadata={
        "description": "[{id, name, capacity, sold, held, kept_for_waitlist, available}] at close"})
    waitlists = fields.List(fields.Dict())
    dead_letters = fields.Integer(metadata={"description": "accepted requests the hold writer parked"})
    keys_deleted = fields.Integer(metadata={"description": "Redis keys of the sale deleted at close"})


class DrawSchema(Schema):
    event_id = fields.Integer()
    algorithm = fields.String(metadata={"description": "how the order follows from the seed (docs/waiting-room.md)"})
    state = fields.String(metadata={"description": "committed (the seed is secret) | drawn (seed and order published)"})
    commitment = fields.String(metadata={"description": "SHA-256 of the seed, hex: public before the sale opens"})
    committed_at = fields.String()
    opens_at = fields.String()
    seed = fields.String(allow_none=True)
    drawn_at = fields.String(allow_none=True)
    entrants = fields.Integer(allow_none=True)
    entrants_digest = fields.String(allow_none=True, metadata={
        "description": "SHA-256 of the ordered ids joined by \\n"})
    entrants_url = fields.String(allow_none=True)


class DrawEntrantsArgsSchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100_000_000),
                           metadata={"description": "the last place already read (0: from the first)"})
    limit = fields.Integer(load_default=10_000, validate=validate.Range(min=1, max=10_000))


class DrawEntrantsSchema(Schema):
    items = fields.List(fields.String(), metadata={"description": "entrant ids, in the drawn order"})
    from_place = fields.Integer()
    total = fields.Integer()
    next = fields.String(allow_none=True)


class MyDrawEntrySchema(Schema):
    event_id = fields.Integer()
    entrant_id = fields.String(metadata={"description": "the caller's pseudonymous id in this draw (theirs alone)"})
    state = fields.String()
    place = fields.Integer(allow_none=True)
    entrants = fields.Integer(allow_none=True)
