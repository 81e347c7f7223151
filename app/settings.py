"""The one typed, frozen settings object, and the only reader of the environment (12-factor).

``Settings`` lists every variable the product reads, with its type, default and meaning; the
defaults are the embedded development set-up (MySQL and Redis on this machine; `make run` starts a
private MariaDB, Redis and Kafka) and log-only integrations. ``PRODUCTION_RULES`` says what
APP_ENV=production refuses, and ``Settings.refuse_unsafe_production`` applies it. Flask's config
(``flask_config``), Celery's settings (celeryconfig.celery_settings), the DB engine, the log
formatter, the API servers and the metrics exporter all read this object.

docs/settings.md is generated from here (``python -m app.settings > docs/settings.md``; a test
keeps it current).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-insecure-jwt-secret-change-me"
# MySQL/MariaDB on this machine (`make run` sets DATABASE_URL to the private MariaDB it starts)
DEFAULT_DATABASE_URL = "mysql+pymysql://root@127.0.0.1:3306/tickets"
# `make run` writes the addresses of what it started here, so that every CLI in a second terminal
# (flask, celery, the exporter) reaches the running system with no variable set by hand.
DEV_ENV_FILE = Path(__file__).resolve().parent.parent / "instance" / "dev.env"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ConfigError(RuntimeError):
    """Raised when the configuration is invalid or unsafe to run with (e.g. production with a default
    secret)."""


# set while ``Settings.from_env`` reads a given mapping instead of the process's environment
_EXPLICIT: ContextVar[bool] = ContextVar("settings_from_mapping", default=False)


def _comma_list(value: Any) -> Any:
    return tuple(item.strip() for item in value.split(",") if item.strip()) if isinstance(value, str) else value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]


def _doc(text: str, default: str | None = None) -> Any:
    """A field's meaning for docs/settings.md; ``default`` describes a derived default."""
    return {"description": text, "json_schema_extra": {"derived_default": default} if default else None}


