"""Process-wide clients shared by every domain package."""

from __future__ import annotations

import flask_limiter
from celery import Celery
from flask import request
from flask_jwt_extended import JWTManager
from flask_limiter.util import get_remote_address

from app.db import db
from app.redis import redis_store

jwt = JWTManager()
# The one Celery instance. create_app configures it from the app's configuration
# (app/tasking.configure_celery); its tasks live in tasks/, the worker's entry point, and the app
# sends them by name, so app/ never imports tasks/.
celery = Celery("tickets", task_cls="app.tasking:AppContextTask")
# The flash sale's hot paths have no flask-limiter limit: the admission pass, the proof of work at
# join and the Idempotency-Key bound them; the public serving figures sit behind a cache.
UNLIMITED_ENDPOINTS = frozenset({"tickets.Reserve", "tickets.ReservationStatus", "queue.Join", "queue.Status",
                                 "queue.Serving"})


class Limiter(flask_limiter.Limiter):
    """flask-limiter whose app-wide check (its before_request hook) returns at once on the hot
    paths. Its own request_filter only empties the list of limits to check: the evaluation (meta
    limits, exemption scopes) still ran and cost about 7 % of reserve's CPU (py-spy, README)."""

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if in_middleware and request.endpoint in UNLIMITED_ENDPOINTS:
            return
        super()._check_request_limit(callable_name, in_middleware)


# Rate limits of the account endpoints (app/auth/api.py), kept in Redis (RATELIMIT_STORAGE_URI).
# The client address is the proxy-corrected one (TRUSTED_PROXIES, werkzeug's ProxyFix).
limiter = Limiter(key_func=get_remote_address, key_prefix="rl")


__all__ = ["celery", "db", "jwt", "redis_store"]
