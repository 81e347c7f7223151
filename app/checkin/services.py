"""Check-in at the door: a scanned code is verified with no database round trip (its MAC and its
event), then the ticket is marked used by one conditional UPDATE, so of two scanners scanning
the same ticket at the same moment exactly one admits it. Every scan is recorded. These
functions never commit (the view's unit of work does)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from app.auth.models import User
from app.auth.services import is_admin_now, normalise_email
from app.booking.orders.codes import verify_ticket_code
from app.booking.orders.models import TICKET_REFUNDED, TICKET_VALID, Ticket
from app.booking.orders.services import sold_and_checked_in
from app.catalogue.models import Section
from app.catalogue.services import get_event
from app.checkin.models import ADMITTED, ALREADY_USED, INVALID, REFUNDED, WRONG_EVENT, EventStaff, Scan
from app.db import insert_ignore, utcnow
from app.errors import Forbidden, NotFound
from app.extensions import db
from app.observability.metrics import CHECKINS
from app.tasking import call_after_commit


def require_staff(event_id: int, user_id: int) -> None:
    """Scanning needs the event's staff role (granted by an admin), or admin."""
    get_event(event_id)
    if db.session.get(EventStaff, (event_id, user_id)) is None and not is_admin_now(user_id):
        raise Forbidden("Only the event's staff can check tickets in", reason="not_staff")


def scan(event_id: int, code: str, gate: str, staff_user_id: int) -> dict[str, Any]:
    session = db.session
    now = utcnow()
    parsed = verify_ticket_code(code)
    ticket: Ticket | None = None
    if parsed is None:
        result = INVALID
    elif parsed.event_id != event_id:
        result = WRONG_EVENT
    else:
        admitted = session.execute(
            update(Ticket).where(Ticket.id == parsed.ticket_id, Ticket.event_id == event_id,
                                 Ticket.status == TICKET_VALID, Ticket.checked_in_at.is_(None))
            .values(checked_in_at=now, checked_in_gate=gate, checked_in_by=staff_user_id)
            .execution_options(synchronize_session=False)).rowcount == 1
        ticket = session.scalar(select(Ticket).where(Ticket.id == parsed.ticket_id)
                                .execution_options(populate_existing=True))
        if admitted:
            result = ADMITTED
        elif ticket is None or ticket.event_id != event_id:
            result = INVALID  # signed, but no such ticket here
        elif ticket.status == TICKET_REFUNDED:
            result = REFUNDED
        else:
            result = ALREADY_USED
    session.add(Scan(event_id=event_id, ticket_id=parsed.ticket_id if parsed else None,
                     staff_user_id=staff_user_id, gate=gate, result=result, scanned_at=now))
    call_after_commit(session, lambda: CHECKINS.labels(result=result).inc())
    return _answer(result, ticket)


def _answer(result: str, ticket: Ticket | None) -> dict[str, Any]:
    body: dict[str, Any] = {"result": result, "admitted": result == ADMITTED, "ticket": None}
    if ticket is not None:
        section = db.session.get(Section, ticket.section_id)
        body["ticket"] = {"ticket_id": ticket.id, "section": section.name if section else "", "label": ticket.label,
                          "status": ticket.status}
        if result in (ADMITTED, ALREADY_USED):
            body["checked_in_at"], body["gate"] = ticket.checked_in_at, ticket.checked_in_gate
    return body


def stats(event_id: int) -> dict[str, Any]:
    sections = sold_and_checked_in(event_id)
    return {"event_id": event_id, "sold": sum(s["sold"] for s in sections),
            "checked_in": sum(s["checked_in"] for s in sections), "sections": sections}


# --- staff -----------------------------------------------------------------------------------------

def grant(event_id: int, email: str, granted_by: int) -> dict[str, Any]:
    get_event(event_id)
    user = db.session.scalar(select(User).where(User.email == normalise_email(email), User.deleted_at.is_(None)))
    if user is None:
        raise NotFound("No account has that e-mail", reason="user_not_found")
    insert_ignore(db.session, EventStaff.__table__, [{"event_id": event_id, "user_id": user.id,
                                                      "granted_by": granted_by, "granted_at": utcnow()}])
    return {"user_id": user.id, "email": user.email, "name": user.name}


def revoke(event_id: int, user_id: int) -> None:
    db.session.execute(delete(EventStaff).where(EventStaff.event_id == event_id, EventStaff.user_id == user_id))


def staff_of(event_id: int) -> list[dict[str, Any]]:
    get_event(event_id)
    rows = db.session.execute(select(User.id, User.email, User.name, EventStaff.granted_at)
                              .join(EventStaff, EventStaff.user_id == User.id)
                              .where(EventStaff.event_id == event_id).order_by(User.id)).all()
    return [{"user_id": r.id, "email": r.email, "name": r.name, "granted_at": r.granted_at} for r in rows]
