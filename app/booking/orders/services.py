"""Orders and tickets: written in the transaction that confirms a reservation, read by the fan's
pages and the door. These functions never commit (the caller's unit of work does)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.booking.models import Refund, Reservation
from app.booking.orders.codes import new_order_number, normalise_order_number, ticket_code
from app.booking.orders.models import TICKET_REFUNDED, TICKET_VALID, Order, Ticket
from app.catalogue.models import Event, Seat, Section
from app.errors import NotFound
from app.extensions import db
from app.notifications.services import record_receipt
from app.outbox.services import record_event
from app.pagination import paginate
from app.tasking import send_task_after_commit

# no booking fee is charged today; every line and order carries the field, so one can be added
# without changing what a receipt or the API looks like (docs/orders.md)
FEE_CENTS = 0


def place_order(session: Session, res: Reservation, payment_id: str, payment_ref: str | None) -> Order:
    """The order of a reservation being confirmed (its row is locked by the caller): its lines,
    one ticket per seat or unit, the OrderPlaced event and the receipt e-mail, all in this
    transaction. Confirming twice finds the first order."""
    existing = session.scalar(select(Order).where(Order.reservation_id == res.id))
    if existing is not None:
        return existing
    section = session.get(Section, res.section_id)
    seats = (list(session.scalars(select(Seat).where(Seat.id.in_(res.seat_ids)).order_by(Seat.id)))
             if res.seat_ids else [])
    unit_price = res.amount_cents // res.quantity
    line = {"section_id": section.id, "section": section.name, "kind": section.kind,
            "seats": [s.label for s in seats] or None, "quantity": res.quantity,
            "unit_price_cents": unit_price, "fee_cents": FEE_CENTS * res.quantity, "amount_cents": res.amount_cents}
    number = new_order_number()
    while session.scalar(select(Order.id).where(Order.number == number)) is not None:
        number = new_order_number()
    order = Order(number=number, reservation_id=res.id, user_id=res.user_id, event_id=res.event_id,
                  currency=res.currency, subtotal_cents=res.amount_cents, fee_cents=line["fee_cents"],
                  total_cents=res.amount_cents + line["fee_cents"], lines=[line], payment_id=payment_id,
                  payment_ref=payment_ref)
    session.add(order)
    session.flush()
    units = seats or [None] * res.quantity
    session.add_all([Ticket(order_id=order.id, unit=i, event_id=res.event_id, section_id=res.section_id,
                            seat_id=seat.id if seat else None, label=seat.label if seat else f"GA {i}",
                            price_cents=unit_price, currency=res.currency, holder_user_id=res.user_id,
                            status=TICKET_VALID)
                     for i, seat in enumerate(units, start=1)])
    session.flush()
    record_event(session, "OrderPlaced", "order", order.id, {
        "order_id": order.id, "number": order.number, "reservation_id": res.id, "user_id": res.user_id,
        "event_id": res.event_id, "total_cents": order.total_cents, "currency": order.currency,
        "tickets": len(units)})
    buyer = session.get(User, res.user_id)
    # the verified e-mail (production requires one to buy); with verification switched off in
    # development, the account's address
    verified = buyer is not None and (buyer.email_verified_at is not None
                                      or not current_app.config["REQUIRE_VERIFIED_EMAIL"])
    if verified and buyer.deleted_at is None:
        event = session.get(Event, res.event_id)
        receipt = record_receipt(session, buyer.id, res.event_id, order.id, event.starts_at)
        send_task_after_commit("notifications.send", [receipt], queue="notifications")
    return order


def void_tickets(session: Session, reservation_id: str) -> None:
    """A refunded reservation's tickets no longer open the door."""
    order_id = select(Order.id).where(Order.reservation_id == reservation_id).scalar_subquery()
    session.execute(update(Ticket).where(Ticket.order_id == order_id).values(status=TICKET_REFUNDED)
                    .execution_options(synchronize_session=False))


# --- views ---------------------------------------------------------------------------------------

def order_numbers(reservation_ids: list[str]) -> dict[str, str]:
    """The order number of each confirmed reservation among these: one query for a page."""
    if not reservation_ids:
        return {}
    return dict(db.session.execute(select(Order.reservation_id, Order.number)
                                   .where(Order.reservation_id.in_(reservation_ids))).all())


def _refund_view(refund: Refund | None, owner_id: int) -> dict[str, Any] | None:
    """The refund's own view (booking), and who asked for it."""
    from app.booking.refunds import refund_view  # booking places orders: imported here, not at the top

    if refund is None:
        return None
    return {**refund_view(refund), "by": "you" if refund.requested_by == owner_id else "organiser",
            "requested_at": refund.created_at}


def _event_view(event: Event) -> dict[str, Any]:
    return {"id": event.id, "name": event.name, "venue": event.venue, "starts_at": event.starts_at}


def ticket_view(ticket: Ticket, section_name: str) -> dict[str, Any]:
    return {"ticket_id": ticket.id, "unit": ticket.unit, "section_id": ticket.section_id, "section": section_name,
            "seat": ticket.label if ticket.seat_id else None, "label": ticket.label,
            "price_cents": ticket.price_cents, "currency": ticket.currency, "status": ticket.status,
            "checked_in_at": ticket.checked_in_at, "code": ticket_code(ticket.event_id, ticket.id),
            "qr_url": f"/tickets/{ticket.id}/qr.svg", "print_url": f"/tickets/{ticket.id}"}