class Settings(BaseSettings):
    """Every environment variable of the product. Empty counts as unset."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, env_ignore_empty=True, extra="ignore")

    # --- the environment and the record ---------------------------------------------------------
    APP_ENV: Literal["development", "production", "testing"] = Field(
        "development", **_doc("`development`, `production` or `testing`"))
    DATABASE_URL: str = Field("", **_doc(
        "`mysql+pymysql://user:pw@host/db` (InnoDB, utf8mb4); MySQL/MariaDB only, in every environment",
        f"`{DEFAULT_DATABASE_URL}` (`make run`: its private MariaDB); none in production"))
    DATABASE_TLS: bool | None = Field(None, **_doc(
        "TLS to MySQL, one shared context per process", "off for a loopback host, else on"))
    DATABASE_TLS_CA: str = Field("", **_doc("CA file for `DATABASE_TLS` (unset: the system's CAs)"))
    DATABASE_POOL_SIZE: int = Field(20, ge=1, **_doc(
        "fixed connections per process (no overflow: no connect per request under load)"))
    SALE_CLOSE_AFTER_START_MINUTES: int = Field(60, **_doc(
        "a sale closes (final figures to MySQL, its Redis keys deleted) this long after its event starts "
        "or its sale closes (docs/booking.md)"))

    # --- Redis, Celery, Kafka ------------------------------------------------------------------
    REDIS_URL: str = Field("redis://127.0.0.1:6379/0", **_doc(
        "waiting rooms, gate, reserve streams, token blocklist, device cache"))
    REDIS_MAX_CONNECTIONS: int = Field(100, ge=1, **_doc(
        "per-process pool; callers wait (up to 10 s) for a free connection"))
    REDIS_CLUSTER: bool = Field(False, **_doc(
        "`REDIS_URL` names any node of a Redis Cluster (each sale in one slot); needs `CELERY_BROKER_URL` "
        "on a standalone Redis, since kombu has no cluster transport (docs/scale.md)"))
    CELERY_BROKER_URL: str = Field("", **_doc("Celery's broker (Redis)", "`REDIS_URL`"))
    CELERY_RESULT_BACKEND: str = Field("", **_doc("Celery's result backend", "`CELERY_BROKER_URL`"))
    CELERY_ENABLED: bool = Field(True, **_doc(
        "send tasks (after commit); off only in tests with no worker"))
    CELERY_TASK_EVENTS: bool = Field(True, **_doc(
        "task events for Flower; off for beat and the housekeeping worker, so the sale's work shows"))
    HOUSEKEEPING_QUEUE: str = Field("housekeeping", **_doc("the queue beat's periodic ticks are sent to"))
    REDBEAT_REDIS_URL: str = Field("", **_doc("beat's schedule and its single-scheduler lock",
                                              "`CELERY_BROKER_URL`"))
    REDBEAT_KEY_PREFIX: str = Field("redbeat:", **_doc("prefix of RedBeat's keys"))
    KAFKA_BOOTSTRAP_SERVERS: str = Field("", **_doc(
        "e.g. `b-1:9092,b-2:9092`; empty: the outbox relay logs and keeps the rows"))
    KAFKA_TOPIC_PREFIX: str = Field("tickets", **_doc("topics are `<prefix>.<aggregate>`"))
    OUTBOX_RETENTION_HOURS: int = Field(168, **_doc("published outbox rows are pruned after this"))

    # --- notifications ---------------------------------------------------------------------------
    AWS_REGION: str = Field("eu-west-1", **_doc("SNS region"))
    SNS_ENDPOINT_URL: str | None = Field(None, **_doc("set for LocalStack/moto; unset: real AWS"))
    SNS_FCM_APPLICATION_ARN: str = Field("", **_doc("SNS platform application for FCM (empty: push is logged)"))
    SNS_APNS_APPLICATION_ARN: str = Field("", **_doc("SNS platform application for APNs (empty: push is logged)"))
    SNS_SMS_ENABLED: bool = Field(False, **_doc("send SMS through SNS (off: logged)",
                                                "on when `SNS_ENDPOINT_URL` is set"))
    SMTP_HOST: str = Field("", **_doc("e-mail server (empty: e-mail is logged)"))
    SMTP_PORT: int = Field(25, **_doc("e-mail server port"))
    SMTP_FROM: str = Field("tickets@example.com", **_doc("sender of every e-mail"))
    SMTP_USERNAME: str = Field("", **_doc("with `SMTP_PASSWORD`: STARTTLS and login"))
    SMTP_PASSWORD: str = Field("", **_doc("see `SMTP_USERNAME`"))
    VERIFY_CHANNELS: bool = Field(True, **_doc(
        "an e-mail address or phone number is notified only once proved with a code"))
    REQUIRE_VERIFIED_EMAIL: bool = Field(True, **_doc("buying needs a verified e-mail"))
    NOTIFY_MAX_CHANNELS: int = Field(5, **_doc("channels per account"))
    NOTIFY_SEND_CONCURRENCY: int = Field(32, ge=1, **_doc(
        "calls in flight per channel (push, e-mail, SMS, web push) and notification worker process, "
        "shared by its tasks; size it as sends/s x the provider's latency (800/s x 40 ms = 32)"))
    CHANNEL_LIMIT_PER_USER: str = Field("20 per hour", **_doc("channel registrations per account"))
    CODE_LIMIT_PER_USER: str = Field("5 per hour", **_doc("verification codes asked for per account"))
    CODE_LIMIT_PER_DESTINATION: str = Field("5 per hour", **_doc(
        "codes sent to one address or number, whatever asked for them"))
    WEBPUSH_VAPID_PRIVATE_KEY: str = Field("", **_doc(
        "Web Push: the VAPID private key (base64url raw P-256 scalar; `make run` keeps a pair in "
        "`var/vapid.json`); unset: web push is off"))
    WEBPUSH_VAPID_PUBLIC_KEY: str = Field("", **_doc("the VAPID public key (base64url uncompressed point)"))
    WEBPUSH_SUBJECT: str = Field("mailto:tickets@example.com", **_doc("the VAPID contact"))
    WEBPUSH_ENDPOINT_HOSTS: CommaList = Field(
        ("fcm.googleapis.com", "updates.push.services.mozilla.com", "push.services.mozilla.com",
         "notify.windows.com", "push.apple.com"),
        **_doc("the push services a browser subscription may point at (host suffixes, comma-separated): the "
               "worker POSTs to the endpoint, so an arbitrary URL would let anyone aim it at internal hosts"))
    NOTIFY_DEEP_LINK_TEMPLATE: str = Field("ticketapp://queue/{event_id}", **_doc("the app link in every notice"))
    PUBLIC_BASE_URL: str = Field("http://127.0.0.1:8000", **_doc(
        "where the web app is reached (notice and receipt links; `make run`: its own address)"))
    NOTIFY_WEB_LINK_TEMPLATE: str = Field("", **_doc("the web fallback link of a notice: the waiting-room page",
                                                     "`PUBLIC_BASE_URL/events/{event_id}/queue`"))

    # --- secrets and money ---------------------------------------------------------------------
    JWT_SECRET_KEY: str = Field(DEFAULT_JWT_SECRET, **_doc("signs access and refresh tokens"))
    JWT_ACCESS_TOKEN_MINUTES: int = Field(15, ge=1, **_doc("lifetime of an access token"))
    JWT_REFRESH_TOKEN_DAYS: int = Field(14, ge=1, **_doc("lifetime of a refresh token"))
    ADMISSION_SECRET_KEY: str = Field("", **_doc(
        "signs admission passes (its own key, so that a leaked pass key cannot mint logins)",
        "`JWT_SECRET_KEY` + `:admission`"))
    TICKET_SIGNING_KEY: str = Field("", **_doc("signs the tickets' QR codes",
                                               "`ADMISSION_SECRET_KEY`"))
    PAYMENT_PROVIDER: Literal["fake", "stripe"] = Field("fake", **_doc(
        "`stripe`: real money through Stripe's API (docs/payments.md). `fake` (development and tests only): "
        "approves tokens starting `tok_ok`, declines others", "`fake`; production: `stripe`"))
    STRIPE_SECRET_KEY: str = Field("", **_doc("Stripe's secret API key"))
    STRIPE_PUBLISHABLE_KEY: str = Field("", **_doc("Stripe's publishable key (the checkout page)"))
    STRIPE_WEBHOOK_SECRET: str = Field("", **_doc("verifies Stripe's webhook signatures"))
    STRIPE_API_BASE: str = Field("", **_doc("tests and `make run`: localstripe's address; unset: Stripe's own"))
    STRIPE_JS_URL: str = Field("https://js.stripe.com/v3/", **_doc("where the checkout page loads Stripe.js"))

    # --- the sale ------------------------------------------------------------------------------
    HOLD_SECONDS: int = Field(300, ge=1, **_doc("default hold of a new event (per event thereafter)"))
    MAX_TICKETS_PER_USER: int = Field(4, ge=1, **_doc("default per-fan limit of a new event"))
    HOLD_WRITER_ENABLED: bool = Field(True, **_doc(
        "run the hold writer as a thread of every worker that consumes `booking` (docs/booking.md)"))
    HOLD_WRITER_BATCH: int = Field(500, ge=1, **_doc("accepted requests per hold-writer batch"))
    HOLD_WRITER_BLOCK_MS: int = Field(50, ge=1, **_doc("how long the hold writer waits for a new request"))
    HOLD_WRITER_LINGER_MS: int = Field(25, ge=0, **_doc("how long it lets a batch fill"))
    HOLD_WRITER_CLAIM_IDLE_MS: int = Field(10_000, ge=1, **_doc(
        "an entry a dead writer left unacknowledged this long is claimed by another"))
    QUEUE_ADVANCE_INTERVAL_SECONDS: float = Field(1.0, gt=0, **_doc("beat period of the waiting-room advancer"))
    QUEUE_RATE_LIMIT_PER_SECOND: int = Field(10, ge=1, **_doc(
        "join/status calls per user per sale per second (else 429)"))
    SSE_ENABLED: bool = Field(True, **_doc(
        "whether this server serves `GET /api/queue/{id}/stream` (off in `python -m app.serve`: streams "
        "belong to the gevent server; off, it answers 503 `stream_unavailable`)"))
    SSE_INTERVAL_SECONDS: float = Field(1.0, gt=0, **_doc(
        "SSE tick: each stream process reads a sale's serving figures once per tick and updates every "
        "open stream of the sale from them"))
    SSE_MAX_SECONDS: int = Field(3600, ge=1, **_doc("longest stream"))
    SSE_MAX_STREAMS_PER_USER: int = Field(3, ge=1, **_doc("open streams per user per sale (429 beyond)"))
    SSE_MAX_STREAMS_PER_EVENT: int = Field(20_000, ge=1, **_doc("open streams per sale (429 beyond)"))

    # --- the edge: limits, proxies, sizes --------------------------------------------------------
    MAX_CONTENT_LENGTH: int = Field(64 * 1024, ge=1, **_doc("largest request body (bytes)"))
    RATELIMIT_ENABLED: bool = Field(True, **_doc("the account endpoints' rate limits"))
    RATELIMIT_STORAGE_URI: str = Field("", **_doc("flask-limiter's storage",
                                                  "`REDIS_URL` (through the cluster client in cluster mode)"))
    LOGIN_LIMIT_PER_ACCOUNT: str = Field("10 per 15 minutes", **_doc("failed logins per account"))
    LOGIN_LIMIT_PER_ADDRESS: str = Field("30 per minute", **_doc("logins per client address"))
    REGISTER_LIMIT_PER_ADDRESS: str = Field("10 per hour", **_doc("registrations per client address"))
    REFRESH_LIMIT_PER_ADDRESS: str = Field("60 per minute", **_doc("token refreshes per client address"))
    TRUSTED_PROXIES: int = Field(0, ge=0, **_doc("proxies whose `X-Forwarded-For` names the client (k8s: 1)"))

    # --- operations ----------------------------------------------------------------------------
    LOG_LEVEL: str = Field("INFO", **_doc("log level"))
    LOG_JSON: bool = Field(True, **_doc(
        "logs in Elastic Common Schema JSON, one object per line (off in `make run`): docs/deploy.md, \"Logs\""))
    SERVICE_NAME: str = Field("tickets", **_doc("`service.name` of every log line"))
    LOG_DATASET: str = Field("", **_doc("`event.dataset` of every log line",
                                        "from the process: `tickets.api`, `tickets.worker`, ..."))
    METRICS_TOKEN: str = Field("", **_doc("a bearer token that may read the API's `/metrics`"))
    METRICS_ALLOW_FROM: str = Field(
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7",
        **_doc("the networks that may read the API's `/metrics` with no token"))
    PROMETHEUS_MULTIPROC_DIR: str = Field("", **_doc(
        "set for the API servers and workers (multiprocess metrics; prometheus_client reads it too)"))
    EXPORTER_PORT: int = Field(9808, **_doc("the metrics exporter's port"))
    EXPORTER_ADDRESS: str = Field("0.0.0.0", **_doc("the metrics exporter's address"))
    FLOWER_URL: str = Field("http://127.0.0.1:5555", **_doc("the console's link to Flower"))
    GRAFANA_URL: str = Field("", **_doc("the console's link to Grafana (none unless set)"))
    BIND: str = Field("0.0.0.0:8000", **_doc("the API servers' address"))
    WEB_CONCURRENCY: int = Field(2, ge=1, **_doc("worker processes of an API server"))
    API_THREADS: int = Field(2, ge=1, **_doc("threads per worker of the REST server (`python -m app.serve`)"))
    API_RESERVE_FAST_PATH: bool = Field(True, **_doc(
        "POST /api/tickets/reserve's accepted answers without Flask's per-request machinery, every "
        "other answer from Flask (app/booking/fast_reserve.py; off: all from Flask)"))
    DRAIN_FILE: str = Field("/tmp/tickets-draining", **_doc(
        "while this file exists the API server answers /readyz with 503 `draining`, so the load balancer "
        "stops sending to it before it stops (k8s: the preStop hook creates it; docs/deploy.md)"))
    GUNICORN_WORKER_CLASS: str = Field("gevent", **_doc("the stream server's gunicorn worker class"))
    GUNICORN_WORKER_CONNECTIONS: int = Field(2000, ge=1, **_doc("open connections per gevent worker"))
    TICKETS_DEV_ENV: str = Field(str(DEV_ENV_FILE), **_doc(
        "the file `make run` writes and CLIs read in development (`off`: not read)", "`instance/dev.env`"))

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """Defaults that follow other settings (each documented with its field)."""
        values = dict(data)
        app_env = values.get("APP_ENV", "development")
        redis_url = values.get("REDIS_URL") or cls.model_fields["REDIS_URL"].default
        base = (values.get("PUBLIC_BASE_URL") or cls.model_fields["PUBLIC_BASE_URL"].default).rstrip("/")
        jwt_secret = values.get("JWT_SECRET_KEY") or DEFAULT_JWT_SECRET
        values["PUBLIC_BASE_URL"] = base
        cluster = str(values.get("REDIS_CLUSTER", "")).lower() in {"1", "true", "yes", "on"}
        if cluster and not values.get(
                "CELERY_BROKER_URL"):
            raise ValueError("REDIS_CLUSTER=true needs CELERY_BROKER_URL: Celery's broker and RedBeat run on a "
                             "standalone Redis (kombu has no cluster transport)")
        values.setdefault("DATABASE_URL", "" if app_env == "production" else DEFAULT_DATABASE_URL)
        values.setdefault("CELERY_BROKER_URL", redis_url)
        values.setdefault("CELERY_RESULT_BACKEND", values["CELERY_BROKER_URL"])
        values.setdefault("REDBEAT_REDIS_URL", values["CELERY_BROKER_URL"])
        values.setdefault("SNS_SMS_ENABLED", bool(values.get("SNS_ENDPOINT_URL")))
        values.setdefault("NOTIFY_WEB_LINK_TEMPLATE", base + "/events/{event_id}/queue")
        values.setdefault("ADMISSION_SECRET_KEY", jwt_secret + ":admission")
        values.setdefault("TICKET_SIGNING_KEY", values.get("ADMISSION_SECRET_KEY"))
        values.setdefault("PAYMENT_PROVIDER", "stripe" if app_env == "production" else "fake")
        if "RATELIMIT_STORAGE_URI" not in values:
            # the `limits` cluster client takes any node's address
            values["RATELIMIT_STORAGE_URI"] = (
                "redis+cluster://" + redis_url.split("://", 1)[1].split("/", 1)[0] if cluster else redis_url)
        return values

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.DATABASE_URL and not self.DATABASE_URL.startswith(("mysql", "mariadb")):
            # the record is MySQL/MariaDB everywhere (row locks, READ COMMITTED): no stand-in
            raise ValueError("DATABASE_URL must name a MySQL/MariaDB database (mysql+pymysql://user:pw@host/db); "
                             "`make run` and `make test` start a private MariaDB when it is not set")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any,
                                   dotenv_settings: Any, file_secret_settings: Any) -> tuple[Any, ...]:
        # the process's environment, under what is passed in; ``from_env`` reads its mapping only
        return (init_settings,) if _EXPLICIT.get() else (init_settings, env_settings)

    @classmethod
    def from_env(cls, env: Mapping[str, Any] | None = None, **overrides: Any) -> Settings:
        """The settings of ``env`` (a mapping like os.environ; None: this process's environment) and
        ``overrides`` (typed values, which win)."""
        given = {name: value for name, value in overrides.items() if name in cls.model_fields}
        token = _EXPLICIT.set(env is not None)
        try:
            if env is not None:
                given = {**{k: v for k, v in env.items() if k in cls.model_fields and v != ""}, **given}
            return cls(**given)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from exc
        finally:
            _EXPLICIT.reset(token)

    @property
    def database_tls(self) -> bool:
        if self.DATABASE_TLS is not None:
            return self.DATABASE_TLS
        from sqlalchemy.engine import make_url

        return (make_url(self.DATABASE_URL).host or "localhost") not in LOOPBACK_HOSTS

    @property
    def log_dataset(self) -> str:
        """This process's `event.dataset`: LOG_DATASET, or how the process was started."""
        if self.LOG_DATASET:
            return self.LOG_DATASET
        argv = " ".join(sys.argv)
        for word, name in (("booking/writer", "writer"), (" beat", "beat"), (" worker", "worker"),
                           ("exporter", "exporter")):
            if word in argv:
                return f"tickets.{name}"
        return "tickets.api"

    def refuse_unsafe_production(self) -> None:
        """Refuse production with secrets anyone can read in this repository, or with a safeguard off."""
        if self.APP_ENV != "production":
            return
        for name, rule in PRODUCTION_RULES.items():
            if rule.refuses(self):
                raise ConfigError(f"APP_ENV=production refuses {name}: {rule.text}")


def _explain(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                     + (f", got {err['input']!r}" if isinstance(err.get("input"), str | int | float) else "")
                     for err in exc.errors())


def _placeholder(value: str) -> bool:
    return not value or "CHANGE_ME" in value


@dataclass(frozen=True)
class ProductionRule:
    """What production refuses for one variable: ``text`` for people, ``refuses`` for the check."""
    text: str
    refuses: Callable[[Settings], bool]


PRODUCTION_RULES: dict[str, ProductionRule] = {
    "JWT_SECRET_KEY": ProductionRule(
        "it must be set, at least 32 characters, not the default and not a `CHANGE_ME` placeholder",
        lambda s: s.JWT_SECRET_KEY == DEFAULT_JWT_SECRET or len(s.JWT_SECRET_KEY) < 32
        or _placeholder(s.JWT_SECRET_KEY)),
    "ADMISSION_SECRET_KEY": ProductionRule(
        "it must not be derived from the default JWT secret, nor a `CHANGE_ME` placeholder",
        lambda s: s.ADMISSION_SECRET_KEY == DEFAULT_JWT_SECRET + ":admission" or _placeholder(s.ADMISSION_SECRET_KEY)),
    "DATABASE_URL": ProductionRule("it must name the MySQL/MariaDB database", lambda s: not s.DATABASE_URL),
    "VERIFY_CHANNELS": ProductionRule("it may be switched off in development only", lambda s: not s.VERIFY_CHANNELS),
    "REQUIRE_VERIFIED_EMAIL": ProductionRule("it may be switched off in development only",
                                             lambda s: not s.REQUIRE_VERIFIED_EMAIL),
    "RATELIMIT_ENABLED": ProductionRule("it may be switched off in development only",
                                        lambda s: not s.RATELIMIT_ENABLED),
    "PAYMENT_PROVIDER": ProductionRule(
        "it must be `stripe`: the fake provider confirms any tok_ok... string for free",
        lambda s: s.PAYMENT_PROVIDER != "stripe"),
    **{name: ProductionRule("it must be set (not `CHANGE_ME`): production takes money through Stripe",
                            lambda s, name=name: _placeholder(getattr(s, name)))
       for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PUBLISHABLE_KEY")},
}


def load_dev_env() -> dict[str, str]:
    """Fill unset variables of this process from `make run`'s instance/dev.env, in development only.

    A variable already set always wins, and APP_ENV=production|testing never reads the file, so a
    forgotten dev.env cannot redirect a deployment or the test suite. Returns what it set."""
    path_setting = os.environ.get("TICKETS_DEV_ENV")
    if os.environ.get("APP_ENV", "development") != "development" or path_setting == "off":
        return {}
    path = dev_env_file()
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    added = {k: v for k, v in dotenv_values(path).items() if v is not None and not os.environ.get(k)}
    os.environ.update(added)
    return added


def dev_env_file() -> Path:
    return Path(os.environ.get("TICKETS_DEV_ENV") or DEV_ENV_FILE)


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings of ``env``, or of this process (its environment, plus `make run`'s dev.env in
    development); ``overrides`` (typed values, by tests) win."""
    if env is None:
        load_dev_env()
    return Settings.from_env(env, **overrides)


@cache
def process_settings() -> Settings:
    """This process's settings, read once (for what runs before or outside a Flask app)."""
    return load_settings()


def flask_config(settings: Settings) -> dict[str, Any]:
    """Flask's config: every setting under its own name, and what Flask and its extensions derive."""
    return {
        **settings.model_dump(),
        "SETTINGS": settings,
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=settings.JWT_ACCESS_TOKEN_MINUTES),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=settings.JWT_REFRESH_TOKEN_DAYS),
        # off: flask-limiter would put a Retry-After on every answer of a limited route; app/errors.py
        # puts one on the 429 only
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_SWALLOW_ERRORS": True,  # Redis down: the endpoint answers, unlimited, rather than 500
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
        "JWT_COOKIE_SECURE": settings.APP_ENV == "production",
        "JWT_COOKIE_SAMESITE": "Lax",
        "JWT_COOKIE_CSRF_PROTECT": True,
        "JWT_ACCESS_COOKIE_PATH": "/",
        "JWT_REFRESH_COOKIE_PATH": "/api/auth/",
        "JWT_SESSION_COOKIE": False,
        "BABEL_DEFAULT_LOCALE": "en",
        "LANGUAGES": ("en", "ko"),
        "PROPAGATE_EXCEPTIONS": False,
    }


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in get_args(annotation))
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return {"tuple[str, ...]": "comma-separated list", "bool | None": "bool",
            "str | None": "str"}.get(text, text)


def markdown() -> str:
    """docs/settings.md: every variable with its type, default, meaning and production rule."""
    lines = ["# Settings", "",
             "Generated from `app/settings.py` (`python -m app.settings > docs/settings.md`); a test keeps it current.",
             "Every variable is read from the environment by that one object; empty counts as unset. Booleans",
             "take `1/0`, `true/false`, `yes/no`, `on/off`. `APP_ENV=production` refuses to start when a rule in",
             "the last column is broken, and every environment refuses a database that is not MySQL/MariaDB.",
             "", "| variable | type | default | meaning | production refuses |", "|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra or {}
        if extra.get("derived_default"):
            default = extra["derived_default"]
        elif isinstance(field.default, tuple):
            default = "`" + ",".join(field.default) + "`"
        elif field.default in ("", None):
            default = "unset"
        else:
            default = f"`{field.default}`"
        rule = PRODUCTION_RULES.get(name)
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | {field.description} | "
                     f"{rule.text if rule else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
