"""Catalogue rules: creating events and sections, and live availability.

Availability never counts a hold past its expiry, even before the sweeper has released it.
"""

from __future__ import annotations

import string
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.exc import IntegrityError

from app.catalogue.models import (
    SEAT_AVAILABLE,
    SEAT_HELD,
    SEAT_SOLD,
    SECTION_GENERAL,
    SECTION_SEATED,
    Event,
    Seat,
    Section,
)
from app.db import is_duplicate_key, utcnow
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.pagination import paginate
from app.tasking import call_after_commit


def row_label(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (spreadsheet-style, as venues label long halls)."""
    letters = string.ascii_uppercase
    label = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        label = letters[rem] + label
    return label


def create_event(data: dict[str, Any]) -> Event:
    if data["sale_opens_at"] > data["starts_at"]:
        raise Unprocessable("The sale must open before the event starts",
                            errors={"sale_opens_at": ["must not be after starts_at"]})
    closes = data.get("sale_closes_at")
    if closes is not None and closes <= data["sale_opens_at"]:
        raise Unprocessable("The sale must close after it opens",
                            errors={"sale_closes_at": ["must be after sale_opens_at"]})
    defaults = {"max_per_user": current_app.config["MAX_TICKETS_PER_USER"],
                "hold_seconds": current_app.config["HOLD_SECONDS"]}
    event = Event(**{**data, **{k: v for k, v in defaults.items() if data.get(k) is None}})
    db.session.add(event)
    db.session.flush()
    return event


def update_event(event_id: int, changes: dict[str, Any]) -> Event:
    """An admin's edit of what a sale shows and its refund policy; the waiting room's copy of the
    event (Redis) follows after commit."""
    from app.queue.services import sync_meta

    event = get_event(event_id)
    for field, value in changes.items():
        setattr(event, field, value)
    db.session.flush()
    call_after_commit(db.session(), lambda: sync_meta(event))
    return event


def get_event(event_id: int) -> Event:
    event = db.session.get(Event, event_id)
    if event is None:
        raise NotFound(f"Event {event_id} not found", reason="event_not_found")
    return event


def list_events(page: int, page_size: int) -> tuple[list[Event], int]:
    return paginate(select(Event).order_by(Event.sale_opens_at, Event.id), page, page_size)


def get_section(event_id: int, section_id: int) -> Section:
    section = db.session.get(Section, section_id)
    if section is None or section.event_id != event_id:
        raise NotFound(f"Section {section_id} not found in event {event_id}", reason="section_not_found")
    return section


def create_section(event_id: int, data: dict[str, Any]) -> Section:
    event = get_event(event_id)
    rows, per_row, capacity = data.get("rows"), data.get("seats_per_row"), data.get("capacity")
    seated = rows is not None or per_row is not None
    if seated and capacity is not None:
        raise Unprocessable("Give either capacity (general admission) or rows and seats_per_row (seated)",
                            errors={"capacity": ["not allowed together with rows/seats_per_row"]})
    if seated and (rows is None or per_row is None):
        missing = "rows" if rows is None else "seats_per_row"
        raise Unprocessable("A seated section needs rows and seats_per_row", errors={missing: ["required"]})
    if not seated and capacity is None:
        raise Unprocessable("Give capacity (general admission) or rows and seats_per_row (seated)",
                            errors={"capacity": ["required for a general admission section"]})
    section = Section(
        event_id=event.id,
        name=data["name"],
        kind=SECTION_SEATED if seated else SECTION_GENERAL,
        price_cents=data["price_cents"],
        currency=data["currency"].upper(),
        capacity=rows * per_row if seated else capacity,
    )
    db.session.add(section)
    try:
        db.session.flush()
    except IntegrityError as exc:  # the unit of work rolls back
        if not is_duplicate_key(exc):  # only unique (event_id, name) is this section's name taken
            raise
        raise Conflict(f"Section {data['name']!r} already exists in this event", reason="section_exists") from exc
    if seated:
        db.session.execute(
            Seat.__table__.insert(),
            [
                {"section_id": section.id, "row_label": row_label(r), "number": n, "state": SEAT_AVAILABLE}
                for r in range(rows)
                for n in range(1, per_row + 1)
            ],
        )
    db.session.flush()
    return section


def _expired_held_quantity(section_ids: list[int], now: datetime) -> dict[int, int]:
    from app.booking.models import HELD, Reservation

    rows = db.session.execute(
        select(Reservation.section_id, func.coalesce(func.sum(Reservation.quantity), 0))
        .where(Reservation.section_id.in_(section_ids), Reservation.status == HELD,
               Reservation.hold_expires_at <= now)
        .group_by(Reservation.section_id)
    ).all()
    return {section_id: int(qty) for section_id, qty in rows}


def seat_is_free(now: datetime) -> ColumnElement[bool]:
    """SQL condition: a seat that can be sold now (available, or held past its expiry)."""
    return or_(Seat.state == SEAT_AVAILABLE, and_(Seat.state == SEAT_HELD, Seat.held_until <= now))


def availability(sections: list[Section], now: datetime | None = None) -> dict[int, int]:
    """Units a buyer could hold right now, per section id, from MySQL (the truth)."""
    now = now or utcnow()
    result: dict[int, int] = {}
    general = [s for s in sections if s.kind == SECTION_GENERAL]
    seated = [s for s in sections if s.kind == SECTION_SEATED]
    if general:
        expired = _expired_held_quantity([s.id for s in general], now)
        for s in general:
            result[s.id] = max(0, s.capacity - s.sold - (s.held - expired.get(s.id, 0)))
    if seated:
        counts = dict(
            db.session.execute(
                select(Seat.section_id, func.count(Seat.id))
                .where(Seat.section_id.in_([s.id for s in seated]), seat_is_free(now))
                .group_by(Seat.section_id)
            ).all()
        )
        for s in seated:
            result[s.id] = int(counts.get(s.id, 0))
    return result


def sold_and_held(sections: list[Section], now: datetime | None = None) -> dict[int, tuple[int, int]]:
    """(units sold, units in live holds) per section id, from MySQL: the counters of a general
    admission section (less its lapsed holds), the seats' own states for a seated one (whose
    counters are not kept: each seat is its own record)."""
    now = now or utcnow()
    result: dict[int, tuple[int, int]] = {}
    general = [s for s in sections if s.kind == SECTION_GENERAL]
    seated = [s for s in sections if s.kind == SECTION_SEATED]
    if general:
        expired = _expired_held_quantity([s.id for s in general], now)
        for s in general:
            result[s.id] = (s.sold, max(0, s.held - expired.get(s.id, 0)))
    if seated:
        rows = db.session.execute(
            select(Seat.section_id, func.sum(case((Seat.state == SEAT_SOLD, 1), else_=0)),
                   func.sum(case((and_(Seat.state == SEAT_HELD, Seat.held_until > now), 1), else_=0)))
            .where(Seat.section_id.in_([s.id for s in seated])).group_by(Seat.section_id)).all()
        counts = {section_id: (int(sold or 0), int(held or 0)) for section_id, sold, held in rows}
        for s in seated:
            result[s.id] = counts.get(s.id, (0, 0))
    return result


def seat_map(event_id: int, section_id: int) -> tuple[Section, list[dict[str, Any]]]:
    section = get_section(event_id, section_id)
    if section.kind != SECTION_SEATED:
        raise Unprocessable("This is a general admission section: it has no seat map", reason="not_seated")
    now = utcnow()
    seats = db.session.scalars(select(Seat).where(Seat.section_id == section_id).order_by(Seat.id)).all()
    out = []
    for seat in seats:
        state = seat.state
        if state == SEAT_HELD and seat.held_until is not None and seat.held_until <= now:
            state = SEAT_AVAILABLE
        out.append({"id": seat.id, "row": seat.row_label, "number": seat.number, "label": seat.label,
                    "state": state})
    return section, out


def set_capacity(event_id: int, section_id: int, capacity: int) -> Section:
    """Change a general admission section's capacity (admin). Added units go on sale at once
    (to the section's waitlist first, like any release); a smaller capacity may not go below what
    is sold and held. The change is one conditional UPDATE."""
    from sqlalchemy import update

    from app.booking import gate

    section = get_section(event_id, section_id)
    if section.kind != SECTION_GENERAL:
        raise Unprocessable("A seated section's capacity is its seat map", reason="seated_section",
                            errors={"capacity": ["only for general admission sections"]})
    before = section.capacity
    changed = db.session.execute(
        update(Section).where(Section.id == section_id, Section.sold + Section.held <= capacity)
        .values(capacity=capacity).execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        raise Conflict("The capacity cannot go below the tickets sold and held", reason="capacity_below_sold")
    db.session.refresh(section)
    if capacity > before:
        call_after_commit(db.session(), lambda: gate.give_back(event_id, section_id, capacity - before))
    elif capacity < before:  # fewer units: the gate is derived again from MySQL, once committed
        call_after_commit(db.session(), lambda: gate.reconcile([event_id]))
    return section
