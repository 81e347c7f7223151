"""The Redis layer: the process's client (here), every key (keys.py), every Lua script (scripts.py)
and the one lock helper (locks.py). Domain modules keep only their rules."""

from __future__ import annotations

import redis


class RedisHolder:
    """Lazily created Redis client; one connection pool per process.

    A blocking pool: under gevent, a burst of greenlets (thousands of SSE streams checking at
    once) waits a moment for a free connection instead of failing with "Too many connections".
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self.max_connections = 100
        self._client: redis.Redis | None = None

    def init(self, url: str, max_connections: int = 100) -> None:
        if self.url != url or self.max_connections != max_connections:
            self.url = url
            self.max_connections = max_connections
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            if self.url is None:
                raise RuntimeError("Redis is not initialised: call create_app()")
            pool = redis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=10, decode_responses=True,
                socket_timeout=5, socket_connect_timeout=3, health_check_interval=30,
            )
            self._client = redis.Redis(connection_pool=pool)
        return self._client


redis_store = RedisHolder()

__all__ = ["redis_store"]
