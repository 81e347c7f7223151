"""flask-jwt-extended wiring: identity, roles claim, Redis blocklist and JSON 401s."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from flask_jwt_extended import get_jwt, get_jwt_identity, verify_jwt_in_request

from app.auth import hs256
from app.auth.services import is_admin_now, is_token_revoked
from app.errors import AppError, Forbidden, json_error
from app.extensions import jwt
from app.observability.context import set_context

F = TypeVar("F", bound=Callable[..., Any])


def configure_jwt() -> None:
    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict, payload: dict) -> bool:
        return is_token_revoked(payload)

    @jwt.expired_token_loader
    def _expired(_header: dict, _payload: dict):
        return json_error(401, "Token has expired", reason="token_expired")

    @jwt.invalid_token_loader
    def _invalid(message: str):
        return json_error(401, f"Invalid token: {message}", reason="token_invalid")

    @jwt.unauthorized_loader
    def _missing(message: str):
        return json_error(401, message, reason="token_missing")

    @jwt.revoked_token_loader
    def _revoked_response(_header: dict, _payload: dict):
        return json_error(401, "Token has been revoked", reason="token_revoked")

    @jwt.needs_fresh_token_loader
    def _needs_fresh(_header: dict, _payload: dict):
        return json_error(401, "Fresh token required", reason="token_not_fresh")

    @jwt.user_lookup_error_loader
    def _lookup_error(_header: dict, _payload: dict):
        return json_error(401, "Unknown user", reason="token_invalid")


def current_user_id() -> int:
    user_id = int(get_jwt_identity())
    set_context(user_id=user_id)
    return user_id


def jwt_required_blocklist_deferred(fn: F) -> F:
    """``jwt_required()`` for the hot endpoints (queue status and join, reserve): the access token's
    signature, expiry and type are checked here with the lean HS256 verifier (app/auth/hs256.py),
    and the view checks the revocation (``revoked_key()``) inside its own Redis script call,
    instead of a separate EXISTS before it. Answers the same 401s as flask-jwt-extended."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _verify_access_token()
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _verify_access_token() -> None:
    header, claims, location = verify_access_token(
        current_app.config, request.headers.get("Authorization", ""),
        lambda name: request.cookies.get(name), request.method, lambda name: request.headers.get(name, ""))
    # what flask-jwt-extended's own verification leaves behind, so get_jwt() & co. work as usual
    g._jwt_extended_jwt = claims
    g._jwt_extended_jwt_header = header
    g._jwt_extended_jwt_user = {"loaded_user": None}
    g._jwt_extended_jwt_location = location


def verify_access_token(cfg: Mapping[str, Any], authorization: str, cookie: Callable[[str], str | None],
                        method: str, header: Callable[[str], str]) -> tuple[dict, dict, str]:
    """(JWT header, claims, location) of the request's access token, from its Authorization header
    or its access cookie: the checks and 401s of flask-jwt-extended, without a request object (the
    reserve endpoint's lean path calls it with the WSGI environ's values: app/booking/fast_reserve.py)."""
    auth = authorization.strip()
    location = "headers"
    if not auth:
        token = cookie(cfg["JWT_ACCESS_COOKIE_NAME"]) if "cookies" in cfg["JWT_TOKEN_LOCATION"] else None
        if not token:
            raise AppError("Missing Authorization Header", status_code=401, reason="token_missing")
        auth, location = f"Bearer {token}", "cookies"
    parts = auth.split()
    if len(parts) != 2 or parts[0] != "Bearer":
        raise AppError("Missing 'Bearer' type in 'Authorization' header. Expected 'Authorization: Bearer <JWT>'",
                       status_code=401, reason="token_missing")
    leeway = cfg.get("JWT_DECODE_LEEWAY", 0)
    try:
        jwt_header, claims = hs256.verify(parts[1], cfg["JWT_SECRET_KEY"], require=("exp", "sub", "jti", "type"),
                                          leeway=leeway.total_seconds() if hasattr(leeway, "total_seconds") else leeway)
    except hs256.InvalidToken as exc:
        if exc.reason == "token_expired":
            raise AppError("Token has expired", status_code=401, reason="token_expired") from exc
        raise AppError(f"Invalid token: {exc}", status_code=401, reason="token_invalid") from exc
    if claims["type"] != "access":
        raise AppError("Invalid token: Only non-refresh tokens are allowed", status_code=401, reason="token_invalid")
    if location == "cookies" and cfg["JWT_COOKIE_CSRF_PROTECT"] and method in cfg["JWT_CSRF_METHODS"]:
        # the double-submit check flask-jwt-extended makes for cookie tokens: a page of this origin
        # copies the csrf cookie into the header; another site's form cannot
        sent = header(cfg["JWT_ACCESS_CSRF_HEADER_NAME"])
        if not sent or not hmac.compare_digest(sent, str(claims.get("csrf", ""))):
            raise AppError("Missing or wrong CSRF token", status_code=401, reason="csrf_failed")
    return jwt_header, claims, location


def revoked_key(claims: Mapping[str, Any] | None = None) -> str:
    """The blocklist key the sale scripts check for the access token (the request's, or the one of
    ``claims``): its session's (logout and account deletion revoke every token of a session), or its
    own when it has no session."""
    from app.redis.keys import revoked_token_key, session_revoked_key

    claims = get_jwt() if claims is None else claims
    return session_revoked_key(claims["sid"]) if claims.get("sid") else revoked_token_key(claims["jti"])


def admin_required(fn: F) -> F:
    """The token says admin, and so does the database now: a demoted (or deleted) admin loses the
    rights at once, not when the access token expires. Admin endpoints are not hot, so the one
    primary-key read is affordable."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verify_jwt_in_request()
        if "admin" not in get_jwt().get("roles", []) or not is_admin_now(current_user_id()):
            raise Forbidden("Administrator role required", reason="not_admin")
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
