"""The hold writer's pure core (app/booking/holds.py): every outcome of ``decide`` and every
refusal of ``parse_record``, with no database and no Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.booking.holds import (
    DROPPED,
    MAX_AMOUNT_CENTS,
    MalformedEntry,
    Outcome,
    SectionStock,
    Stock,
    decide,
    parse_record,
)

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
GA, SEATS, ELSEWHERE = 1, 2, 3


def request(rid: str, user: int, quantity: int = 1, section: int = GA, seats: list[int] | None = None,
            key: str | None = None) -> dict:
    return {"id": rid, "user_id": user, "event_id": 7, "section_id": section, "quantity": quantity,
            "seat_ids": seats, "idempotency_key": key or f"k-{rid}"}


def stock(free_units: int = 5, free_seats: set[int] | None = None, max_per_user: int | None = 4,
          live: dict[int, int] | None = None, taken: set[tuple[int, str]] | None = None) -> Stock:
    return Stock(max_per_user=max_per_user, live_units=live or {}, taken_keys=taken or set(), sections={
        GA: SectionStock(7, "general", free_units=free_units),
        SEATS: SectionStock(7, "seated", free_seats=set(free_seats or {11, 12, 13, 14})),
        ELSEWHERE: SectionStock(8, "general", free_units=10)})


def outcomes(requests: list[dict], s: Stock) -> dict[str, tuple[str, str | None]]:
    return {rid: (o.status, o.reason) for rid, o in decide(requests, s, UNTIL).outcomes.items()}


def test_general_admission_in_arrival_order_the_earlier_gets_the_last_units_a_smaller_later_still_fits():
    decision = decide([request("a", 1, 3), request("b", 2, 3), request("c", 3, 2)], stock(free_units=5), UNTIL)
    assert {rid: o.status for rid, o in decision.outcomes.items()} == {"a": "held", "b": "rejected", "c": "held"}
    assert decision.outcomes["b"].reason == "sold_out" and decision.outcomes["a"] == Outcome("held", None, UNTIL)
    assert decision.units_taken == {GA: 5}


def test_the_per_user_limit_counts_live_units_and_holds_earlier_in_the_batch():
    got = outcomes([request("a", 1, 2), request("b", 1, 2), request("c", 2, 1)], stock(live={2: 4}, free_units=10))
    assert got == {"a": ("held", None), "b": ("held", None), "c": ("rejected", "limit_exceeded")}
    assert outcomes([request("d", 1, 3), request("e", 1, 2)], stock())["e"] == ("rejected", "limit_exceeded")


def test_seats_are_held_when_all_are_free_and_not_taken_earlier_in_the_batch():
    decision = decide([request("a", 1, 2, SEATS, [11, 12]), request("b", 2, 2, SEATS, [12, 13]),
                       request("c", 3, 2, SEATS, [13, 14]), request("d", 4, 1, SEATS, [99])],
                      stock(), UNTIL)
    assert {rid: (o.status, o.reason) for rid, o in decision.outcomes.items()} == {
        "a": ("held", None), "b": ("rejected", "seats_unavailable"), "c": ("held", None),
        "d": ("rejected", "seats_unavailable")}
    assert decision.seat_owners == {SEATS: {11: "a", 12: "a", 13: "c", 14: "c"}}


def test_a_gone_event_or_section_or_a_section_of_another_event_is_rejected():
    assert outcomes([request("a", 1)], stock(max_per_user=None)) == {"a": ("rejected", "event_not_found")}
    got = outcomes([request("a", 1, section=42), request("b", 1, section=ELSEWHERE)], stock())
    assert got == {"a": ("rejected", "section_not_found"), "b": ("rejected", "section_not_found")}


def test_a_reused_idempotency_key_is_dropped_without_a_row():
    got = outcomes([request("a", 1, key="same"), request("b", 1, key="same"), request("c", 2, key="old")],
                   stock(taken={(2, "old")}))
    assert got == {"a": ("held", None), "b": (DROPPED, "idempotency_key_reused"),
                   "c": (DROPPED, "idempotency_key_reused")}


def record(**changes) -> str:
    base = {"id": "r-1", "user_id": 1, "event_id": 7, "section_id": 1, "quantity": 2, "seat_ids": None,
            "amount_cents": 1000, "currency": "EUR", "idempotency_key": "k", "request_hash": "h" * 64,
            "created_at": 1.5, "request_id": None}
    return json.dumps({**base, **changes})


def test_parse_record_accepts_a_request_and_refuses_anything_else():
    assert parse_record(record(), 7)["quantity"] == 2
    assert parse_record(record(seat_ids=[1, 2]), 7)["seat_ids"] == [1, 2]
    assert parse_record(record(amount_cents=MAX_AMOUNT_CENTS), 7)["amount_cents"] == MAX_AMOUNT_CENTS
    for bad in ("", "not json", "[1]", record(quantity="two"), record(quantity=0), record(user_id=True),
                record(event_id=8), record(amount_cents=MAX_AMOUNT_CENTS + 1), record(currency="EURO"),
                record(seat_ids=[1]), record(seat_ids=["a", "b"]), record(idempotency_key="k" * 129),
                record(created_at="yesterday")):
        with pytest.raises(MalformedEntry):
            parse_record(bad, 7)
