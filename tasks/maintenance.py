"""Small tasks on the `default` queue."""

from __future__ import annotations

import os

from tasks.celery_app import celery


@celery.task(name="maintenance.ping")
def ping(payload: str = "pong") -> dict:
    """Round-trips through broker, worker and app context: used by health checks and tests."""
    from sqlalchemy import text

    from app.extensions import db

    db.session.execute(text("SELECT 1"))
    return {"payload": payload, "pid": os.getpid()}
