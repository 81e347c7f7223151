"""The Redis layer: the process's client (here), every key (keys.py), every Lua script (scripts.py)
and the one lock helper (locks.py). Domain modules keep only their rules."""

from __future__ import annotations

import redis


class RedisHolder:
    """Lazily created Redis client; one connection pool per process.

    Standalone: a blocking pool, so under gevent a burst of greenlets (thousands of SSE streams
    checking at once) waits a moment for a free connection instead of failing with "Too many
    connections". Cluster (``REDIS_CLUSTER=true``): redis-py's cluster client, started from any
    node of the cluster; every Lua script touches one slot (a sale's keys share ``{event_id}``),
    and the few cross-slot reads are separate calls (``cluster`` is checked by the callers).
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self.max_connections = 100
        self.cluster = False
        self._client: redis.Redis | None = None

    def init(self, url: str, max_connections: int = 100, cluster: bool = False) -> None:
        if self.url != url or self.max_connections != max_connections or self.cluster != cluster:
            self.url = url
            self.max_connections = max_connections
            self.cluster = cluster
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            if self.url is None:
                raise RuntimeError("Redis is not initialised: call create_app()")
            if self.cluster:
                from redis.cluster import RedisCluster

                self._client = RedisCluster.from_url(  # type: ignore[assignment]
                    self.url, decode_responses=True, max_connections=self.max_connections,
                    socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
            else:
                pool = redis.BlockingConnectionPool.from_url(
                    self.url, max_connections=self.max_connections, timeout=10, decode_responses=True,
                    socket_timeout=5, socket_connect_timeout=3, health_check_interval=30,
                )
                self._client = redis.Redis(connection_pool=pool)
        return self._client


redis_store = RedisHolder()

__all__ = ["redis_store"]
