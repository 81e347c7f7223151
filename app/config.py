"""Configuration from environment variables (12-factor).

Every setting has a documented default (see README.md, "Configuration"); the defaults are the
embedded development setup: MySQL and Redis on this machine (`make run` starts a private MariaDB,
Redis and Kafka), and log-only integrations.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULT_JWT_SECRET = "dev-insecure-jwt-secret-change-me"
# MySQL/MariaDB on this machine (`make run` sets DATABASE_URL to the private MariaDB it starts)
DEFAULT_DATABASE_URL = "mysql+pymysql://root@127.0.0.1:3306/tickets"
# `make run` writes the addresses of what it started here, so that every CLI in a second terminal
# (flask, celery, the exporter) reaches the running system with no variable set by hand.
DEV_ENV_FILE = Path(__file__).resolve().parent.parent / "instance" / "dev.env"


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe to run with (e.g. production with a default secret)."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return default if raw in (None, "") else float(raw)


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(env: dict[str, str], name: str, default: list[str]) -> list[str]:
    """A comma-separated list; unset keeps the default."""
    raw = env.get(name)
    return default if raw in (None, "") else [item.strip() for item in raw.split(",") if item.strip()]


def dev_env_file() -> Path:
    return Path(os.environ.get("TICKETS_DEV_ENV") or DEV_ENV_FILE)


def load_dev_env() -> dict[str, str]:
    """Fill unset variables of this process from `make run`'s instance/dev.env, in development only.

    A variable already set always wins, and APP_ENV=production|testing never reads the file, so a
    forgotten dev.env cannot redirect a deployment or the test suite. Returns what it set."""
    if os.environ.get("APP_ENV", "development") != "development" or os.environ.get("TICKETS_DEV_ENV") == "off":
        return {}
    path = dev_env_file()
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    added = {k: v for k, v in dotenv_values(path).items() if v is not None and not os.environ.get(k)}
    os.environ.update(added)
    return added


def _limiter_storage(redis_url: str, env: dict[str, str]) -> str:
    """flask-limiter's storage: the app's Redis, through the `limits` cluster client in cluster mode."""
    if _bool(env, "REDIS_CLUSTER", False):
        return "redis+cluster://" + redis_url.split("://", 1)[1].split("/", 1)[0]
    return redis_url


def load_config(env: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Build the Flask/app configuration from ``env`` (default: ``os.environ`` plus `make run`'s
    instance/dev.env in development)."""
    if env is None:
        load_dev_env()
    env = dict(os.environ if env is None else env)
    redis_url = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    app_env = env.get("APP_ENV", "development")
    if app_env not in {"development", "production", "testing"}:
        raise ConfigError(f"APP_ENV must be development|production|testing, got {app_env!r}")
    access_minutes = _int(env, "JWT_ACCESS_TOKEN_MINUTES", 15)
    if _bool(env, "REDIS_CLUSTER", False) and not env.get("CELERY_BROKER_URL"):
        raise ConfigError("REDIS_CLUSTER=true needs CELERY_BROKER_URL: Celery's broker and RedBeat run on a "
                          "standalone Redis (kombu has no cluster transport)")
    config: dict[str, Any] = {
        "APP_ENV": app_env,
        # production names its database; elsewhere the local default
        "DATABASE_URL": env.get("DATABASE_URL") or ("" if app_env == "production" else DEFAULT_DATABASE_URL),
        "REDIS_URL": redis_url,
        "REDIS_MAX_CONNECTIONS": _int(env, "REDIS_MAX_CONNECTIONS", 100),
        # REDIS_URL names any node of a Redis Cluster; Celery's broker and RedBeat stay on a
        # standalone Redis (CELERY_BROKER_URL), since kombu has no cluster transport
        "REDIS_CLUSTER": _bool(env, "REDIS_CLUSTER", False),
        "CELERY_BROKER_URL": env.get("CELERY_BROKER_URL") or redis_url,
        "CELERY_RESULT_BACKEND": env.get("CELERY_RESULT_BACKEND") or env.get("CELERY_BROKER_URL") or redis_url,
        # Tasks are published after commit; in tests with no worker this can be switched off.
        "CELERY_ENABLED": _bool(env, "CELERY_ENABLED", True),
        "CELERY_TASK_EVENTS": _bool(env, "CELERY_TASK_EVENTS", True),  # Flower's feed (off: beat, housekeeping)
        "HOUSEKEEPING_QUEUE": env.get("HOUSEKEEPING_QUEUE") or "housekeeping",
        "REDBEAT_REDIS_URL": env.get("REDBEAT_REDIS_URL") or env.get("CELERY_BROKER_URL") or redis_url,
        "REDBEAT_KEY_PREFIX": env.get("REDBEAT_KEY_PREFIX") or "redbeat:",
        "KAFKA_BOOTSTRAP_SERVERS": env.get("KAFKA_BOOTSTRAP_SERVERS", ""),
        "KAFKA_TOPIC_PREFIX": env.get("KAFKA_TOPIC_PREFIX", "tickets"),
        "OUTBOX_RETENTION_HOURS": _int(env, "OUTBOX_RETENTION_HOURS", 168),
        "AWS_REGION": env.get("AWS_REGION", "eu-west-1"),
        "SNS_ENDPOINT_URL": env.get("SNS_ENDPOINT_URL") or None,
        "SNS_FCM_APPLICATION_ARN": env.get("SNS_FCM_APPLICATION_ARN", ""),
        "SNS_APNS_APPLICATION_ARN": env.get("SNS_APNS_APPLICATION_ARN", ""),
        "SNS_SMS_ENABLED": _bool(env, "SNS_SMS_ENABLED", bool(env.get("SNS_ENDPOINT_URL"))),
        "SMTP_HOST": env.get("SMTP_HOST", ""),
        "SMTP_PORT": _int(env, "SMTP_PORT", 25),
        "SMTP_FROM": env.get("SMTP_FROM", "tickets@example.com"),
        "SMTP_USERNAME": env.get("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD", ""),
        # an e-mail address or phone number is notified only once proved with a code (off: development only)
        "VERIFY_CHANNELS": _bool(env, "VERIFY_CHANNELS", True),
        "NOTIFY_MAX_CHANNELS": _int(env, "NOTIFY_MAX_CHANNELS", 5),
        "CHANNEL_LIMIT_PER_USER": env.get("CHANNEL_LIMIT_PER_USER") or "20 per hour",
        "CODE_LIMIT_PER_USER": env.get("CODE_LIMIT_PER_USER") or "5 per hour",
        # codes sent to one address or number, whatever asked for them (any account, any route)
        "CODE_LIMIT_PER_DESTINATION": env.get("CODE_LIMIT_PER_DESTINATION") or "5 per hour",
        # buying needs a verified e-mail (off: development only)
        "REQUIRE_VERIFIED_EMAIL": _bool(env, "REQUIRE_VERIFIED_EMAIL", True),
        # parallel SNS/SMTP calls per notification task (sending is I/O-bound)
        "NOTIFY_SEND_CONCURRENCY": _int(env, "NOTIFY_SEND_CONCURRENCY", 32),
        # Web Push (a closed tab hears "your turn"): the VAPID key pair (base64url, raw P-256: the
        # private scalar, the uncompressed public point); unset, web push is off
        "WEBPUSH_VAPID_PRIVATE_KEY": env.get("WEBPUSH_VAPID_PRIVATE_KEY", ""),
        "WEBPUSH_VAPID_PUBLIC_KEY": env.get("WEBPUSH_VAPID_PUBLIC_KEY", ""),
        "WEBPUSH_SUBJECT": env.get("WEBPUSH_SUBJECT") or "mailto:tickets@example.com",
        # the push services a browser subscription may point at (host suffixes): the worker POSTs to
        # the endpoint, so an arbitrary URL would let anyone aim it at internal hosts
        "WEBPUSH_ENDPOINT_HOSTS": _list(env, "WEBPUSH_ENDPOINT_HOSTS", [
            "fcm.googleapis.com", "updates.push.services.mozilla.com", "push.services.mozilla.com",
            "notify.windows.com", "push.apple.com"]),
        "NOTIFY_DEEP_LINK_TEMPLATE": env.get("NOTIFY_DEEP_LINK_TEMPLATE", "ticketapp://queue/{event_id}"),
        "PUBLIC_BASE_URL": (env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
        "NOTIFY_WEB_LINK_TEMPLATE": env.get(
            "NOTIFY_WEB_LINK_TEMPLATE",
            (env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/") + "/events/{event_id}/queue"
        ),
        "JWT_SECRET_KEY": env.get("JWT_SECRET_KEY") or DEFAULT_JWT_SECRET,
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=access_minutes),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=_int(env, "JWT_REFRESH_TOKEN_DAYS", 14)),
        # Admission passes are signed with their own key so a leaked pass key cannot mint logins.
        "ADMISSION_SECRET_KEY": env.get("ADMISSION_SECRET_KEY") or (env.get("JWT_SECRET_KEY") or DEFAULT_JWT_SECRET)
        + ":admission",
        # `fake` (development and tests only) or `stripe` (production refuses anything else)
        "PAYMENT_PROVIDER": env.get("PAYMENT_PROVIDER") or ("stripe" if app_env == "production" else "fake"),
        "STRIPE_SECRET_KEY": env.get("STRIPE_SECRET_KEY", ""),
        "STRIPE_PUBLISHABLE_KEY": env.get("STRIPE_PUBLISHABLE_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET", ""),
        # tests and `make run`: localstripe's address; unset in production (Stripe's own API)
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE", ""),
        "STRIPE_JS_URL": env.get("STRIPE_JS_URL") or "https://js.stripe.com/v3/",
        "HOLD_SECONDS": _int(env, "HOLD_SECONDS", 300),
        "MAX_TICKETS_PER_USER": _int(env, "MAX_TICKETS_PER_USER", 4),
        # the hold writer (a thread of every worker that consumes the `booking` queue)
        "HOLD_WRITER_ENABLED": _bool(env, "HOLD_WRITER_ENABLED", True),
        "HOLD_WRITER_BATCH": _int(env, "HOLD_WRITER_BATCH", 500),
        "HOLD_WRITER_BLOCK_MS": _int(env, "HOLD_WRITER_BLOCK_MS", 50),
        "HOLD_WRITER_LINGER_MS": _int(env, "HOLD_WRITER_LINGER_MS", 25),
        "HOLD_WRITER_CLAIM_IDLE_MS": _int(env, "HOLD_WRITER_CLAIM_IDLE_MS", 10_000),
        "QUEUE_ADVANCE_INTERVAL_SECONDS": _float(env, "QUEUE_ADVANCE_INTERVAL_SECONDS", 1.0),
        "QUEUE_RATE_LIMIT_PER_SECOND": _int(env, "QUEUE_RATE_LIMIT_PER_SECOND", 10),
        # a sale closes (its Redis keys deleted, its figures kept in MySQL) this long after its
        # event starts or its sale closes (app/queue/lifecycle.py)
        "SALE_CLOSE_AFTER_START_MINUTES": _int(env, "SALE_CLOSE_AFTER_START_MINUTES", 60),
        # off on the threaded REST server (app/serve.py): streams run on the gevent server
        "SSE_ENABLED": _bool(env, "SSE_ENABLED", True),
        "SSE_INTERVAL_SECONDS": _float(env, "SSE_INTERVAL_SECONDS", 1.0),
        "SSE_MAX_INTERVAL_SECONDS": _float(env, "SSE_MAX_INTERVAL_SECONDS", 5.0),
        "SSE_MAX_SECONDS": _int(env, "SSE_MAX_SECONDS", 3600),
        # open streams per user per sale, and per sale (each is a held connection): 429 beyond
        "SSE_MAX_STREAMS_PER_USER": _int(env, "SSE_MAX_STREAMS_PER_USER", 3),
        "SSE_MAX_STREAMS_PER_EVENT": _int(env, "SSE_MAX_STREAMS_PER_EVENT", 20_000),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        "LOG_JSON": _bool(env, "LOG_JSON", True),
        # ECS logs (app/observability/logging.py): `service.name`; LOG_DATASET overrides `event.dataset`
        "SERVICE_NAME": env.get("SERVICE_NAME") or "tickets",
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 64 * 1024),
        # rate limits of the account endpoints (flask-limiter syntax; per client address unless noted)
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or _limiter_storage(redis_url, env),
        # off: flask-limiter would put a Retry-After on every answer of a limited route; app/errors.py
        # puts one on the 429 only
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_SWALLOW_ERRORS": True,  # Redis down: the endpoint answers, unlimited, rather than 500
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "LOGIN_LIMIT_PER_ACCOUNT": env.get("LOGIN_LIMIT_PER_ACCOUNT") or "10 per 15 minutes",  # failed logins
        "LOGIN_LIMIT_PER_ADDRESS": env.get("LOGIN_LIMIT_PER_ADDRESS") or "30 per minute",
        "REGISTER_LIMIT_PER_ADDRESS": env.get("REGISTER_LIMIT_PER_ADDRESS") or "10 per hour",
        "REFRESH_LIMIT_PER_ADDRESS": env.get("REFRESH_LIMIT_PER_ADDRESS") or "60 per minute",
        # proxies in front of the API whose X-Forwarded-For is trusted (k8s ingress: 1)
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        # who may read the API's /metrics (app/observability/metrics.py: metrics_access_guard)
        "METRICS_TOKEN": env.get("METRICS_TOKEN", ""),
        "METRICS_ALLOW_FROM": env.get("METRICS_ALLOW_FROM")
        or "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7",
        # flask-smorest / OpenAPI
        "API_TITLE": "Ticket reservation platform",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        # pinned assets of the swagger-ui-bundle package, served by this app (app/web): no CDN
        "OPENAPI_SWAGGER_UI_URL": "/api/docs/assets/",
        # every operation sends the bearer token Swagger UI's Authorize holds (public operations
        # ignore it): without a declared requirement, Authorize sends nothing
        "API_SPEC_OPTIONS": {"security": [{"bearerAuth": []}]},
        # the web app (app/web): the browser's tokens live in httpOnly cookies with double-submit
        # CSRF; bearer headers keep working for the REST API
        "JWT_TOKEN_LOCATION": ["headers", "cookies"],
        "JWT_COOKIE_SECURE": app_env == "production",
        "JWT_COOKIE_SAMESITE": "Lax",
        "JWT_COOKIE_CSRF_PROTECT": True,
        "JWT_ACCESS_COOKIE_PATH": "/",
        "JWT_REFRESH_COOKIE_PATH": "/api/auth/",
        "JWT_SESSION_COOKIE": False,
        "BABEL_DEFAULT_LOCALE": "en",
        # links on the operators' console
        "FLOWER_URL": env.get("FLOWER_URL") or "http://127.0.0.1:5555",
        "GRAFANA_URL": env.get("GRAFANA_URL", ""),  # the console links to Grafana only where one runs
        "LANGUAGES": ("en", "ko"),
        "TICKET_SIGNING_KEY": env.get("TICKET_SIGNING_KEY") or env.get("ADMISSION_SECRET_KEY")
        or (env.get("JWT_SECRET_KEY") or DEFAULT_JWT_SECRET) + ":tickets",
        "PROPAGATE_EXCEPTIONS": False,
    }
    config.update(overrides)
    if config["DATABASE_URL"] and not config["DATABASE_URL"].startswith(("mysql", "mariadb")):
        # the record is MySQL/MariaDB everywhere (row locks, READ COMMITTED): no stand-in; production
        # must name one (check_production_safety)
        raise ConfigError("DATABASE_URL must name a MySQL/MariaDB database (mysql+pymysql://user:pw@host/db); "
                          "`make run` and `make test` start a private MariaDB when it is not set")
    return config


