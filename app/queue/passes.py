"""Admission passes: a signed JWT {sub: user, aud: event, exp: admitted_until, jti[, lane, lim]}; and a fan's
signed place in the line {sub, aud, num: line number, jat: join time}.

The pass is derived from the admission itself (same user, event and deadline give the same
token), so nothing has to be stored and a crash between admitting and signing loses nothing.
Whether the admission is still active is checked in Redis by the booking intake's script (the
active admission's deadline must equal the pass's `exp`): finishing a purchase or cancelling
revokes the pass at once.
"""

from __future__ import annotations

import uuid

import jwt
from flask import current_app

from app.auth import hs256
from app.errors import Conflict, Forbidden

ALGORITHM = "HS256"
_JTI_NAMESPACE = uuid.UUID("6c1f2a52-8d0e-4b7e-9a55-2f7f4f3b7a10")


def audience(event_id: int) -> str:
    return f"event:{event_id}"


def issue(user_id: int, event_id: int, admitted_until: float, *, lane: str | None = None,
          ticket_limit: int | None = None) -> str:
    """The admission pass; a fan of a priority lane's carries the lane (``lane``: its reserved
    sections) and the access code's ticket limit (``lim``), both read by the booking intake."""
    claims: dict[str, str | int] = {
        "sub": str(user_id),
        "aud": audience(event_id),
        "exp": int(admitted_until),
        "jti": str(uuid.uuid5(_JTI_NAMESPACE, f"{user_id}:{event_id}:{admitted_until:.6f}")),
        "typ": "admission",
    }
    if lane:
        claims["lane"] = lane
    if ticket_limit:
        claims["lim"] = ticket_limit
    return jwt.encode(claims, current_app.config["ADMISSION_SECRET_KEY"], algorithm=ALGORITHM)


def decode(token: str | None, user_id: int, event_id: int) -> dict:
    """The pass's claims if it is signed for ``user_id`` and ``event_id`` and unexpired; 403
    otherwise. Whether the admission is still active is Redis's to say (``verify``, or the booking
    intake's script, which compares the active admission's deadline with ``exp``)."""
    if not token:
        raise Forbidden("An admission pass (X-Admission-Token) is required", reason="admission_required")
    return _verified(token, user_id, event_id, "admission", expired=Forbidden("The admission pass has expired",
                                                                              reason="admission_expired"))


PLACE_SECONDS = 86_400  # a place token outlives any wait; each exact status issues a fresh one


def issue_place(user_id: int, event_id: int, line_number: int, joined_at: float, now: float) -> str:
    """The fan's place: their number in the line and when they joined, bound to them and the sale.
    The page and the stream server work out an honest position from it and the sale's public
    serving figures (app/queue/services.estimate); being signed, it cannot be moved to another
    user or given a better number."""
    claims = {"sub": str(user_id), "aud": audience(event_id), "typ": "place", "num": line_number,
              "jat": round(joined_at, 3), "exp": int(now) + PLACE_SECONDS, "jti": f"{event_id}:{user_id}:{line_number}"}
    return hs256.sign(claims, current_app.config["ADMISSION_SECRET_KEY"])


def decode_place(token: str, user_id: int, event_id: int) -> dict:
    """The place's claims if it is signed for ``user_id`` and ``event_id``; 403 (`place_invalid`,
    `place_wrong_user`, `place_wrong_event`, `place_expired`) otherwise."""
    return _verified(token, user_id, event_id, "place",
                     expired=Forbidden("The place has expired: ask for the status again", reason="place_expired"))


def issue_offer(user_id: int, event_id: int, section_id: int, offer_id: str, quantity: int, expires: float) -> str:
    """A waitlist offer's pass (app/booking/waitlist.py): the section and quantity offered, until
    ``expires``. Whether the offer is still open is Redis's to say (the CLAIM_OFFER script)."""
    claims = {"sub": str(user_id), "aud": audience(event_id), "exp": int(expires), "jti": offer_id,
              "typ": "offer", "sid": section_id, "qty": quantity}
    return jwt.encode(claims, current_app.config["ADMISSION_SECRET_KEY"], algorithm=ALGORITHM)


def decode_offer(token: str, user_id: int, event_id: int) -> dict:
    return _verified(token, user_id, event_id, "offer",
                     expired=Conflict("The offer has expired and passed to the next fan", reason="offer_expired"))


def _verified(token: str, user_id: int, event_id: int, kind: str, *, expired: Exception) -> dict:
    """One check for both kinds of pass: signature, audience, expiry (``expired`` is raised), kind
    and holder; the 403 reasons are `<kind>_wrong_event`, `<kind>_invalid`, `<kind>_wrong_user`."""
    name = {"admission": "admission pass", "offer": "offer pass"}.get(kind, kind)
    try:
        # the lean verifier (app/auth/hs256.py): this runs on every reserve request
        _header, claims = hs256.verify(token, current_app.config["ADMISSION_SECRET_KEY"],
                                       audience=audience(event_id), require=("exp", "sub", "aud", "jti"))
    except hs256.InvalidToken as exc:
        if exc.reason == "token_expired":
            raise expired from exc
        if exc.reason == "wrong_audience":
            raise Forbidden(f"The {name} is for another event", reason=f"{kind}_wrong_event") from exc
        raise Forbidden(f"The {name} is invalid", reason=f"{kind}_invalid") from exc
    if claims.get("typ") != kind or claims["sub"] != str(user_id):
        raise Forbidden(f"The {name} belongs to another user", reason=f"{kind}_wrong_user")
    return claims
