"""Where a section's units go when a hold ends, is sold, or is refunded: MySQL first, in the
caller's unit of work (every change one conditional UPDATE), then Redis after COMMIT.

A released unit (a hold that expires or is cancelled, a refunded sale) flows, in this order:
1. MySQL: its seat turns `available` again, or the section's `held` / `sold` counter drops (this file);
2. after COMMIT, Redis (app/redis/lua/put_back.lua, through gate.release_hold / gate.give_back):
   - to the section's waitlist pool when fans wait there (only offers are made from the pool:
     app/booking/waitlist.py, app/redis/lua/make_offers.lua), or else
   - to the sold-out gate, where the next reserve takes it (app/redis/lua/take.lua);
   - and off the owner's live unit count (the per-user limit's fast check).
   A hold whose deadline passed may have been reclaimed by the gate already (take.lua): its
   units are then not given back twice (release_hold.lua removes the hold once).
3. the reconciler (gate.reconcile, every 30 s) resets a gate that drifted from MySQL's count.

A pending request that never became a hold is not in MySQL: its units go back through
gate.give_back directly (app/booking/services.py, writer.py).
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.catalogue.models import SEAT_AVAILABLE, SEAT_HELD, SEAT_SOLD, Seat, Section
from app.db import lock_rows
from app.inventory import gate
from app.tasking import call_after_commit


class HeldUnits(NamedTuple):
    """A reservation's units as inventory sees them (booking's Reservation.units())."""
    event_id: int
    section_id: int
    reservation_id: str
    quantity: int
    seat_ids: list[int] | None
    user_id: int


def _back_to_sale(session: Session, hold: HeldUnits, seat_state: str, counter: str) -> None:
    """The units leave ``seat_state`` (a seat) or the section's ``counter`` (general admission) in
    MySQL: only seats still ours (after a hold's deadline another buyer may have taken some), and
    never a counter below zero."""
    if hold.seat_ids:
        session.execute(update(Seat).where(Seat.reservation_id == hold.reservation_id, Seat.state == seat_state)
                        .values(state=SEAT_AVAILABLE, reservation_id=None, held_until=None)
                        .execution_options(synchronize_session=False))
    else:
        column = getattr(Section, counter)
        session.execute(update(Section).where(Section.id == hold.section_id, column >= hold.quantity)
                        .values({counter: column - hold.quantity}).execution_options(synchronize_session=False))


def release_held(session: Session, hold: HeldUnits) -> None:
    """A hold expired or was cancelled: its units back to sale."""
    _back_to_sale(session, hold, SEAT_HELD, "held")
    call_after_commit(session, lambda: gate.release_hold(hold.event_id, hold.section_id, hold.reservation_id,
                                                         hold.quantity, give_back=True, user_id=hold.user_id))


def sell_held(session: Session, hold: HeldUnits) -> bool:
    """A paid hold's units from held to sold (under the reservation's lock); False if they are no
    longer ours (the hold lapsed and someone else took the seats). Sold units leave the gate's
    holds after COMMIT and never come back to it."""
    if hold.seat_ids:
        # all or nothing: the seats still ours are counted under their row locks before any is sold
        # (selling the rest of a broken hold would leave them SOLD to nobody)
        ours = lock_rows(session, select(Seat.id).where(Seat.reservation_id == hold.reservation_id,
                                                        Seat.state == SEAT_HELD)
                         .order_by(Seat.id).with_for_update()).scalars().all()
        if len(ours) != len(hold.seat_ids):
            return False
        session.execute(update(Seat).where(Seat.id.in_(ours)).values(state=SEAT_SOLD, held_until=None)
                        .execution_options(synchronize_session=False))
    elif session.execute(
            update(Section).where(Section.id == hold.section_id, Section.held >= hold.quantity)
            .values(held=Section.held - hold.quantity, sold=Section.sold + hold.quantity)
            .execution_options(synchronize_session=False)).rowcount != 1:
        return False
    call_after_commit(session, lambda: gate.release_hold(hold.event_id, hold.section_id, hold.reservation_id,
                                                         hold.quantity, give_back=False))
    return True


def release_sold(session: Session, hold: HeldUnits) -> None:
    """A sale was refunded: its units back to sale (the waitlist's offers first)."""
    _back_to_sale(session, hold, SEAT_SOLD, "sold")
    call_after_commit(session, lambda: gate.give_back(hold.event_id, hold.section_id, hold.quantity,
                                                      user_id=hold.user_id))
