"""Process-wide clients shared by every domain package."""

from __future__ import annotations

import redis
from flask_jwt_extended import JWTManager

from app.db import db

jwt = JWTManager()


class RedisHolder:
    """Lazily created Redis client; one connection pool per process (gevent-safe)."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._client: redis.Redis | None = None

    def init(self, url: str) -> None:
        if self.url != url:
            self.url = url
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            if self.url is None:
                raise RuntimeError("Redis is not initialised: call create_app()")
            self._client = redis.Redis.from_url(
                self.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
            )
        return self._client


redis_store = RedisHolder()

__all__ = ["db", "jwt", "redis_store"]
