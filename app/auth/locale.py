"""The fan's language between pages: the `lang` cookie that app/web's locale selector reads."""

from __future__ import annotations

from flask import Response, current_app


def remember_language(response: Response, locale: str) -> None:
    """The `lang` cookie the next pages read (app/web select_locale): set by the header's buttons,
    at login from the account, and when the account's language changes."""
    response.set_cookie("lang", locale, max_age=365 * 86400, samesite="Lax",
                        secure=current_app.config["JWT_COOKIE_SECURE"])
