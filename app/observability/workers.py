"""Which Celery workers are alive, per queue: each worker's heartbeat (tasks/celery_app.py
HeartbeatStep) in the broker's Redis, counted by the exporter at scrape time."""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from app.redis.keys import WORKERS_KEY

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
# a worker that missed this many heartbeats is gone (SIGKILL, OOM, a lost host)
ALIVE_SECONDS = 4 * HEARTBEAT_SECONDS
# entries of workers gone this long are removed (hostnames change with every pod)
FORGET_SECONDS = 86_400


def heartbeat(broker_url: str, hostname: str, queues: list[str], stopping: threading.Event) -> None:
    """The worker's heartbeat loop, until ``stopping``; then it says it is gone. A broker outage
    only skips beats (the worker's own reconnection is Celery's)."""
    client = redis.Redis.from_url(broker_url, socket_timeout=3, socket_connect_timeout=3)
    while not stopping.is_set():
        try:
            client.hset(WORKERS_KEY, hostname, json.dumps({"queues": queues, "at": time.time()}))
        except redis.RedisError:
            log.warning("worker heartbeat not written (broker unreachable)")
        stopping.wait(HEARTBEAT_SECONDS)
    try:
        client.hdel(WORKERS_KEY, hostname)  # a warm shutdown leaves no stale entry
    except redis.RedisError:
        pass


def live_workers_per_queue(client: redis.Redis, queues: tuple[str, ...], now: float | None = None) -> dict[str, int]:
    """Live workers consuming each of ``queues`` (0 for a queue nobody consumes); forgets the
    entries of workers gone for a day."""
    now = now or time.time()
    counts = dict.fromkeys(queues, 0)
    for hostname, raw in client.hgetall(WORKERS_KEY).items():
        beat = json.loads(raw)
        if beat["at"] > now - ALIVE_SECONDS:
            for queue in beat["queues"]:
                if queue in counts:
                    counts[queue] += 1
        elif beat["at"] < now - FORGET_SECONDS:
            client.hdel(WORKERS_KEY, hostname)
    return counts
