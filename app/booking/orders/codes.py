"""Order numbers a person can read over the phone, and the signed codes in tickets' QR codes.

A ticket's code is ``T2.<event id>.<ticket id>.<mac>``: the MAC (HMAC-SHA256 under
TICKET_SIGNING_KEY, 128 bits, base64url) lets the door verify a code, and refuse a forged one or
one of another event, with no database round trip (app/checkin/services.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import current_app

# Crockford's base32: no I, L, O or U, so nothing is misheard or misread as 1 or 0
ORDER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ORDER_NUMBER_CHARS = 10  # 50 bits: a collision is checked for, and is rare even at millions of orders


def new_order_number() -> str:
    """e.g. ``7KQ-M4X2-9PZ``."""
    raw = "".join(secrets.choice(ORDER_ALPHABET) for _ in range(ORDER_NUMBER_CHARS))
    return f"{raw[:3]}-{raw[3:7]}-{raw[7:]}"


def normalise_order_number(text: str) -> str:
    """What a fan types or says: any case, spaces or dashes, and the look-alikes Crockford maps."""
    raw = text.upper().translate(str.maketrans({"I": "1", "L": "1", "O": "0", " ": None, "-": None}))
    return f"{raw[:3]}-{raw[3:7]}-{raw[7:]}" if len(raw) == ORDER_NUMBER_CHARS else text


@dataclass(frozen=True)
class TicketCode:
    event_id: int
    ticket_id: str


def _mac(event_id: int, ticket_id: str) -> str:
    key = current_app.config["TICKET_SIGNING_KEY"].encode()
    digest = hmac.new(key, f"T2.{event_id}.{ticket_id}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ticket_code(event_id: int, ticket_id: str) -> str:
    return f"T2.{event_id}.{ticket_id}.{_mac(event_id, ticket_id)}"


def verify_ticket_code(code: str) -> TicketCode | None:
    """The code's event and ticket when its MAC verifies; None for anything else."""
    parts = code.strip().split(".")
    if len(parts) != 4 or parts[0] != "T2" or not parts[1].isdigit() or len(parts[2]) != 36:
        return None
    event_id, ticket_id = int(parts[1]), parts[2]
    if not hmac.compare_digest(parts[3], _mac(event_id, ticket_id)):
        return None
    return TicketCode(event_id, ticket_id)
