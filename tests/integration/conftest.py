"""Test session: real Redis, MariaDB (TEST_DATABASE_URL, else a private mariadbd on a free port), Tansu,
moto's SNS server and aiosmtpd, all started before the app is built so that the API under test and
the Celery worker subprocesses share one configuration through the environment."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests import support

_state: dict[str, Any] = {}


def _configure_environment() -> None:
    db_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        db_url, _state["mariadb_proc"], _state["mariadb_dir"] = support.start_private_mariadb()
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        redis_url, _state["redis_proc"] = support.start_private_redis()
    # the db in TEST_REDIS_URL (the app) and the two after it (Celery's broker; a spare for the
    # tests that run writers of their own), emptied before the run and after it
    app_db = support.redis_db_number(redis_url)
    redis_urls = [support.redis_db_url(redis_url, app_db + i) for i in range(3)]
    support.check_redis_dbs(redis_urls)
    _state["redis_urls"] = redis_urls
    tansu = support.Tansu()
    tansu.start()
    moto_server, moto_url = support.start_moto()
    smtp = support.SmtpSink()
    push_service = support.PushService()
    vapid_private, vapid_public = support.vapid_keys()
    _state.update(tansu=tansu, moto=moto_server, smtp=smtp, push_service=push_service)
    os.environ.update({
        "APP_ENV": "testing",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_urls[0],
        "CELERY_BROKER_URL": redis_urls[1],
        "TEST_SPARE_REDIS_URL": redis_urls[2],
        "REDBEAT_KEY_PREFIX": f"redbeat-test-{uuid.uuid4().hex[:6]}:",
        "LOG_LEVEL": "WARNING",
        "KAFKA_BOOTSTRAP_SERVERS": tansu.bootstrap,
        "KAFKA_TOPIC_PREFIX": "tickets",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "SNS_ENDPOINT_URL": moto_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_FROM": "tickets@test.local",
        # web push to the loopback push service (a real one would be fcm.googleapis.com & co.)
        "WEBPUSH_VAPID_PRIVATE_KEY": vapid_private,
        "WEBPUSH_VAPID_PUBLIC_KEY": vapid_public,
        "WEBPUSH_ENDPOINT_HOSTS": "127.0.0.1",
    })
    import boto3

    sns = boto3.client("sns", region_name="eu-west-1", endpoint_url=moto_url)
    for platform, env_name in (("GCM", "SNS_FCM_APPLICATION_ARN"), ("APNS", "SNS_APNS_APPLICATION_ARN")):
        arn = sns.create_platform_application(Name=f"tickets-{platform.lower()}", Platform=platform,
                                              Attributes={"PlatformCredential": "test"})["PlatformApplicationArn"]
        os.environ[env_name] = arn


def pytest_configure(config: pytest.Config) -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # connection errors while a test stops Tansu
    _configure_environment()


def pytest_unconfigure(config: pytest.Config) -> None:
    from app.outbox.relay import reset_producer

    reset_producer()  # close this process's Kafka producer before its broker goes away
    for name in ("worker", "live_api", "live_stream"):
        if name in _state:
            _state[name].stop()
    if "stripe_stack" in _state:
        _state["stripe_stack"]["api"].stop()
        _state["stripe_stack"]["server"].stop()
    if "tansu" in _state:
        _state["tansu"].stop()
    if "smtp" in _state:
        _state["smtp"].stop()
    if "push_service" in _state:
        _state["push_service"].stop()
    if "moto" in _state:
        _state["moto"].stop()
    if "mariadb_proc" in _state:
        support.stop_private_mariadb(_state["mariadb_proc"], _state["mariadb_dir"])
    if "redis_proc" in _state:
        _state["redis_proc"].terminate()
    else:
        support.flush_redis_dbs(_state.get("redis_urls", []))


def _reset_database(url: str) -> None:
    from sqlalchemy import MetaData, text

    from app.db import make_engine

    engine = make_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in meta.sorted_tables:
            conn.execute(text(f"DROP TABLE IF EXISTS `{table.name}`"))
        conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    engine.dispose()


@pytest.fixture(scope="session")
def app():
    import redis

    from app import create_app
    from app.cli import upgrade_database

    url = os.environ["DATABASE_URL"]
    _reset_database(url)
    upgrade_database(url)  # a fresh database migrated to head: the suite runs on the migrated schema
    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    flask_app = create_app({"TESTING": True})
    from tasks.celery_app import set_flask_app

    set_flask_app(flask_app)
    return flask_app


TABLES_IN_DELETE_ORDER = ("notifications", "devices", "checkin_scans", "event_staff", "tickets", "orders", "seats",
                         "refunds", "payments", "reservations", "sections", "events", "outbox", "users")


MYSQL_ROW_IS_REFERENCED = 1451


def _delete_all_rows(engine) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        # a task of the previous test may still hold row locks: wait for it rather than fail
        conn.execute(text("SET SESSION innodb_lock_wait_timeout = 60"))
        try:
            for table in TABLES_IN_DELETE_ORDER:
                conn.execute(text(f"DELETE FROM {table}"))
        finally:
            # the connection returns to the pool: restore the app's setting
            conn.execute(text("SET SESSION innodb_lock_wait_timeout = 5"))


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    if "app" not in request.fixturenames:
        yield
        return
    flask_app = request.getfixturevalue("app")
    from sqlalchemy.exc import IntegrityError

    from app.extensions import db, redis_store

    with flask_app.app_context():
        # Redis first: the hold writer and the workers get no more of the previous test's requests
        redis_store.client.flushdb()
        for attempt in range(5):
            try:
                _delete_all_rows(db.engine)
                break
            except IntegrityError as error:
                # a writer that had read its batch before the flush committed it between two
                # DELETEs (a child row of a parent about to go): delete everything again
                if error.orig.args[0] != MYSQL_ROW_IS_REFERENCED or attempt == 4:
                    raise
        redis_store.client.flushdb()  # and anything a task rebuilt from the rows meanwhile
    from app.booking.intake import catalogue

    catalogue.clear()  # the API process's catalogue cache: no facts may outlive a test
    yield


@pytest.fixture()
def client(app):
    return app.test_client()


def _multiproc_dir(name: str) -> str:
    """Prometheus multiprocess files of the worker / gunicorn subprocesses (scraped by tests)."""
    if f"prom_{name}" not in _state:
        _state[f"prom_{name}"] = tempfile.mkdtemp(prefix=f"prom-{name}-")
    return _state[f"prom_{name}"]


@pytest.fixture(scope="session")
def worker_metrics_dir(worker) -> str:
    return _multiproc_dir("worker")


@pytest.fixture(scope="session")
def worker(app) -> support.CeleryProcess:
    """One real `celery -A tasks worker` (prefork) for the session."""
    if "worker" not in _state:
        _state["worker"] = support.start_worker(env={"PROMETHEUS_MULTIPROC_DIR": _multiproc_dir("worker"),
                                                     "LOG_LEVEL": "INFO"})
    return _state["worker"]


@pytest.fixture(scope="session")
def live_api(app) -> support.LiveApi:
    """The REST server as deployed (granian, `python -m app.serve`): concurrent clients, kills."""
    if "live_api" not in _state:
        _state["live_api"] = support.LiveApi(env={"PROMETHEUS_MULTIPROC_DIR": _multiproc_dir("api")})
    return _state["live_api"]


@pytest.fixture(scope="session")
def live_stream(app) -> support.LiveApi:
    """The SSE server as deployed (gunicorn with gevent workers): the waiting room's streams."""
    if "live_stream" not in _state:
        _state["live_stream"] = support.LiveApi(server="gunicorn", env={
            "SSE_INTERVAL_SECONDS": "0.2", "PROMETHEUS_MULTIPROC_DIR": _multiproc_dir("stream")})
    return _state["live_stream"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright (tests/browser.py has the page recorder)."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM

    assert Path(CHROMIUM).exists(), "chromium is required: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


STRIPE_WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def stripe_stack(app) -> dict[str, Any]:
    """localstripe (a stateful fake of Stripe's API with a test Stripe.js) as a process, and a REST
    server as deployed that pays through it, its webhooks registered there."""
    import stripe

    if "stripe_stack" not in _state:
        server = support.Localstripe()
        api = support.LiveApi(workers=1, env={
            "PAYMENT_PROVIDER": "stripe", "STRIPE_SECRET_KEY": "sk_test_12345",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_12345", "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "STRIPE_API_BASE": server.url, "STRIPE_JS_URL": f"{server.url}/js.stripe.com/v3/"})
        server.webhook("tickets", f"{api.url}/api/payments/stripe/webhook", STRIPE_WEBHOOK_SECRET)
        client = stripe.StripeClient("sk_test_12345", base_addresses={"api": server.url})
        _state["stripe_stack"] = {"api": api, "stripe": client, "server": server,
                                  "webhook_secret": STRIPE_WEBHOOK_SECRET}
    return _state["stripe_stack"]


@pytest.fixture(scope="session")
def tansu(app) -> support.Tansu:
    return _state["tansu"]


@pytest.fixture(scope="session")
def push_service(app) -> support.PushService:
    return _state["push_service"]


@pytest.fixture(scope="session")
def smtp_sink(app) -> support.SmtpSink:
    return _state["smtp"]


# --- factories ------------------------------------------------------------------------------------

_PASSWORD = "test-Passw0rd-2026"
_HASH: list[str] = []


@pytest.fixture()
def make_user(app):
    """Create a user directly (fast) and return {id, email, token, headers}."""
    from flask_jwt_extended import create_access_token
    from werkzeug.security import generate_password_hash

    from app.auth.models import User
    from app.extensions import db

    if not _HASH:
        _HASH.append(generate_password_hash(_PASSWORD))

    def factory(email: str | None = None, admin: bool = False, locale: str = "en",
                verified: bool = True, notify_by_email: bool = False) -> dict[str, Any]:
        """``notify_by_email``: off here (the product's default is on), so a test counts only the
        channels it registers; the account e-mail's own tests turn it on."""
        from app.db import utcnow
        from app.notifications.services import refresh_cache

        with app.app_context():
            user = User(email=email or f"user-{uuid.uuid4().hex[:10]}@test.local", name="Test User",
                        password_hash=_HASH[0], is_admin=admin, locale=locale,
                        email_verified_at=utcnow() if verified else None, notify_by_email=notify_by_email)
            db.session.add(user)
            db.session.commit()
            if notify_by_email:
                refresh_cache(user.id)  # as a login does
            token = create_access_token(identity=str(user.id), additional_claims={"roles": user.roles,
                                                                                  "ev": verified})
            return {"id": user.id, "email": user.email, "password": _PASSWORD, "token": token,
                    "headers": {"Authorization": f"Bearer {token}"}}

    return factory


@pytest.fixture()
def admin(make_user) -> dict[str, Any]:
    return make_user(admin=True)


@pytest.fixture()
def make_event(app):
    """An event whose sale is open now, with optional sections: [{"name", "capacity"} | {"rows", ...}]."""
    from app.catalogue.services import create_event, create_section
    from app.db import transaction, utcnow

    def factory(sections: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
        now = utcnow()
        data = {"name": f"Event {uuid.uuid4().hex[:6]}", "venue": "Hall", "starts_at": now + timedelta(days=10),
                "sale_opens_at": now - timedelta(minutes=1), "sale_closes_at": None, "admit_per_minute": 600,
                "max_active": 1000, "admission_window_seconds": 600, "prequeue_minutes": 15,
                "heartbeat_timeout_seconds": 60, "max_per_user": 4, "hold_seconds": 300}
        data.update(overrides)
        with app.app_context(), transaction():
            event = create_event(data)
            created = []
            for spec in sections or []:
                section = create_section(event.id, {"price_cents": 5000, "currency": "EUR", **spec})
                created.append({"id": section.id, "kind": section.kind, "capacity": section.capacity})
            return {"id": event.id, "sections": created}

    return factory


@pytest.fixture()
def private_redis():
    """A redis-server of the test's own on a free port (AOF on), which it may stop and start."""
    import shutil

    from tests.integration.test_faults import PrivateRedis

    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)
