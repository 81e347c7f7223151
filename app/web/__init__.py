"""The web app: pages for fans and the operators' live-sale console, served by the same Flask app.

Server-rendered Jinja shells with small JavaScript modules (app/web/static), no build step and
no CDN: every asset is in the repository or in a pinned package (Swagger UI: swagger-ui-bundle).
The pages call the REST API with the browser's httpOnly cookies (POST /api/auth/session) and
the double-submit CSRF header; bearer headers keep working for API clients.

Language: Korean or English (Flask-Babel, app/web/translations), from `?lang=`, the `lang` cookie
(set at login from the account's locale) or the browser's Accept-Language.
"""

from __future__ import annotations

import hashlib
import hmac
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
    app.register_blueprint(bp)


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
        "expires_in": _("Expires in"), "available": _("available"), "turn_title": _("Your turn!"),
        "console_paused": _("Paused: nobody is admitted until you resume."), "console_running": _("Running"),
        "channel_email": _("E-mail"), "channel_sms": _("Text message (SMS)"), "channel_push": _("Push"),
        "code": _("Code"), "verify": _("Verify"), "remove": _("Remove"),
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
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # a prefix test, not response.mimetype: this runs on every answer of the hot endpoints too
    if (headers.get("Content-Type") or "").startswith("text/html"):
        scripts = f"'self' 'nonce-{g.csp_nonce}'" if "csp_nonce" in g else "'self'"
        headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            f"script-src {scripts}; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
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

    return render_template("event.html", event=_or_404(get_event, event_id))


@bp.get("/events/<int:event_id>/queue")
def queue_page(event_id: int) -> str:
    from app.catalogue.services import get_event

    return render_template("queue.html", event=_or_404(get_event, event_id))


@bp.get("/events/<int:event_id>/checkout")
def checkout_page(event_id: int) -> str:
    from app.catalogue.services import get_event

    return render_template("checkout.html", event=_or_404(get_event, event_id))


@bp.get("/tickets")
def tickets_page() -> str:
    return render_template("tickets.html")


@bp.get("/account")
def account_page() -> str:
    return render_template("account.html", next_url=_safe_next(request.args.get("next")))


@bp.get("/tickets/<reservation_id>/qr.svg")
def ticket_qr(reservation_id: str) -> Response:
    """The ticket's QR code (SVG): a signed ticket id, checked at the door offline."""
    import io

    import segno
    from flask_jwt_extended import verify_jwt_in_request

    from app.auth.jwt_setup import current_user_id
    from app.booking.models import CONFIRMED, Reservation
    from app.extensions import db

    verify_jwt_in_request()
    res = db.session.get(Reservation, reservation_id)
    if res is None or res.user_id != current_user_id() or res.status != CONFIRMED:
        abort(404)
    out = io.BytesIO()
    segno.make(signed_ticket_id(res.id), error="m").save(out, kind="svg", scale=4, border=2,
                                                          title=_("Ticket %(id)s", id=res.id[:8]))
    return Response(out.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "private, max-age=300"})


def signed_ticket_id(reservation_id: str) -> str:
    """`T1.<reservation id>.<HMAC-SHA256, 16 hex>`: a scanner with the key verifies it offline."""
    mac = hmac.new(current_app.config["TICKET_SIGNING_KEY"].encode(), reservation_id.encode(), hashlib.sha256)
    return f"T1.{reservation_id}.{mac.hexdigest()[:16]}"


# --- operators -----------------------------------------------------------------------------------

@bp.get("/console/events/<int:event_id>")
def console_page(event_id: int) -> str | Response:
    """The live-sale console (admins; its calls are the admin endpoints, which check it again)."""
    from flask_jwt_extended import get_jwt, verify_jwt_in_request

    from app.catalogue.services import get_event

    if verify_jwt_in_request(optional=True) is None:
        return redirect(f"/account?next=/console/events/{event_id}")
    if "admin" not in get_jwt().get("roles", []):
        abort(403)

    return render_template("console.html", event=_or_404(get_event, event_id),
                           flower_url=current_app.config.get("FLOWER_URL", ""),
                           grafana_url=current_app.config.get("GRAFANA_URL", ""))


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
