"""The API's error messages in the page's language (Accept-Language, the `lang` cookie the web app
sets from the account, `?lang=`): a translation per `reason`, which itself never changes, so
programs keep matching on it. A reason with no entry keeps its English message; so does English."""

from __future__ import annotations

from typing import Any

from flask import has_request_context
from flask_babel import get_locale
from flask_babel import lazy_gettext as _  # lazy: rendered in the request's language

from app.errors import AppError

# reason -> text; "%(name)s" takes the error's params (a text whose params are missing is skipped)
TEXTS: dict[str, Any] = {
    "sold_out": _("Sold out."),
    "limit_exceeded": _("At most %(max)s tickets per person for this event."),
    "limit_exceeded_held": _("At most %(max)s tickets per person for this event; you have %(held)s."),
    "hold_expired": _("Your hold has expired."),
    "admission_required": _("Wait for your turn in the waiting room first."),
    "admission_expired": _("Your turn in the waiting room has ended. Join again."),
    "admission_inactive": _("Your turn in the waiting room has ended. Join again."),
    "not_open_yet": _("The waiting room has not opened yet."),
    "sale_closed": _("This sale is over."),
    "email_unverified": _("Confirm your e-mail address before buying (Account page)."),
    "rate_limited": _("Too many requests. Wait a moment and try again."),
    "payment_in_progress": _("A payment for this hold is in progress."),
    "card_declined": _("Your card was declined."),
    "not_refundable": _("This ticket cannot be refunded."),
    "refund_deadline_passed": _("Refunds for this event have closed."),
    "not_sold_out": _("Tickets are still on sale: buy them instead of waiting."),
    "offer_gone": _("This offer is no longer open."),
    "not_waitlisted": _("You are not on this waitlist."),
    "too_many_channels": _("You have the most channels an account can have; remove one first."),
    "code_wrong": _("That code is not right."),
    "access_code_invalid": _("This access code is not valid for this sale."),
    "access_code_other_email": _("This access code was sent to another account's e-mail address."),
    "access_code_used_up": _("This access code has been used as many times as it allows."),
    "access_code_not_valid_yet": _("This access code is not valid yet."),
    "access_code_expired": _("This access code has expired."),
    "access_code_attempts_exceeded": _("Too many wrong access codes. Try again later."),
    "section_reserved": _("This section is reserved for the %(lane)s lane for now."),
    "code_expired": _("That code has expired. Ask for a new one."),
    "too_many_attempts": _("Too many wrong codes. Ask for a new one."),
    "bad_credentials": _("Wrong e-mail address or password."),
    "email_taken": _("An account with this e-mail address exists already."),
    "reservation_not_found": _("Reservation not found."),
    "order_not_found": _("Order not found."),
    "event_not_found": _("Event not found."),
    "not_staff": _("Only the event's staff can check tickets in."),
    "token_expired": _("Your session has expired. Log in again."),
}


def localize(exc: AppError) -> str | None:
    if not has_request_context() or not exc.reason or str(get_locale() or "en") == "en":
        return None
    key = f"{exc.reason}_held" if exc.reason == "limit_exceeded" and "held" in exc.params else exc.reason
    text = TEXTS.get(key)
    if text is None:
        return None
    try:
        return str(text) % exc.params  # (a mapping leaves a text without placeholders as it is)
    except KeyError:  # the raise site gave no figure this text needs
        return None
