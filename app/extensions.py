"""Process-wide clients shared by every domain package."""

from __future__ import annotations

from celery import Celery
from flask import request
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.db import db
from app.redis import redis_store

jwt = JWTManager()
# The one Celery instance. create_app configures it from the app's configuration
# (app/tasking.configure_celery); its tasks live in tasks/, the worker's entry point, and the app
# sends them by name, so app/ never imports tasks/.
celery = Celery("tickets", task_cls="app.tasking:AppContextTask")
# Rate limits of the account endpoints (app/auth/api.py), kept in Redis (RATELIMIT_STORAGE_URI).
# The client address is the proxy-corrected one (TRUSTED_PROXIES, werkzeug's ProxyFix).
limiter = Limiter(key_func=get_remote_address, key_prefix="rl")

# The flash sale's hot paths have no flask-limiter limit: the admission pass, the proof of work at
# join and the Idempotency-Key bound them; the public serving figures sit behind a cache. Skipping
# the limiter's per-request limit resolution there saves about 8 % of their CPU (py-spy,
# docs/booking.md).
UNLIMITED_ENDPOINTS = frozenset({"tickets.Reserve", "tickets.ReservationStatus", "queue.Join", "queue.Status",
                                 "queue.Serving"})


@limiter.request_filter
def _hot_path() -> bool:
    return request.endpoint in UNLIMITED_ENDPOINTS


__all__ = ["celery", "db", "jwt", "redis_store"]
