"""One Redis lock: ``SET key token NX PX ttl``, released by compare-and-delete (a lock that
expired and was taken by another holder is never deleted by the first)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from app.redis import redis_store
from app.redis.scripts import script


class LockTimeout(Exception):
    """The lock is held elsewhere. Periodic tasks skip their turn; others retry."""


@contextmanager
def redis_lock(key: str, ttl_ms: int, wait_seconds: float = 0.0) -> Iterator[str]:
    """Hold ``key`` for at most ``ttl_ms`` (the holder's crash frees it then); wait up to
    ``wait_seconds`` for it, else raise LockTimeout. Yields the holder's token."""
    client = redis_store.client
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while not client.set(key, token, nx=True, px=ttl_ms):
        if time.monotonic() >= deadline:
            raise LockTimeout(key)
        time.sleep(0.02)
    try:
        yield token
    finally:
        script("RELEASE_LOCK")(keys=[key], args=[token])
