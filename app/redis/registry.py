"""Which sales live in Redis: the registries the advancer, the event drain, the notice sweeper
and the exporter walk (their keys are declared in app/redis/keys.py)."""

from __future__ import annotations

from app.redis import redis_store
from app.redis.keys import REGISTRY_KEY, UNDRAINED_KEY


def registered_event_ids() -> list[int]:
    """Sales with a waiting room (the advancer removes one that ended)."""
    return sorted(int(x) for x in redis_store.client.smembers(REGISTRY_KEY))


def undrained_event_ids() -> list[int]:
    """Sales whose event stream may hold events: the registered ones and those that ended lately."""
    client = redis_store.client
    return sorted({int(e) for e in client.smembers(UNDRAINED_KEY)} | {int(e) for e in client.smembers(REGISTRY_KEY)})
