"""One-time codes that prove someone owns an address: an e-mail account or a phone number.

A 6-digit code is drawn, only its hash is kept (Redis, CODE_TTL_SECONDS), and it is sent through
the channel being proved. Checking it allows MAX_ATTEMPTS tries; then the code is void and a new
one must be asked for. Only hashes are stored and compared.
"""

from __future__ import annotations

import hashlib
import secrets

from app.errors import AppError, TooManyRequests, Unprocessable
from app.extensions import redis_store

CODE_TTL_SECONDS = 15 * 60
MAX_ATTEMPTS = 5

# KEYS[1] code hash, KEYS[2] attempts. ARGV: hash of the code given, max attempts
_CHECK = """
local expected = redis.call('GET', KEYS[1])
if not expected then return 'expired' end
local tries = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
if tries > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 'too_many'
end
if expected == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 'ok'
end
return 'wrong'
"""


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def issue(purpose: str) -> str:
    """A new code for ``purpose`` (e.g. "device:<id>"), replacing any earlier one."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    pipe = redis_store.client.pipeline(transaction=True)
    pipe.set(f"verify:{purpose}", _digest(code), ex=CODE_TTL_SECONDS)
    pipe.delete(f"verify:{purpose}:tries")
    pipe.execute()
    return code


def check(purpose: str, code: str) -> None:
    """Returns when ``code`` is right; raises a 4xx AppError otherwise."""
    given = _digest(code.strip()) if isinstance(code, str) else ""
    verdict = redis_store.client.eval(_CHECK, 2, f"verify:{purpose}", f"verify:{purpose}:tries", given, MAX_ATTEMPTS)
    if verdict == "ok":
        return
    if verdict == "expired":
        raise AppError("This code has expired or was never sent; ask for a new one", status_code=410,
                       reason="code_expired")
    if verdict == "too_many":
        raise TooManyRequests("Too many wrong codes; ask for a new one", reason="too_many_attempts",
                              headers={"Retry-After": "60"})
    raise Unprocessable("The code is not right", reason="code_wrong", errors={"code": ["not right"]})
