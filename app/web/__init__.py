"""The web app: pages for fans and the operators' live-sale console, served by the same Flask app.

Server-rendered Jinja shells with small JavaScript modules (app/web/static), no build step and
no CDN: every asset is in the repository or in a pinned package (Swagger UI: swagger-ui-bundle).
The pages call the REST API with the browser's httpOnly cookies (POST /api/auth/session) and
the double-submit CSRF header; bearer headers keep working for API clients.

Language: Korean or English (Flask-Babel, app/web/translations), from `?lang=`, the `lang` cookie
(set at login from the account's locale) or the browser's Accept-Language.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
)
from flask_babel import Babel, get_locale
from flask_babel import gettext as _

from app.auth.locale import remember_language
from app.jsonio import NO_SNIFF

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/assets")
babel = Babel()


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    wanted = request.args.get("lang") or request.cookies.get("lang")
    if wanted in languages:
        return wanted
    return request.accept_languages.best_match(languages) or current_app.config["BABEL_DEFAULT_LOCALE"]


def init_web(app: Flask) -> None:
    import os

    babel.init_app(app, locale_selector=select_locale,
                   default_translation_directories=os.path.join(os.path.dirname(__file__), "translations"))
    from app.web.error_texts import localize

    app.register_blueprint(bp)
    app.jinja_env.filters["money"] = _money
    app.extensions["error_localizer"] = localize


def _money(minor_units: int, currency: str, locale: str | None = None) -> str:
    from app.money import format_money

    return format_money(minor_units, currency, locale or str(get_locale() or "en"))


# strings the page scripts show, translated on the server (one catalogue for pages and scripts)
def script_texts() -> dict[str, str]:
    return {
        "position": _("Your position"), "ahead": _("people ahead of you"), "eta": _("Estimated wait"),
        "eta_unknown": _("Estimating your wait…"), "minutes": _("min"), "seconds": _("s"),
        "paused": _("The sale is paused. Your place is kept."),
        "opens_in": _("The sale opens in"), "admitted": _("It's your turn!"),
        "admitted_body": _("You can now choose your tickets."), "continue": _("Continue to tickets"),
        "expired": _("Your place expired. Join again."), "sold_out": _("Sold out"),
        "taken": _("Someone else was faster: those seats are taken. Pick others."),
        "pending": _("Requested…"), "held": _("Held for you"), "confirmed": _("Confirmed"),
        "rejected": _("Not available"), "hold_expired": _("Your hold expired."),
        "declined": _("Your card was declined."), "error": _("Something went wrong. Try again."),
        "pick_seats": _("Pick your seats"), "notify_on": _("We'll tell you at"),
        "live": _("live"), "polling": _("updating"), "login_needed": _("Log in to continue."),
        "solving": _("Checking your browser before you join (a few seconds at most)…"),
        "lane": _("Your access code's lane:"), "lane_open_now": _("Open now"),
        "lane_release_now": _("Release its sections now"),
        "lottery_registered": _("You are in the draw. We will tell you the outcome when registration closes."),
        "lottery_won": _("You won! Your presale code:"), "lottery_join": _("Join the presale with it"),
        "lottery_standby": _("Not this time, but you are on the standby list, number"),
        "lottery_lost": _("Not this time. Good luck at the general sale!"),
        "lottery_drawn": _("Drawn; entrants"), "lottery_winners": _("winners"),
        "lottery_promoted": _("promoted from the standby list"), "lottery_open": _("Registration open until"),
        "lottery_registered_count": _("registered"),
        "expires_in": _("Expires in"), "available": _("available"), "turn_title": _("Your turn!"),
        "console_paused": _("Paused: nobody is admitted until you resume."), "console_running": _("Running"),
        "channel_email": _("E-mail"), "channel_sms": _("Text message (SMS)"), "channel_push": _("Push"),
        "code": _("Code"), "verify": _("Verify"), "remove": _("Remove"),
        "general_admission": _("General admission"), "paying": _("Paying…"),
        "authenticating": _("Your bank is checking the payment (3-D Secure)…"),
        "decline_card_declined": _("Your card was declined."),
        "decline_insufficient_funds": _("Your card was declined: not enough funds."),
        "decline_expired_card": _("Your card has expired."),
        "decline_incorrect_cvc": _("The card's security code is wrong."),
        "decline_payment_intent_authentication_failure": _("Your bank's 3-D Secure check failed."),
        "decline_authentication_abandoned": _("The 3-D Secure check was not finished in time."),
        "order": _("Order"), "print": _("Print"), "seat": _("Seat"), "section": _("Section"),
        "price": _("Price"), "total": _("Total"), "refunded": _("Refunded"), "checked_in": _("Checked in"),
        "valid": _("Valid"), "refund_none": "", "refund_pending": _("Refund in progress"),
        "refund_succeeded": _("Refunded"), "refund_declined": _("Refund declined"),
        "no_orders": _("No tickets yet."), "refund": _("Refund"), "row": _("Row"),
        "email_verified": _("Your e-mail address is verified: you can buy tickets."),
        "code_sent": _("A new code is on its way to your e-mail."),
        "sold_out_waitlist": _("Sold out. Join the waitlist to get the next tickets that come back."),
        "offer_for": _("Tickets offered to you:"), "waiting_position": _("Your place on the waitlist"),
        "offer_expires": _("The offer ends in"), "buy_now": _("Buy now"), "decline": _("Decline"),
        "units_ahead": _("tickets wanted ahead of you"), "seated_section": _("Seated section"),
        "ga_section": _("General admission section"), "add_a_section": _("Add at least one section."),
        "not_waitlisted": _("You are on no waitlist of this event."), "saved": _("Saved."),
        "sale_opens": _("Sale opens"), "sale_closes": _("closes"),
        "webpush_on": _("This browser will tell you, even with the page closed."),
        "browser_notify_on": _("This browser will tell you while this page is open."),
        "scan_admitted": _("Admitted"), "scan_already_used": _("Already used"),
        "scan_refunded": _("Refunded ticket"), "scan_wrong_event": _("Ticket of another event"),
        "scan_invalid": _("Not a valid ticket"), "scan_at": _("at"),
    }


def csp_nonce() -> str:
    """This response's script nonce: the one inline script a page may run carries it (CSP)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


