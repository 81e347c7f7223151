"""One JSON error shape for every failure: {code, status, message, errors?, reason?}.

Services raise ``AppError`` subclasses (domain words, no HTTP objects); this module maps them,
Werkzeug HTTP errors, webargs validation errors and unexpected exceptions to that shape.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import orjson
import redis
from flask import Flask, Response, current_app, jsonify, request
from marshmallow import Schema, fields
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class AppError(Exception):
    """A failure the client caused or can act on. ``reason`` is a stable machine-readable word."""

    status_code = 400

    def __init__(self, message: str, *, reason: str | None = None, errors: dict | None = None,
                 headers: dict[str, str] | None = None, status_code: int | None = None,
                 links: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.params = params or {}  # the figures of the message, for its translations
        self.errors = errors
        self.headers = headers or {}
        self.links = links
        if status_code is not None:
            self.status_code = status_code


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Forbidden(AppError):
    status_code = 403


class Unauthorized(AppError):
    status_code = 401


class TokenRevoked(Unauthorized):
    """The caller's access token was revoked (logout, account deletion): checked in the sale
    scripts themselves (app/auth/jwt_setup.revoked_key) and, in cluster mode, before them."""

    def __init__(self) -> None:
        super().__init__("Token has been revoked", reason="token_revoked")


class Unprocessable(AppError):
    status_code = 422


class PaymentRequired(AppError):
    status_code = 402


class TooManyRequests(AppError):
    status_code = 429


def error_body(status_code: int, message: str, errors: Any = None, reason: str | None = None,
               links: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": status_code, "status": HTTPStatus(status_code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    if reason:
        body["reason"] = reason
    if links:
        body["links"] = links
    return body


def localized_message(exc: AppError) -> str:
    """The message in the request's language where a translation of its reason exists (the web
    app registers them: app/web/error_texts.py); ``reason`` itself never changes."""
    localize = current_app.extensions.get("error_localizer")
    return (localize(exc) if localize else None) or exc.message


def json_error(status_code: int, message: str, errors: Any = None, reason: str | None = None,
               headers: dict[str, str] | None = None, links: dict[str, str] | None = None) -> Response:
    response = jsonify(error_body(status_code, message, errors, reason, links))
    response.status_code = status_code
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class ErrorSchema(Schema):
    """The one error shape (documentation: the OpenAPI `Error` component every error refers to)."""

    code = fields.Integer(required=True, metadata={"description": "HTTP status code"})
    status = fields.String(required=True, metadata={"description": "HTTP status phrase"})
    message = fields.String(required=True, metadata={"description": "what went wrong, for people"})
    reason = fields.String(metadata={"description": "a stable word for programs: sold_out, rate_limited, ..."})
    errors = fields.Raw(metadata={"description": "field errors: {field: [messages]} (422)"})
    links = fields.Dict(keys=fields.String(), values=fields.String(),
                        metadata={"description": "where to go next, e.g. {waitlist: URL} with 409 sold_out"})


def _rate_limit_retry_after() -> str:
    """Seconds until the limit that refused this request lets it through (flask-limiter's own
    headers are off: they would put a Retry-After on every answer of a limited route)."""
    import time

    from app.extensions import limiter

    current = limiter.current_limit
    return str(max(1, int(current.reset_at - time.time()) + 1)) if current is not None else "60"


MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(data: bytes) -> int:
    """How deeply ``data`` nests arrays and objects (strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b"", data)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


# Redis answers that mean "not now" (memory full, loading, a failover, a replica), not "your command is wrong"
_REDIS_UNAVAILABLE = ("OOM", "LOADING", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY")


def is_redis_unavailable(exc: redis.RedisError) -> bool:
    if not isinstance(exc, redis.ResponseError):
        return True  # connection errors, timeouts
    return str(exc).split(" ", 1)[0].upper() in _REDIS_UNAVAILABLE or isinstance(
        exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError, redis.exceptions.ClusterDownError,
              redis.exceptions.TryAgainError))


def guard_json_body() -> Any:
    """Every JSON body passes here first, whatever its transfer encoding (Content-Length or
    chunked), before any view, schema or rate limiter reads it: one parse by orjson, which refuses
    what would break the rest (Python's parser recursing per level, integers past 4,300 digits, lone
    surrogates the database driver cannot encode) with a 400. Counting brackets is C-speed; only a
    body with many is measured properly."""
    if not request.is_json:
        return None
    data = request.get_data(cache=True)  # chunked too; MAX_CONTENT_LENGTH bounds it (413)
    if not data:
        return None
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and json_depth(data) > MAX_JSON_DEPTH:
        return json_error(400, f"JSON nested more than {MAX_JSON_DEPTH} levels deep", reason="json_too_deep")
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return json_error(400, f"The body is not valid JSON: {exc}", reason="invalid_json")
    return None


def register_error_handlers(app: Flask) -> None:
    # first of all before_request functions: the rate limiter's key functions read the body too
    app.before_request_funcs.setdefault(None, []).insert(0, guard_json_body)

    @app.errorhandler(AppError)
    def _app_error(exc: AppError):
        return json_error(exc.status_code, localized_message(exc), exc.errors, exc.reason, exc.headers, exc.links)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        if isinstance(errors, dict) and set(errors) <= {"json", "query", "headers", "form", "files", "path"}:
            # webargs nests by location; clients care about the fields, so flatten one level
            flat: dict[str, Any] = {}
            for location_errors in errors.values():
                flat.update(location_errors if isinstance(location_errors, dict) else {"_": location_errors})
            errors = flat
        code = exc.code or 500
        message = data.get("message") or (
            "Validation failed" if code == 422 and errors else (exc.description or HTTPStatus(code).phrase)
        )
        headers = dict(exc.get_headers()) if code == 405 else {}
        headers.pop("Content-Type", None)
        if code == 429:
            headers["Retry-After"] = _rate_limit_retry_after()
        return json_error(code, message, errors, None, headers)

    @app.errorhandler(redis.ResponseError)
    def _redis_refused(exc: redis.ResponseError):
        # Redis answered: a full or failing-over server is a retryable 503; anything else (a Lua
        # script error, WRONGTYPE, NOSCRIPT) is our bug, and retrying it only storms Redis
        if is_redis_unavailable(exc):
            return _dependency_down(exc)
        from app.observability.metrics import REDIS_COMMAND_ERRORS

        REDIS_COMMAND_ERRORS.inc()
        log.error("Redis refused a command: %s", str(exc)[:500], exc_info=True)
        return json_error(500, "Internal server error")

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.DisconnectionError)
    @app.errorhandler(sa_exc.PendingRollbackError)
    def _dependency_down(exc: Exception):
        # Redis or the database is unreachable or overloaded: nothing was committed; retry later
        from app.extensions import db

        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - the connection itself is gone; teardown discards it
            log.warning("rollback failed on a lost connection", exc_info=True)
        log.error("dependency unavailable: %s", exc.__class__.__name__, exc_info=True)
        return json_error(503, "Service temporarily unavailable; try again shortly", reason="unavailable",
                          headers={"Retry-After": "2"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return json_error(500, "Internal server error")
