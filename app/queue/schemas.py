from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate


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


class QueueSettingsSchema(Schema):
    admit_per_minute = fields.Integer(strict=True, validate=validate.Range(min=1, max=1_000_000))
    max_active = fields.Integer(strict=True, validate=validate.Range(min=1, max=10_000_000))
    admission_window_seconds = fields.Integer(strict=True, validate=validate.Range(min=1, max=86_400))
    pow_difficulty = fields.Integer(strict=True, validate=validate.Range(min=0, max=24))
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