@bp.app_context_processor
def _page_context() -> dict[str, Any]:
    return {"locale": str(get_locale()), "texts": script_texts(), "languages": current_app.config["LANGUAGES"],
            "csp_nonce": csp_nonce}


@bp.after_app_request
def _security_headers(response: Response) -> Response:
    """Every response: no MIME sniffing. Every HTML page (the web app, Swagger UI): a CSP that loads
    nothing from a third party, runs no inline script but the one carrying this response's nonce,
    and cannot be framed; and no full URL leaves in a Referer."""
    headers = response.headers
    headers.setdefault(*NO_SNIFF)
    chosen = request.args.get("lang")
    if chosen and chosen != request.cookies.get("lang") and chosen in current_app.config["LANGUAGES"]:
        remember_language(response, chosen)  # a language picked in the header sticks (and the account, app.js)
    # a prefix test, not response.mimetype: this runs on every answer of the hot endpoints too
    if (headers.get("Content-Type") or "").startswith("text/html"):
        scripts = f"'self' 'nonce-{g.csp_nonce}'" if "csp_nonce" in g else "'self'"
        extra = {name: " " + " ".join(sources) for name, sources in g.get("csp_extra", {}).items()}
        headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            f"script-src {scripts}{extra.get('script-src', '')}; connect-src 'self'{extra.get('connect-src', '')}; "
            + (f"frame-src{extra['frame-src']}; " if "frame-src" in extra else "")
            + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response


# --- fans ----------------------------------------------------------------------------------------

@bp.get("/")
def events_page() -> str:
    from app.catalogue.services import list_events

    events, _total = list_events(1, 50)
    return render_template("events.html", events=events)


@bp.get("/events/<int:event_id>")
def event_page(event_id: int) -> str:
    from app.catalogue.services import get_event

    event = _or_404(get_event, event_id)
    return render_template("event.html", event=event, draw=_draw_or_none(event_id),
                           lottery=_lottery_or_none(event_id))


@bp.get("/events/<int:event_id>/lottery")
def lottery_page(event_id: int) -> str:
    """The sale's registration lottery: enter it, see the outcome (a winner's code), and check the
    draw in the browser as on the draw page."""
    from app.catalogue.services import get_event

    event = _or_404(get_event, event_id)
    return render_template("lottery.html", event=event, lottery=_lottery_or_none(event_id))


