"""The runnable service: migrations, health, OpenAPI, JSON errors, config safety, Celery, beat, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import inspect, text

from app.extensions import db
from app.settings import ConfigError, Settings
from tests.support import ROOT, CeleryProcess, wait_for


def test_migrations_created_every_table_at_head(app):
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"users", "events", "sections", "seats", "reservations", "outbox", "devices",
                "notifications", "refunds", "payments", "sale_summaries", "provider_events", "orders", "tickets",
                "event_staff", "checkin_scans", "sale_draws", "draw_entrants", "alembic_version"} <= tables
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0014"
        rows = db.session.execute(text(
            "SELECT table_name, engine, table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name <> 'alembic_version'")).all()
        assert rows and all(r[1] == "InnoDB" and r[2].startswith("utf8mb4") for r in rows), rows


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json["checks"] == {"database": "ok", "redis": "ok"}


@contextmanager
def app_with_redis_down(app):
    """A second app whose Redis is unreachable. create_app re-initialises the process-wide
    extensions (the Redis client, the rate limiter's storage): they are put back afterwards, or the
    session's app would go on with a limiter that fails (open) on every request."""
    from app import create_app
    from app.extensions import limiter, redis_store

    saved = dict(vars(limiter))
    try:
        yield create_app({"TESTING": True}, env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"})
    finally:
        vars(limiter).clear()
        vars(limiter).update(saved)
        redis_store.init(app.config["REDIS_URL"])


def test_readyz_is_503_when_redis_is_unreachable(app):
    with app_with_redis_down(app) as broken:
        r = broken.test_client().get("/readyz")
        assert r.status_code == 503 and r.json["checks"]["redis"].startswith("error")


def test_openapi_and_docs(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    paths = spec.json["paths"]
    for path in ("/api/tickets/reserve", "/api/tickets/status", "/api/notifications/register",
                 "/api/queue/{event_id}/join", "/api/auth/login", "/api/events"):
        assert path in paths
    assert client.get("/api/docs").status_code == 200


def test_errors_are_json_everywhere(client):
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json["code"] == 404 and r.json["status"] == "Not Found" and r.json["message"]
    r = client.delete("/api/events")
    assert r.status_code == 405 and r.is_json
    r = client.post("/api/auth/login", data="x" * (70 * 1024), content_type="application/json")
    assert r.status_code == 413 and r.is_json
    r = client.post("/api/auth/login", data="{not json", content_type="application/json")
    assert r.status_code in (400, 422) and r.is_json


def test_500_is_json(app):
    from app import create_app

    other = create_app({"TESTING": True})

    @other.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    r = other.test_client().get("/boom")
    assert r.status_code == 500 and r.json == {"code": 500, "status": "Internal Server Error",
                                               "message": "Internal server error"}


def test_request_id_is_echoed(client):
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_production_refuses_default_or_missing_secret():
    env = {"APP_ENV": "production", "DATABASE_URL": "mysql+pymysql://u:p@db/tickets", "STRIPE_SECRET_KEY": "sk_x",
           "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_PUBLISHABLE_KEY": "pk_x"}
    with pytest.raises(ConfigError):
        Settings.from_env(env).refuse_unsafe_production()
    with pytest.raises(ConfigError):
        Settings.from_env({**env, "JWT_SECRET_KEY": "short"}).refuse_unsafe_production()
    with pytest.raises(ConfigError):
        Settings.from_env({**env, "JWT_SECRET_KEY": "x" * 40, "DATABASE_URL": ""}).refuse_unsafe_production()
    Settings.from_env({**env, "JWT_SECRET_KEY": "x" * 40}).refuse_unsafe_production()
    assert Settings.from_env({}).CELERY_BROKER_URL == Settings.from_env({}).REDIS_URL


def test_wsgi_refuses_to_start_in_production_with_default_secret():
    env = {**os.environ, "APP_ENV": "production", "JWT_SECRET_KEY": ""}
    proc = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "JWT_SECRET_KEY" in proc.stderr


def test_celeryconfig_guarantees():
    import celeryconfig

    # one configuration: Celery's settings come from the app's loader (the interval is parsed once)
    settings = celeryconfig.celery_settings(Settings.from_env({"QUEUE_ADVANCE_INTERVAL_SECONDS": "0.5",
                                                               "CELERY_BROKER_URL": "redis://broker:6379/3"}))
    assert settings["broker_url"] == settings["result_backend"] == "redis://broker:6379/3"
    assert settings["beat_schedule"]["advance-waiting-rooms"]["schedule"] == 0.5
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["accept_content"] == ["json"] and settings["task_serializer"] == "json"
    assert settings["broker_transport_options"]["visibility_timeout"] > settings["task_time_limit"]
    assert {q.name for q in settings["task_queues"]} == {"admission", "booking", "notifications", "outbox",
                                                          "default", "housekeeping"}
    # beat's ticks go to the housekeeping worker (events off), never onto a sale's queues
    assert {e["options"]["queue"] for e in settings["beat_schedule"].values()} == {"housekeeping"}
    from tasks.celery_app import celery

    routes = {name: celery.amqp.router.route({}, name)["queue"].name
              for name in ("queue.advance_all", "booking.sweep_holds", "notifications.send", "outbox.relay",
                           "maintenance.ping")}
    assert routes == {"queue.advance_all": "admission", "booking.sweep_holds": "booking",
                      "notifications.send": "notifications", "outbox.relay": "outbox",
                      "maintenance.ping": "default"}


def test_real_worker_runs_a_task_in_the_app_context(worker):
    from tasks.celery_app import celery

    result = celery.send_task("maintenance.ping", args=["hello"]).get(timeout=20)
    assert result["payload"] == "hello" and result["pid"] != os.getpid()


def test_two_beats_started_together_schedule_once(app):
    prefix = f"redbeat-two-{time.time_ns()}:"
    env = {"REDBEAT_KEY_PREFIX": prefix}
    beats = [CeleryProcess(["beat", "-l", "INFO", "--pidfile="], env=env, name=f"beat{i}") for i in range(2)]
    try:
        def sent(beat: CeleryProcess) -> int:
            return beat.output().count("Sending due task advance-waiting-rooms")

        wait_for(lambda: sum(sent(b) for b in beats) >= 4, timeout=40, message="beat scheduling")
        time.sleep(2)
        counts = [sent(b) for b in beats]
        assert sorted(c > 0 for c in counts) == [False, True], counts
    finally:
        for b in beats:
            b.stop()


def test_create_admin_cli_creates_and_promotes(app, make_user):
    from app.auth.models import User

    env = {**os.environ}
    run = [sys.executable, "-m", "flask", "--app", "wsgi", "users", "create-admin"]
    out = subprocess.run([*run, "boss@example.com", "--password", "boss-s3cret-2026"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "created admin boss@example.com" in out.stdout
    existing = make_user(email="plain@example.com")
    out = subprocess.run([*run, "plain@example.com"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "promoted" in out.stdout
    with app.app_context():
        assert db.session.get(User, existing["id"]).is_admin
        db.session.rollback()
    out = subprocess.run([*run, "new@example.com"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "password is required" in out.stderr


def test_redis_outage_is_a_json_503_not_a_500(app, make_user):
    user = make_user()
    with app_with_redis_down(app) as broken:
        r = broken.test_client().get("/api/auth/me", headers=user["headers"])  # blocklist check needs Redis
        assert r.status_code == 503 and r.json["reason"] == "unavailable" and r.headers["Retry-After"] == "2"


def test_the_suite_uses_the_redis_dbs_that_test_redis_url_names():
    """TEST_REDIS_URL's db for the app, the next for Celery's broker, the one after for the spare
    (README, "make test"); emptied before and after the run by tests/integration/conftest.py."""
    from tests.support import redis_db_number

    base = redis_db_number(os.environ.get("TEST_REDIS_URL") or "redis://x/0")
    used = [redis_db_number(os.environ[name]) for name in ("REDIS_URL", "CELERY_BROKER_URL", "TEST_SPARE_REDIS_URL")]
    assert used == [base, base + 1, base + 2]
