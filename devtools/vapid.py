"""A VAPID key pair for web push, as WEBPUSH_VAPID_PRIVATE_KEY / _PUBLIC_KEY take it: base64url of
the raw P-256 private scalar and of the uncompressed public point (the browser's
applicationServerKey). Production makes its own once (e.g. `vapid --gen`) and keeps it secret."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def new_vapid_keys() -> tuple[str, str]:
    """(private, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big")), b64url(public_point(key))
