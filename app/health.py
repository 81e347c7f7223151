from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from app.extensions import db, redis_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive (no dependency checks: a DB outage must not restart every pod)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready to serve: not draining, and the database and Redis answer. 503 otherwise, so load
    balancers stop sending to us. Draining (DRAIN_FILE exists: k8s's preStop hook made it) comes
    first: the server is about to stop, and its in-flight requests finish meanwhile."""
    if os.path.exists(current_app.config["DRAIN_FILE"]):
        response = jsonify(status="draining", checks={})
        response.status_code = 503
        return response
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        db.session.rollback()
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        redis_store.client.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify(status="ready" if ready else "not_ready", checks=checks)
    response.status_code = 200 if ready else 503
    return response
