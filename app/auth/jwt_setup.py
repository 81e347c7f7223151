"""flask-jwt-extended wiring: identity, roles claim, Redis blocklist and JSON 401s."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g
from flask_jwt_extended import get_jwt, get_jwt_identity, verify_jwt_in_request

from app.auth.services import is_token_revoked
from app.errors import AppError, Forbidden, json_error
from app.extensions import jwt
from app.observability.context import set_context

F = TypeVar("F", bound=Callable[..., Any])


def configure_jwt() -> None:
    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict, payload: dict) -> bool:
        if g.get("blocklist_deferred"):
            return False  # the view checks it in the same Redis round trip as its own work
        return is_token_revoked(payload["jti"])

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
    """``jwt_required()`` for the hot endpoints: the signature and expiry are checked here, and the
    view checks the revocation (``revoked_key()``) in the same Redis round trip as its own script,
    instead of a separate EXISTS before it."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.blocklist_deferred = True
        verify_jwt_in_request()
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def revoked_key() -> str:
    """The blocklist key of the request's access token."""
    from app.auth.services import REVOKED_PREFIX

    return REVOKED_PREFIX + get_jwt()["jti"]


def token_revoked_error() -> AppError:
    return AppError("Token has been revoked", status_code=401, reason="token_revoked")


def admin_required(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verify_jwt_in_request()
        if "admin" not in get_jwt().get("roles", []):
            raise Forbidden("Administrator role required", reason="not_admin")
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
