"""Admission passes: a signed JWT {sub: user, aud: event, exp: admitted_until, jti}.

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


def issue(user_id: int, event_id: int, admitted_until: float) -> str:
    claims = {
        "sub": str(user_id),
        "aud": audience(event_id),
        "exp": int(admitted_until),
        "jti": str(uuid.uuid5(_JTI_NAMESPACE, f"{user_id}:{event_id}:{admitted_until:.6f}")),
        "typ": "admission",
    }
    return jwt.encode(claims, current_app.config["ADMISSION_SECRET_KEY"], algorithm=ALGORITHM)


def decode(token: str | None, user_id: int, event_id: int) -> dict:
    """The pass's claims if it is signed for ``user_id`` and ``event_id`` and unexpired; 403
    otherwise. Whether the admission is still active is Redis's to say (``verify``, or the booking
    intake's script, which compares the active admission's deadline with ``exp``)."""
    if not token:
        raise Forbidden("An admission pass (X-Admission-Token) is required", reason="admission_required")
    return _verified(token, user_id, event_id, "admission", expired=Forbidden("The admission pass has expired",
                                                                              reason="admission_expired"))


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
    name = "admission pass" if kind == "admission" else "offer pass"
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
