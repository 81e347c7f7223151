"""Typed calls of the two intake scripts (RESERVE, CLAIM_OFFER): their KEYS as dataclasses whose
field order is the order the Lua reads them (app/redis/lua/reserve.lua, claim_offer.lua), their
ARGV as keyword arguments, and their reply as named fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.redis.scripts import script


@dataclass(frozen=True)
class IntakeArgs:
    """ARGV 1-10 of both scripts (``pass_id``: the admission's expiry for RESERVE, the offer id for
    CLAIM_OFFER)."""
    user_id: int
    pass_id: str | float
    now: str
    idempotency_field: str
    request_hash: str
    reservation_id: str
    quantity: int
    max_per_user: int
    record_json: str
    section_id: int


@dataclass(frozen=True)
class IntakeReply:
    """``outcome``: accepted | replay (``detail``: the first request's reservation id) |
    limit_exceeded (``detail``: the units the user has) | sold_out | ... (the Lua's first value)."""
    outcome: str
    detail: str | None = None

    @classmethod
    def parse(cls, reply: list[Any]) -> IntakeReply:
        return cls(str(reply[0]), None if len(reply) < 2 or reply[1] is None else str(reply[1]))


@dataclass(frozen=True)
class ReserveKeys:
    active: str
    idempotency: str
    user_units: str
    gate: str
    holds: str
    reserve_stream: str
    pending: str
    revoked: str
    waitlist: str
    waitlist_pool: str
    waitlist_stats: str
    pending_of_user: str
    pending_units: str


@dataclass(frozen=True)
class ClaimOfferKeys:
    offers: str
    idempotency: str
    user_units: str
    offer_expiries: str
    user_offer: str
    reserve_stream: str
    pending: str
    revoked: str
    offered: str
    gate: str
    waitlist: str
    waitlist_pool: str
    waitlist_stats: str
    fresh_offers: str
    pending_of_user: str
    pending_units: str


def _values(fields_: Any) -> list[Any]:
    """A dataclass's values in field order (its __dict__ keeps it; dataclasses.astuple would deep-
    copy every value, on the hot path)."""
    return list(vars(fields_).values())


def reserve(keys: ReserveKeys, args: IntakeArgs) -> IntakeReply:
    return IntakeReply.parse(script("RESERVE")(keys=_values(keys), args=_values(args)))


def claim_offer(keys: ClaimOfferKeys, args: IntakeArgs) -> IntakeReply:
    return IntakeReply.parse(script("CLAIM_OFFER")(keys=_values(keys), args=_values(args)))