def _lottery_or_none(event_id: int) -> dict | None:
    from app.errors import NotFound
    from app.sales import lottery

    try:
        return lottery.document(event_id)
    except NotFound:
        return None


@bp.get("/events/<int:event_id>/draw")
def draw_page(event_id: int) -> str:
    """The sale's verifiable draw: the commitment, then the seed and a check of the order run in
    the browser, and the fan's own entrant id and place."""
    from app.catalogue.services import get_event

    return render_template("draw.html", event=_or_404(get_event, event_id), draw=_draw_or_none(event_id))


def _draw_or_none(event_id: int) -> dict | None:
    from app.errors import NotFound
    from app.queue import draws

    try:
        return draws.document(event_id)
    except NotFound:
        return None


@bp.get("/events/<int:event_id>/queue")
def queue_page(event_id: int) -> str:
    from app.catalogue.services import get_event

    return render_template("queue.html", event=_or_404(get_event, event_id))


@bp.get("/events/<int:event_id>/waitlist")
def waitlist_page(event_id: int) -> str:
    """The fan's waitlist places of an event and any offer, with its countdown (the offer notices
    link here)."""
    from app.catalogue.services import get_event

    return render_template("waitlist.html", event=_or_404(get_event, event_id))


@bp.get("/events/<int:event_id>/checkout")
def checkout_page(event_id: int) -> str:
    from app.catalogue.services import get_event

    cfg = current_app.config
    stripe_js = cfg["STRIPE_JS_URL"] if cfg["PAYMENT_PROVIDER"] == "stripe" else None
    if stripe_js:
        # Stripe.js loads from Stripe (localstripe under test), calls its API and frames its
        # 3-D Secure page: those origins, on this page only
        js, api = _origin(stripe_js), _origin(cfg.get("STRIPE_API_BASE") or "https://api.stripe.com")
        g.csp_extra = {"script-src": [js], "connect-src": sorted({js, api}),
                       "frame-src": sorted({js, "https://hooks.stripe.com"})}
    return render_template("checkout.html", event=_or_404(get_event, event_id), stripe_js=stripe_js)


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@bp.get("/tickets")
def tickets_page() -> str:
    return render_template("tickets.html")


@bp.get("/account")
def account_page() -> str:
    return render_template("account.html", next_url=_safe_next(request.args.get("next")))


