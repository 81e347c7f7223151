"""The receipt of an order: an e-mail in the fan's language, as text and HTML, with the order's
lines, a link to the tickets and a calendar file (.ics) of the event. Built when it is sent
(app/notifications/services.deliver), from the order as it is then (a refund shows)."""

from __future__ import annotations

from datetime import timedelta

import icalendar
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import Row

from app.auth.models import User
from app.booking.orders.services import order_view
from app.catalogue.models import Event
from app.channels import Message
from app.db import utcnow
from app.extensions import db
from app.notifications.services import render_email

# how long the calendar entry lasts: an event has a start and no end in this model
CALENDAR_DURATION = timedelta(hours=3)


def receipt_message(order_id: str, user: Row | User) -> Message:
    order = order_view(order_id)
    event = db.session.get(Event, order["event"]["id"])
    base = current_app.config["PUBLIC_BASE_URL"]
    links = {"tickets": f"{base}/tickets", "order": f"{base}/orders/{order['number']}"}
    with force_locale(user.locale or "en"):
        title = _("Your order %(number)s: %(event)s", number=order["number"], event=event.name)
    text, html = render_email("receipt", user.locale, order=order, event=event, links=links, user=user)
    return Message(title=title, body=text, html=html, deep_link="", web_link=links["order"], event_id=event.id,
                   admitted_until_iso=event.starts_at.isoformat(), kind="order_receipt", to=user.email,
                   attachments=(("event.ics", "text/calendar", calendar_file(order, event)),))


def calendar_file(order: dict, event: Event) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//tickets//order receipt//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    entry = icalendar.Event()
    entry.add("uid", f"{order['order_id']}@tickets")
    entry.add("dtstamp", utcnow())
    entry.add("dtstart", event.starts_at)
    entry.add("dtend", event.starts_at + CALENDAR_DURATION)
    entry.add("summary", event.name)
    entry.add("location", event.venue)
    entry.add("description", f"{order['number']}: " + ", ".join(t["label"] for t in order["tickets"]))
    calendar.add_component(entry)
    return calendar.to_ical()
