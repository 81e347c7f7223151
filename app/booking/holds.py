"""The hold writer's pure core: which accepted requests of one batch become holds, and which are
rejected and why. No database, no Redis: the shell (app/booking/writer.py) reads and locks the
inventory, calls ``decide``, then writes what it decided.

Rules, in arrival order within the batch:
- a request whose (user, Idempotency-Key) already has another reservation is dropped (no row; its
  units go back): possible only if Redis lost its idempotency record;
- the event is gone: ``event_not_found``; the section is gone or of another event:
  ``section_not_found``;
- the user's live units (confirmed, live holds, and holds earlier in this batch) plus the request
  exceed the event's per-user limit: ``limit_exceeded``;
- general admission: held while the section's free units cover it, else ``sold_out`` (an earlier
  request takes the last units; a later, smaller one may still fit);
- seats: held when every requested seat is free (and not taken earlier in the batch), else
  ``seats_unavailable``.

Also here: ``parse_record``, the check that an entry of the reserve stream is a request at all. An
entry that fails it is malformed (poison) and goes to the dead-letter stream; nothing else does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.booking.models import HELD, REJECTED
from app.catalogue.models import SECTION_GENERAL as GENERAL

DROPPED = "dropped"  # an outcome with no row (a reused Idempotency-Key)

MAX_AMOUNT_CENTS = 2**63 - 1  # BIGINT: what the reservations.amount_cents column holds
_MAX_QUANTITY = 1000


class MalformedEntry(ValueError):
    """A stream entry that is not a request the writer can write, whatever it retries."""


@dataclass(frozen=True)
class Outcome:
    status: str  # HELD | REJECTED | DROPPED
    reason: str | None = None
    hold_until: datetime | None = None


@dataclass
class SectionStock:
    """One section as the shell read it under its row locks."""

    event_id: int
    kind: str  # GENERAL or seated
    free_units: int = 0  # general admission: capacity - sold - live holds
    free_seats: set[int] = field(default_factory=set)  # seated: seats available or whose hold lapsed


@dataclass
class Stock:
    """What the batch may take: the event's per-user limit (None: the event is gone), each buyer's
    live units, the sections, and the (user, Idempotency-Key) pairs taken by other reservations."""

    max_per_user: int | None
    live_units: dict[int, int]
    sections: dict[int, SectionStock]
    taken_keys: set[tuple[int, str]] = field(default_factory=set)


@dataclass
class Decision:
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # reservation id -> outcome
    units_taken: dict[int, int] = field(default_factory=dict)  # general section -> units held
    seat_owners: dict[int, dict[int, str]] = field(default_factory=dict)  # section -> seat -> reservation


def decide(requests: Iterable[dict[str, Any]], stock: Stock, hold_until: datetime) -> Decision:
    """The outcome of every request of the batch (see the module's rules)."""
    decision = Decision()
    live = dict(stock.live_units)
    taken_keys = set(stock.taken_keys)
    free_units = {sid: s.free_units for sid, s in stock.sections.items()}
    free_seats = {sid: set(s.free_seats) for sid, s in stock.sections.items()}
    for r in requests:
        rid, user, quantity = r["id"], r["user_id"], r["quantity"]
        key = (user, r["idempotency_key"])
        if key in taken_keys:
            decision.outcomes[rid] = Outcome(DROPPED, "idempotency_key_reused")
            continue
        taken_keys.add(key)
        section = stock.sections.get(r["section_id"])
        if stock.max_per_user is None:
            decision.outcomes[rid] = Outcome(REJECTED, "event_not_found")
        elif section is None or section.event_id != r["event_id"]:
            decision.outcomes[rid] = Outcome(REJECTED, "section_not_found")
        elif live.get(user, 0) + quantity > stock.max_per_user:
            decision.outcomes[rid] = Outcome(REJECTED, "limit_exceeded")
        elif section.kind == GENERAL:
            if quantity <= free_units[r["section_id"]]:
                free_units[r["section_id"]] -= quantity
                decision.units_taken[r["section_id"]] = decision.units_taken.get(r["section_id"], 0) + quantity
                decision.outcomes[rid] = Outcome(HELD, None, hold_until)
                live[user] = live.get(user, 0) + quantity
            else:
                decision.outcomes[rid] = Outcome(REJECTED, "sold_out")
        else:
            mine = r.get("seat_ids") or []
            seats = free_seats[r["section_id"]]
            if mine and all(s in seats for s in mine):
                seats.difference_update(mine)
                decision.seat_owners.setdefault(r["section_id"], {}).update({s: rid for s in mine})
                decision.outcomes[rid] = Outcome(HELD, None, hold_until)
                live[user] = live.get(user, 0) + quantity
            else:
                decision.outcomes[rid] = Outcome(REJECTED, "seats_unavailable")
    return decision


def _int(record: dict[str, Any], name: str, low: int, high: int) -> int:
    value = record.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MalformedEntry(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def _str(record: dict[str, Any], name: str, max_length: int) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise MalformedEntry(f"{name} must be a string of 1..{max_length} characters, got {value!r}")
    return value


def parse_record(raw: str | bytes | None, event_id: int) -> dict[str, Any]:
    """The request record of a reserve-stream entry, checked field by field against what the
    reservations table holds. Raises MalformedEntry for anything else (retrying cannot help)."""
    try:
        record = json.loads(raw) if raw else None
    except (TypeError, ValueError) as exc:
        raise MalformedEntry(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise MalformedEntry("not a request record")
    _str(record, "id", 36)
    _int(record, "user_id", 1, 2**31 - 1)
    if _int(record, "event_id", 1, 2**31 - 1) != event_id:
        raise MalformedEntry(f"event_id {record['event_id']} on the stream of event {event_id}")
    _int(record, "section_id", 1, 2**31 - 1)
    quantity = _int(record, "quantity", 1, _MAX_QUANTITY)
    _int(record, "amount_cents", 0, MAX_AMOUNT_CENTS)
    _str(record, "currency", 3)
    _str(record, "idempotency_key", 128)
    _str(record, "request_hash", 64)
    seats = record.get("seat_ids")
    if seats is not None and (not isinstance(seats, list) or len(seats) != quantity
                              or not all(isinstance(s, int) and not isinstance(s, bool) for s in seats)):
        raise MalformedEntry(f"seat_ids must be None or {quantity} seat ids, got {seats!r}")
    if not isinstance(record.get("created_at"), (int, float)):
        raise MalformedEntry("created_at must be a number")
    return record