def check_production_safety(config: dict[str, Any]) -> None:
    """Refuse to run production with secrets that anyone can read in this repository."""
    if config["APP_ENV"] != "production":
        return
    secret = config.get("JWT_SECRET_KEY") or ""
    if secret == DEFAULT_JWT_SECRET or len(secret) < 32 or "CHANGE_ME" in secret:
        raise ConfigError("APP_ENV=production requires JWT_SECRET_KEY (at least 32 characters, not the default)")
    admission = config["ADMISSION_SECRET_KEY"]
    if admission == DEFAULT_JWT_SECRET + ":admission" or "CHANGE_ME" in admission:
        raise ConfigError("APP_ENV=production requires a non-default ADMISSION_SECRET_KEY or JWT_SECRET_KEY")
    for name in ("VERIFY_CHANNELS", "REQUIRE_VERIFIED_EMAIL", "RATELIMIT_ENABLED"):
        if not config.get(name, True):
            raise ConfigError(f"{name} may be switched off in development only")
    if not config["DATABASE_URL"].startswith(("mysql", "mariadb")):
        raise ConfigError("APP_ENV=production requires DATABASE_URL pointing at MySQL/MariaDB "
                          "(mysql+pymysql://user:pw@host/db)")
    if config["PAYMENT_PROVIDER"] != "stripe":
        raise ConfigError(f"APP_ENV=production refuses PAYMENT_PROVIDER={config['PAYMENT_PROVIDER']!r}: the fake "
                          "provider confirms any tok_ok… string for free; set PAYMENT_PROVIDER=stripe")
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY"):
        if not config.get(name) or "CHANGE_ME" in config[name]:
            raise ConfigError(f"APP_ENV=production with PAYMENT_PROVIDER=stripe requires {name}")
