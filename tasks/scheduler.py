"""Beat's scheduler: RedBeat, made to ride out a Redis outage instead of exiting.

RedBeat keeps the schedule and a single-scheduler lock in Redis. Out of the box, a Redis outage
raises out of `tick()` and beat exits ("beat raised exception ConnectionError"); when Redis comes
back, nobody is admitted until someone restarts beat. This subclass:
- logs and retries every RETRY_SECONDS while Redis is unreachable (at start-up too);
- when its lock is gone (Redis restarted without the key, or the outage outlasted the lock's
  timeout), takes it again without blocking, and stands by if another beat took it meanwhile;
- writes the static schedule again after retaking the lock, since it may have gone with Redis's data.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from kombu.exceptions import OperationalError
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError, OSError)


class ResilientRedBeatScheduler(RedBeatScheduler):
    _schedule_written = False

    def setup_schedule(self) -> None:
        try:
            super().setup_schedule()
            self._schedule_written = True
        except _UNREACHABLE as exc:
            logger.warning("beat: Redis unreachable while writing the schedule (%s); will retry", exc)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock_key and self.lock is None and not self._take_lock():
                return RETRY_SECONDS  # another beat schedules: stand by
            if not self._schedule_written:
                self.setup_schedule()
            return super().tick(*args, **kwargs)
        except redis.exceptions.LockError:
            logger.warning("beat: the scheduler lock is gone (Redis restarted or the lock lapsed); retaking it")
            self.lock = None
            return RETRY_SECONDS
        except _UNREACHABLE as exc:
            logger.warning("beat: Redis unreachable (%s); retrying in %.0f s", exc, RETRY_SECONDS)
            return RETRY_SECONDS

    def _take_lock(self) -> bool:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # as RedBeat's own start-up does
        if not lock.acquire(blocking=False):
            return False
        logger.info("beat: acquired the scheduler lock")
        self.lock = lock
        self._schedule_written = False  # the schedule may have been lost with the lock
        return True