def _views(orders: list[Order]) -> list[dict[str, Any]]:
    if not orders:
        return []
    session = db.session
    ids = [o.id for o in orders]
    tickets: dict[str, list[Ticket]] = {}
    for t in session.scalars(select(Ticket).where(Ticket.order_id.in_(ids)).order_by(Ticket.order_id, Ticket.unit)):
        tickets.setdefault(t.order_id, []).append(t)
    events = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_({o.event_id for o in orders})))}
    section_ids = {t.section_id for ts in tickets.values() for t in ts}
    sections = dict(session.execute(select(Section.id, Section.name).where(Section.id.in_(section_ids))).all()) \
        if section_ids else {}
    refunds = {r.reservation_id: r for r in session.scalars(
        select(Refund).where(Refund.reservation_id.in_([o.reservation_id for o in orders])))}
    views = []
    for o in orders:
        refund = refunds.get(o.reservation_id)
        views.append({
            "order_id": o.id, "number": o.number, "reservation_id": o.reservation_id,
            "event": _event_view(events[o.event_id]), "lines": o.lines, "currency": o.currency,
            "subtotal_cents": o.subtotal_cents, "fee_cents": o.fee_cents, "total_cents": o.total_cents,
            "payment_state": "paid", "payment_ref": o.payment_ref,
            "refund_state": refund.status if refund else "none", "refund": _refund_view(refund, o.user_id),
            "created_at": o.created_at,
            "tickets": [ticket_view(t, sections.get(t.section_id, "")) for t in tickets.get(o.id, [])],
        })
    return views


def list_orders(user_id: int, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    rows, total = paginate(select(Order).where(Order.user_id == user_id)
                           .order_by(Order.created_at.desc(), Order.id), page, page_size)
    return _views(rows), total


def get_order(number: str, user_id: int, *, admin: bool = False) -> dict[str, Any]:
    """One order by its number: its buyer's, or any for an admin (a phone call to support)."""
    order = db.session.scalar(select(Order).where(Order.number == normalise_order_number(number)))
    if order is None or (order.user_id != user_id and not admin):
        raise NotFound("Order not found", reason="order_not_found")
    return _views([order])[0]


def order_view(order_id: str) -> dict[str, Any]:
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound("Order not found", reason="order_not_found")
    return _views([order])[0]


def holder_ticket(ticket_id: str, user_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ticket, its order) for the ticket's holder."""
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None or ticket.holder_user_id != user_id:
        raise NotFound("Ticket not found", reason="ticket_not_found")
    order = order_view(ticket.order_id)
    return next(t for t in order["tickets"] if t["ticket_id"] == ticket_id), order


def sold_and_checked_in(event_id: int) -> list[dict[str, Any]]:
    """Per section: tickets sold (not refunded) and checked in."""
    rows = db.session.execute(
        select(Ticket.section_id, func.count().label("sold"), func.count(Ticket.checked_in_at).label("checked_in"))
        .where(Ticket.event_id == event_id, Ticket.status == TICKET_VALID).group_by(Ticket.section_id)).all()
    counts = {r.section_id: (r.sold, r.checked_in) for r in rows}
    sections = db.session.execute(select(Section.id, Section.name).where(Section.event_id == event_id)
                                  .order_by(Section.id)).all()
    return [{"section_id": s.id, "name": s.name, "sold": counts.get(s.id, (0, 0))[0],
             "checked_in": counts.get(s.id, (0, 0))[1]} for s in sections]


# --- operators -------------------------------------------------------------------------------------

def event_orders(event_id: int, query: str | None, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """An event's orders, newest first, each with its buyer; ``query`` finds an order by its number
    (as a fan reads it) or its buyer by e-mail (the start of it is enough)."""
    statement = (select(Order).join(User, User.id == Order.user_id).where(Order.event_id == event_id)
                 .order_by(Order.created_at.desc(), Order.id))
    if query and query.strip():
        text = query.strip()
        statement = statement.where(or_(Order.number == normalise_order_number(text),
                                        User.email.like(text.lower().replace("%", r"\%").replace("_", r"\_") + "%")))
    rows, total = paginate(statement, page, page_size)
    buyers = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_({o.user_id for o in rows})))} \
        if rows else {}
    views = _views(rows)
    for view, order in zip(views, rows, strict=True):
        buyer = buyers[order.user_id]
        view["buyer"] = {"user_id": buyer.id, "email": buyer.email, "name": buyer.name}
    return views, total


ATTENDEE_COLUMNS = ("name", "email", "order", "section", "seat", "ticket", "status", "checked_in_at", "gate")


def attendee_batch(event_id: int, after: str = "", limit: int = 1000) -> list[tuple[Any, ...]]:
    """Up to ``limit`` tickets of an event after ticket id ``after`` (keyset: a large event is read
    in batches, never whole), each with its holder: (name, e-mail, order, section, seat, ticket id,
    status, checked in at, gate)."""
    rows = db.session.execute(
        select(User.name, User.email, Order.number, Section.name, Ticket.seat_id, Ticket.label, Ticket.id,
               Ticket.status, Ticket.checked_in_at, Ticket.checked_in_gate)
        .join(Order, Order.id == Ticket.order_id).join(User, User.id == Ticket.holder_user_id)
        .join(Section, Section.id == Ticket.section_id)
        .where(Ticket.event_id == event_id, Ticket.id > after).order_by(Ticket.id).limit(limit)).all()
    return [(r[0], r[1], r[2], r[3], r[5] if r[4] else "", r[6], r[7], r[8].isoformat() if r[8] else "",
             r[9] or "") for r in rows]
