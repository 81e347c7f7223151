"""What is sold, held and free per section, from MySQL (the truth)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, column, func, or_, select, table

from app.catalogue.models import SEAT_AVAILABLE, SEAT_HELD, SEAT_SOLD, SECTION_GENERAL, SECTION_SEATED, Seat, Section
from app.db import utcnow
from app.extensions import db

# Booking's holds, read here by the columns inventory needs: booking takes and returns units
# through this package, so inventory reads the table rather than import booking's model
# (tests/unit/test_architecture.py holds both to the same names and status).
RESERVATIONS = table("reservations", column("section_id"), column("quantity"), column("status"),
                     column("hold_expires_at"))
HELD = "held"


def _expired_held_quantity(section_ids: list[int], now: datetime) -> dict[int, int]:
    r = RESERVATIONS.c
    rows = db.session.execute(
        select(r.section_id, func.coalesce(func.sum(r.quantity), 0))
        .where(r.section_id.in_(section_ids), r.status == HELD, r.hold_expires_at <= now)
        .group_by(r.section_id)
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
