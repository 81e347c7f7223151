"""One-time codes that prove someone owns an address: an e-mail account or a phone number.

A 6-digit code is drawn, only its hash is kept (Redis, CODE_TTL_SECONDS), and it is sent through
the channel being proved. Checking it allows MAX_ATTEMPTS tries; then the code is void and a new
one must be asked for. Only hashes are stored and compared.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from app.errors import AppError, TooManyRequests, Unprocessable
from app.extensions import redis_store
from app.redis import calls
from app.redis.keys import verification_keys

CODE_TTL_SECONDS = 15 * 60
MAX_ATTEMPTS = 5

def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def issue(purpose: str, destination: str | None = None) -> str:
    """A new code for ``purpose`` (e.g. "device:<id>"), replacing any earlier one. ``destination``
    (the address or number, hashed) is where it goes: every code sent there counts against
    CODE_LIMIT_PER_DESTINATION, however it was asked for (a sign-up, a channel registered again, a
    resend, from any account), so an address cannot be pumped with codes (SMS costs money)."""
    if destination is not None:
        _count_sent(destination)
    code = f"{secrets.randbelow(1_000_000):06d}"
    pipe = redis_store.client.pipeline(transaction=True)
    code_key, tries_key = verification_keys(purpose)
    pipe.set(code_key, _digest(code), ex=CODE_TTL_SECONDS)
    pipe.delete(tries_key)
    pipe.execute()
    return code


def has_live_code(purpose: str) -> bool:
    return bool(redis_store.client.exists(verification_keys(purpose)[0]))


def _count_sent(destination: str) -> None:
    from flask import current_app
    from limits import parse

    from app.extensions import limiter

    item = parse(current_app.config["CODE_LIMIT_PER_DESTINATION"])
    key = hashlib.sha256(destination.encode("utf-8", "surrogatepass")).hexdigest()
    if not limiter.limiter.hit(item, "code-destination", key):
        reset = limiter.limiter.get_window_stats(item, "code-destination", key).reset_time
        raise TooManyRequests(f"At most {item} codes are sent to one address or number; try again later",
                              reason="too_many_codes", headers={"Retry-After": str(max(1, int(reset - time.time())))})


def check(purpose: str, code: str) -> None:
    """Returns when ``code`` is right; raises a 4xx AppError otherwise."""
    given = _digest(code.strip()) if isinstance(code, str) else ""
    verdict = calls.check_code(calls.CodeKeys(*verification_keys(purpose)), given=given, max_attempts=MAX_ATTEMPTS)
    if verdict == "ok":
        return
    if verdict == "expired":
        raise AppError("This code has expired or was never sent; ask for a new one", status_code=410,
                       reason="code_expired")
    if verdict == "too_many":
        raise TooManyRequests("Too many wrong codes; ask for a new one", reason="too_many_attempts",
                              headers={"Retry-After": "60"})
    raise Unprocessable("The code is not right", reason="code_wrong", errors={"code": ["not right"]})
