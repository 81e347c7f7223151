"""One Redis lock for the whole application: redis-py's ``Lock`` (SET NX PX with a random token,
compare-and-delete release, compare-and-extend), so a lock that expired and was taken by another
holder is never released or extended by the first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from app.redis import redis_store


class LockTimeout(Exception):
    """The lock is held elsewhere. Periodic tasks skip their turn; others retry."""


class LockLost(Exception):
    """The lock expired under its holder (a pause longer than its TTL) and may be another's now:
    the holder stops before writing anything more."""


@contextmanager
def redis_lock(key: str, ttl_ms: int, wait_seconds: float = 0.0) -> Iterator[Lock]:
    """Hold ``key`` for at most ``ttl_ms`` unless extended (the holder's crash frees it then); wait
    up to ``wait_seconds`` for it, else raise LockTimeout. Yields the lock: a long holder calls
    ``keep(lock, ttl_ms)`` between steps."""
    lock = redis_store.client.lock(key, timeout=ttl_ms / 1000, sleep=0.02,
                                   blocking=wait_seconds > 0, blocking_timeout=wait_seconds or None)
    if not lock.acquire():
        raise LockTimeout(key)
    try:
        yield lock
    finally:
        try:
            lock.release()
        except LockError:  # expired meanwhile (and perhaps taken): nothing of ours to release
            pass


def keep(lock: Lock, ttl_ms: int) -> None:
    """Renew the lock's TTL to ``ttl_ms`` from now, or raise LockLost if it is no longer ours."""
    try:
        lock.extend(ttl_ms / 1000, replace_ttl=True)
    except (LockNotOwnedError, LockError) as exc:
        raise LockLost(str(exc)) from exc
