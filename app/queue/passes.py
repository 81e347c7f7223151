"""Admission passes: a signed JWT {sub: user, aud: event, exp: admitted_until, jti}.

The pass is derived from the admission itself (same user, event and deadline give the same
token), so nothing has to be stored and a crash between admitting and signing loses nothing.
Verification also asks Redis whether the admission is still active: finishing a purchase or
cancelling revokes the pass at once.
"""

from __future__ import annotations

import time
import uuid

import jwt
from flask import current_app

from app.errors import Forbidden

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


def verify(token: str | None, user_id: int, event_id: int) -> dict:
    """The pass's claims if it admits ``user_id`` to ``event_id`` now; 403 otherwise."""
    from app.queue.services import admitted_until

    claims = decode(token, user_id, event_id)
    until = admitted_until(event_id, user_id)
    if until is None or until <= time.time() or int(until) != claims["exp"]:
        raise Forbidden("The admission is no longer active", reason="admission_inactive")
    return claims


def decode(token: str | None, user_id: int, event_id: int) -> dict:
    """The pass's claims if it is signed for ``user_id`` and ``event_id`` and unexpired; 403
    otherwise. Whether the admission is still active is Redis's to say (``verify``, or the booking
    intake's script, which compares the active admission's deadline with ``exp``)."""
    if not token:
        raise Forbidden("An admission pass (X-Admission-Token) is required", reason="admission_required")
    try:
        claims = jwt.decode(token, current_app.config["ADMISSION_SECRET_KEY"], algorithms=[ALGORITHM],
                            audience=audience(event_id), options={"require": ["exp", "sub", "aud", "jti"]})
    except jwt.ExpiredSignatureError as exc:
        raise Forbidden("The admission pass has expired", reason="admission_expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise Forbidden("The admission pass is for another event", reason="admission_wrong_event") from exc
    except jwt.PyJWTError as exc:
        raise Forbidden("The admission pass is invalid", reason="admission_invalid") from exc
    if claims.get("typ") != "admission" or claims["sub"] != str(user_id):
        raise Forbidden("The admission pass belongs to another user", reason="admission_wrong_user")
    return claims
