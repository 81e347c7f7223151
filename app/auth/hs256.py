"""HS256 verification (and the queue place's signing) for the hot endpoints (queue status and join, reserve).

PyJWT 2.15 checks every character of each base64url segment with a Python generator before
decoding (its fix for GHSA-hxm8-2xgr-2p9m). Under flash-sale load that check was the largest
single cost of a status poll: about 0.7 ms of CPU per request, more than the whole reference
request (see README, "Benchmarks"). This module verifies the same tokens with the same strictness
using C-speed primitives: a compiled regex for the alphabet, ``hmac.compare_digest`` for the
signature, orjson for the claims. Tokens are still issued by flask-jwt-extended / PyJWT, and every
other endpoint still verifies through them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from typing import Any

import orjson

_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


class InvalidToken(Exception):
    """Signature, format or a claim is wrong (``reason`` says which, as flask-jwt-extended would)."""

    def __init__(self, message: str, reason: str = "token_invalid") -> None:
        super().__init__(message)
        self.reason = reason


def _segment(raw: bytes) -> bytes:
    """Decode one base64url segment as strictly as PyJWT: the alphabet only, at most two '=' of
    correct padding (some issuers pad), and the canonical encoding of what it decodes to."""
    stripped = raw.rstrip(b"=")
    padding = len(raw) - len(stripped)
    if padding > 2 or (padding and len(raw) % 4) or len(stripped) % 4 == 1 or not _SEGMENT.fullmatch(stripped):
        raise InvalidToken("Invalid token segment")
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("Invalid token segment") from exc
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise InvalidToken("Invalid token segment")
    return decoded


_HEADER = base64.urlsafe_b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"})).rstrip(b"=")


def sign(claims: dict[str, Any], key: str) -> str:
    """An HS256 token of ``claims``, as PyJWT would sign it, at C speed: the queue's signed place
    is issued on every join and status (app/queue/passes.py)."""
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    signing_input = _HEADER + b"." + payload
    signature = base64.urlsafe_b64encode(hmac.new(key.encode(), signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def verify(token: str, key: str, *, audience: str | None = None, leeway: float = 0,
           require: tuple[str, ...] = ("exp",)) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a valid HS256 token, else InvalidToken ("token_expired" when only the
    expiry is wrong). ``audience``: the `aud` claim must equal it (or contain it)."""
    raw = token.encode() if isinstance(token, str) else token
    parts = raw.split(b".")
    if len(parts) != 3:
        raise InvalidToken("Not enough segments")
    header_raw, payload_raw, signature_raw = parts
    try:
        header = orjson.loads(_segment(header_raw))
        claims = orjson.loads(_segment(payload_raw))
    except orjson.JSONDecodeError as exc:
        raise InvalidToken("Invalid token encoding") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "HS256":
        raise InvalidToken("The specified alg value is not allowed")
    expected = hmac.new(key.encode(), header_raw + b"." + payload_raw, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _segment(signature_raw)):
        raise InvalidToken("Signature verification failed")
    for name in require:
        if name not in claims:
            raise InvalidToken(f'Token is missing the "{name}" claim')
    now = time.time()
    exp = claims.get("exp")
    if exp is not None:
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidToken("Expiration Time claim (exp) must be a number")
        if exp <= now - leeway:
            raise InvalidToken("Signature has expired", reason="token_expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf > now + leeway):
        raise InvalidToken("The token is not yet valid (nbf)")
    if audience is not None:
        aud = claims.get("aud")
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise InvalidToken("Audience doesn't match", reason="wrong_audience")
    return header, claims
