"""Process-wide clients shared by every domain package."""

from __future__ import annotations

import redis
from flask import request
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.db import db

jwt = JWTManager()
# Rate limits of the account endpoints (app/auth/api.py), kept in Redis (RATELIMIT_STORAGE_URI).
# The client address is the proxy-corrected one (TRUSTED_PROXIES, werkzeug's ProxyFix).
limiter = Limiter(key_func=get_remote_address, key_prefix="rl")

# The flash sale's hot paths have no flask-limiter limit: the admission pass, the proof of work at
# join and the Idempotency-Key bound them. Skipping the limiter's per-request limit resolution
# there saves about 8 % of their CPU (py-spy, docs/booking.md).
UNLIMITED_ENDPOINTS = frozenset({"tickets.Reserve", "tickets.ReservationStatus", "queue.Join", "queue.Status"})


@limiter.request_filter
def _hot_path() -> bool:
    return request.endpoint in UNLIMITED_ENDPOINTS


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

__all__ = ["db", "jwt", "redis_store"]