@bp.get("/tickets/<ticket_id>/qr.svg")
def ticket_qr(ticket_id: str) -> Response:
    """A ticket's QR code (SVG) for its holder: the signed code the door verifies offline."""
    from flask_jwt_extended import verify_jwt_in_request

    from app.auth.jwt_setup import current_user_id
    from app.booking.orders.services import holder_ticket

    verify_jwt_in_request()
    ticket, _order = _or_404(holder_ticket, ticket_id, current_user_id())
    return Response(qr_svg(ticket["code"], ticket["label"]), mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=300"})


def qr_svg(code: str, label: str) -> bytes:
    import io

    import segno

    out = io.BytesIO()
    segno.make(code, error="m").save(out, kind="svg", scale=4, border=2, title=_("Ticket %(id)s", id=label))
    return out.getvalue()


def qr_markup(ticket: dict[str, Any]) -> Any:
    """A ticket's QR code as SVG to put in a page (segno's own markup; the label is escaped)."""
    from markupsafe import Markup

    return Markup(qr_svg(ticket["code"], ticket["label"]).decode())


@bp.get("/tickets/<ticket_id>")
def ticket_page(ticket_id: str) -> str | Response:
    """One ticket to print or show at the door: event, date, venue, section, seat, price, QR."""
    from app.auth.jwt_setup import current_user_id
    from app.booking.orders.services import holder_ticket

    if (redirect_to := _login_first(f"/tickets/{ticket_id}")) is not None:
        return redirect_to
    ticket, order = _or_404(holder_ticket, ticket_id, current_user_id())
    return render_template("ticket.html", ticket=ticket, order=order, qr=qr_markup(ticket))


@bp.get("/orders/<number>")
def order_page(number: str) -> str | Response:
    """An order: its lines, total, payment and refund, and its tickets (printable together)."""
    from app.auth.jwt_setup import current_user_id
    from app.booking.orders.services import get_order
    from app.booking.refunds import quote

    if (redirect_to := _login_first(f"/orders/{number}")) is not None:
        return redirect_to
    user_id = current_user_id()
    order = _or_404(get_order, number, user_id)
    qrs = {t["ticket_id"]: qr_markup(t) for t in order["tickets"]}
    return render_template("order.html", order=order, qrs=qrs, refund_quote=quote(order["reservation_id"], user_id))


def _login_first(here: str) -> Response | None:
    from flask_jwt_extended import verify_jwt_in_request

    if verify_jwt_in_request(optional=True) is None:
        return redirect(f"/account?next={here}")
    return None


# --- the door ------------------------------------------------------------------------------------

@bp.get("/staff/events/<int:event_id>/scan")
def scan_page(event_id: int) -> str | Response:
    """The scanner (the event's staff; its calls check the role again): camera where the browser
    has BarcodeDetector, manual entry always."""
    from app.auth.jwt_setup import current_user_id
    from app.catalogue.services import get_event
    from app.checkin.services import require_staff
    from app.errors import AppError

    if (redirect_to := _login_first(f"/staff/events/{event_id}/scan")) is not None:
        return redirect_to
    event = _or_404(get_event, event_id)
    try:
        require_staff(event_id, current_user_id())
    except AppError:
        abort(403)
    return render_template("scan.html", event=event)


# --- operators -----------------------------------------------------------------------------------

@bp.get("/console")
def console_index_page() -> str | Response:
    """The operators' start: every event with its console, and a new one."""
    from app.catalogue.services import list_events

    if (refused := _admins_only("/console")) is not None:
        return refused
    events, _total = list_events(1, 100)
    return render_template("console_index.html", events=events)


@bp.get("/console/events/new")
def console_new_event_page() -> str | Response:
    """Creating a sale (admins; its calls are the admin endpoints, which check it again)."""
    if (refused := _admins_only("/console/events/new")) is not None:
        return refused
    return render_template("console_new.html")


def _admins_only(here: str) -> Response | None:
    from flask_jwt_extended import get_jwt

    if (redirect_to := _login_first(here)) is not None:
        return redirect_to
    if "admin" not in get_jwt().get("roles", []):
        abort(403)
    return None


@bp.get("/console/events/<int:event_id>")
def console_page(event_id: int) -> str | Response:
    """The live-sale console (admins; its calls are the admin endpoints, which check it again)."""
    from app.catalogue.services import get_event

    if (refused := _admins_only(f"/console/events/{event_id}")) is not None:
        return refused
    return render_template("console.html", event=_or_404(get_event, event_id),
                           flower_url=current_app.config.get("FLOWER_URL", ""),
                           grafana_url=current_app.config.get("GRAFANA_URL", ""))


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Pages declare no icon (`data:`); a browser or Swagger UI asking anyway gets an empty answer,
    not a 404 in its console."""
    return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/sw.js")
def service_worker() -> Response:
    """The web push service worker, served from the root so its scope is the whole site."""
    response = send_from_directory(bp.static_folder, "sw.js", max_age=0)
    response.headers["Service-Worker-Allowed"] = "/"
    return response


# --- Swagger UI, offline -------------------------------------------------------------------------

@bp.get("/api/docs/assets/<path:filename>")
def swagger_assets(filename: str) -> Response:
    import swagger_ui_bundle

    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)


def _or_404(fetch: Any, *args: Any) -> Any:
    from app.errors import AppError

    try:
        return fetch(*args)
    except AppError:
        g.not_found = True
        abort(404)


def _safe_next(url: str | None) -> str:
    """Only a path of this site (no open redirect), judged as a browser parses it: browsers read a
    backslash as a slash and drop tabs and newlines, so `/\\evil.example/` and `/<TAB>/evil.example/`
    are `//evil.example/`, another site. Anything but a plain same-origin path becomes "/"."""
    from urllib.parse import urlsplit

    if not url or any(ord(c) < 0x20 or c in "\\\x7f" for c in url):
        return "/"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return "/"
    return url


@bp.get("/logout")
def logout_page() -> Response:
    return redirect("/account?logout=1")
