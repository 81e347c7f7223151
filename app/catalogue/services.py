"""Catalogue rules: creating events and sections, and live availability.

Availability never counts a hold past its expiry, even before the sweeper has released it.
"""

from __future__ import annotations

import string
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.catalogue.models import (
    SEAT_AVAILABLE,
    SEAT_HELD,
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
    """An admin's edit of what a sale shows and its refund policy (the view copies the waiting
    room's settings to Redis once this commits)."""
    event = get_event(event_id)
    for field, value in changes.items():
        setattr(event, field, value)
    db.session.flush()
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
