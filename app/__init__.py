"""Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api


def create_app(config_overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Flask:
    """Build the API application. ``config_overrides`` win over the environment (used by tests)."""
    from app import tasking  # noqa: F401 - registers the enqueue-after-commit session hooks
    from app.auth.jwt_setup import configure_jwt
    from app.cli import register_cli
    from app.errors import ErrorSchema, register_error_handlers
    from app.extensions import db, jwt, limiter, redis_store
    from app.jsonio import SafeJSONProvider
    from app.observability.logging import configure_logging, install_request_context
    from app.observability.metrics import init_http_metrics
    from app.settings import flask_config, load_settings

    Flask.json_provider_class = SafeJSONProvider
    app = Flask(__name__, instance_relative_config=False)
    settings = load_settings(env, **(config_overrides or {}))
    settings.refuse_unsafe_production()
    app.config.update(flask_config(settings))
    app.config.update({k: v for k, v in (config_overrides or {}).items() if k not in app.config})
    configure_logging(settings.LOG_LEVEL, settings.LOG_JSON, settings.SERVICE_NAME, settings.log_dataset)

    tasking.configure_celery(settings)
    db.init(settings.DATABASE_URL, pool_size=settings.DATABASE_POOL_SIZE, tls=settings.database_tls,
            tls_ca=settings.DATABASE_TLS_CA)
    redis_store.init(app.config["REDIS_URL"], app.config["REDIS_MAX_CONNECTIONS"], app.config["REDIS_CLUSTER"])

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        db.remove()

    jwt.init_app(app)
    limiter.init_app(app)
    if app.config["API_RESERVE_FAST_PATH"]:
        # inside ProxyFix: the lean path sees the corrected environ, as Flask does
        from app.booking.fast_reserve import FastReserve

        app.wsgi_app = FastReserve(app, app.wsgi_app)
    if app.config["TRUSTED_PROXIES"]:
        # the client's own address (rate limits, logs) from the trusted proxies' X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"], x_proto=1)
    configure_jwt()
    Api.ERROR_SCHEMA = ErrorSchema  # the documented error shape is the one every error has
    api = Api(app)
    register_error_handlers(app)
    install_request_context(app)

    from app.auth.api import blp as auth_blp
    from app.booking.after_sale_api import blp as after_sale_blp
    from app.booking.api import blp as booking_blp
    from app.booking.orders.api import blp as orders_blp
    from app.booking.orders.api import event_blp as event_orders_blp
    from app.booking.payments_api import blp as payments_blp
    from app.checkin.api import blp as checkin_blp
    from app.health import bp as health_bp
    from app.notifications.api import blp as notifications_blp
    from app.queue.api import blp as queue_blp
    from app.sales.api import blp as events_blp
    from app.sales.api import sale_blp

    for blueprint in (auth_blp, events_blp, queue_blp, booking_blp, after_sale_blp, payments_blp, orders_blp,
                      event_orders_blp, checkin_blp, notifications_blp, sale_blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(health_bp)
    _register_notice_messages()
    from app.web import init_web

    init_web(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    init_http_metrics(app)
    register_cli(app)
    return app


def _register_notice_messages() -> None:
    """The notices whose content belongs to domains built on notifications, which imports none of
    them (the import graph has no cycle: docs/architecture.md)."""
    from app.booking.orders.receipts import receipt_message
    from app.booking.refunds import refund_notice
    from app.notifications.services import KIND_MESSAGES, RECEIPT
    from app.sales.lottery import NOTICE_KINDS, lottery_notice

    KIND_MESSAGES.update({RECEIPT: lambda n, user, _event: receipt_message(n.subject_id, user),
                          "refunded": refund_notice, **{kind: lottery_notice for kind in NOTICE_KINDS.values()}})
