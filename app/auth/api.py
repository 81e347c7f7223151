from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_jwt_extended import (
    create_access_token,
    get_jwt,
    get_jwt_request_location,
    jwt_required,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
    verify_jwt_in_request,
)
from flask_smorest import Blueprint

from app.auth import flows, services, sessions
from app.auth.jwt_setup import current_user_id
from app.auth.locale import remember_language
from app.auth.models import User
from app.auth.schemas import (
    AccountUpdateSchema,
    DeleteAccountSchema,
    LoginSchema,
    RegisterSchema,
    TokenPairSchema,
    UserSchema,
    VerifyCodeSchema,
)
from app.auth.signals import account_channels_changed
from app.db import transaction
from app.extensions import limiter
from app.jsonio import json_response

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and JWT sessions")


def _setting(name: str):
    return lambda: current_app.config[name]


def _account_key() -> str:
    """The account a login names (normalised, then hashed: any text makes a valid Redis key, so the
    limiter never errs on it and never fails open), so guessing one password is slow from any address."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str):
        return "login:-"
    normalised = services.normalise_email(email).encode("utf-8", "surrogatepass")
    return "login:" + hashlib.sha256(normalised).hexdigest()


def _access_token_for(user: User, sid: str) -> tuple[str, int]:
    # "ev": the e-mail is verified (buying checks it without a database round trip)
    claims = {"roles": user.roles, "sid": sid, "ev": user.email_verified_at is not None}
    token = create_access_token(identity=str(user.id), additional_claims=claims)
    return token, int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


def _pair(user: User, sid: str, refresh: str, *, cookies: bool = False) -> dict[str, Any] | Response:
    """The token pair; for a browser session (cookies), also set as httpOnly cookies with their
    CSRF companions, and the page language from the account's locale."""
    access, expires_in = _access_token_for(user, sid)
    body = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": expires_in}
    if not cookies:
        return body
    response = json_response({"token_type": "Cookie", "expires_in": expires_in}, 200)
    set_access_cookies(response, access)
    set_refresh_cookies(response, refresh)
    remember_language(response, user.locale)
    return response


def _from_cookies() -> bool:
    try:
        return get_jwt_request_location() == "cookies"
    except RuntimeError:
        return False


@blp.route("/register")
class Register(MethodView):
    @limiter.limit(_setting("REGISTER_LIMIT_PER_ADDRESS"), scope="register")
    @blp.arguments(RegisterSchema)
    @blp.response(201, UserSchema)
    def post(self, data: dict) -> User:
        """Create an account (409 when the e-mail is taken)."""
        with transaction():
            return services.register_user(data["email"], data["password"], data["name"], data["locale"])


def _login_limits(view: Callable[..., Any]) -> Callable[..., Any]:
    """The limits of every password login: /login and /session count against the same budgets
    (shared limits: one scope, whichever route is used)."""
    view = limiter.shared_limit(_setting("LOGIN_LIMIT_PER_ACCOUNT"), scope="login-account", key_func=_account_key,
                                # failed attempts only: the right password after too many wrong ones is refused too
                                deduct_when=lambda response: response.status_code == 401)(view)
    return limiter.shared_limit(_setting("LOGIN_LIMIT_PER_ADDRESS"), scope="login-address")(view)


def _log_in(data: dict, *, cookies: bool) -> dict[str, Any] | Response:
    user = services.authenticate(data["email"], data["password"])
    sid, refresh = sessions.start(user.id)
    # the waiting room's copy of the channels (the account e-mail is one): fresh before the fan
    # joins a sale, also for an account verified before the copy knew of it
    account_channels_changed.send(user.id, session=None)
    return _pair(user, sid, refresh, cookies=cookies)


@blp.route("/login")
class Login(MethodView):
    @_login_limits
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenPairSchema)
    def post(self, data: dict) -> dict[str, Any] | Response:
        """Exchange e-mail and password for an access and a refresh token."""
        return _log_in(data, cookies=False)


@blp.route("/session")
class BrowserSession(MethodView):
    @blp.response(200)
    def get(self) -> dict[str, Any]:
        """Who this browser is logged in as: `{authenticated: false}` for nobody (a 200: an
        anonymous page is not an error), else `{authenticated: true, user}`."""
        if verify_jwt_in_request(optional=True) is None:
            return {"authenticated": False, "user": None}
        return {"authenticated": True, "user": UserSchema().dump(services.get_user(current_user_id()))}

    @_login_limits
    @blp.arguments(LoginSchema)
    @blp.response(200)
    def post(self, data: dict) -> dict[str, Any] | Response:
        """Log a browser in: the tokens are set as httpOnly cookies (with double-submit CSRF
        cookies), never handed to page scripts. The same limits as /login."""
        return _log_in(data, cookies=True)

    @jwt_required()
    @blp.response(204)
    def delete(self) -> Response:
        """Log a browser out: the access token is revoked, the session ended, the cookies cleared."""
        claims = get_jwt()
        services.revoke_token(claims["jti"], claims["exp"])
        sessions.end(claims.get("sid"))
        response = Response(status=204)
        unset_jwt_cookies(response)
        return response


@blp.route("/refresh")
class Refresh(MethodView):
    @limiter.limit(_setting("REFRESH_LIMIT_PER_ADDRESS"), scope="refresh")
    @jwt_required(refresh=True)
    @blp.response(200, TokenPairSchema)
    def post(self) -> dict[str, Any]:
        """Spend the refresh token: a new access token and a new refresh token (rotation; roles
        re-read from the database). A refresh token used twice revokes its whole session (401
        `refresh_token_reused`)."""
        user = services.get_user(current_user_id())
        sid, refresh = sessions.rotate(user.id, get_jwt())
        return _pair(user, sid, refresh, cookies=_from_cookies())


@blp.route("/logout")
class Logout(MethodView):
    @jwt_required(verify_type=False)
    @blp.response(204)
    def post(self) -> None:
        """Revoke the presented token (access or refresh) until it would have expired, and end its
        session: the session's refresh token can no longer be used."""
        claims = get_jwt()
        services.revoke_token(claims["jti"], claims["exp"])
        sessions.end(claims.get("sid"))


@blp.route("/verify-email")
class VerifyEmail(MethodView):
    @jwt_required()
    @limiter.limit(_setting("CODE_LIMIT_PER_USER"), key_func=lambda: f"user:{current_user_id()}",
                   scope="verify-email", deduct_when=lambda r: r.status_code != 200)
    @blp.arguments(VerifyCodeSchema)
    @blp.response(200, TokenPairSchema)
    def post(self, data: dict) -> dict[str, Any]:
        """Prove the account's e-mail with the code sent to it at sign-up. Answers a fresh token pair
        whose access token lets you buy (buying needs a verified e-mail)."""
        with transaction():
            user = services.verify_email(current_user_id(), data["code"])
        claims = get_jwt()
        sessions.end(claims.get("sid"))  # the old session's tokens say "unverified": replace them
        sid, refresh = sessions.start(user.id)
        return _pair(user, sid, refresh, cookies=_from_cookies())


@blp.route("/verify-email/code")
class EmailCode(MethodView):
    @jwt_required()
    @limiter.limit(_setting("CODE_LIMIT_PER_USER"), key_func=lambda: f"user:{current_user_id()}", scope="email-code")
    @blp.response(202)
    def post(self) -> None:
        """Send a new code to the account's e-mail (the previous one stops working)."""
        services.resend_email_code(current_user_id())


@blp.route("/me")
class Me(MethodView):
    @jwt_required()
    @blp.response(200, UserSchema)
    def get(self) -> User:
        """The authenticated user with roles."""
        return services.get_user(current_user_id())

    @jwt_required()
    @blp.arguments(AccountUpdateSchema)
    @blp.response(200, UserSchema)
    def patch(self, data: dict) -> Response:
        """Change your settings: `locale` (`en`, `ko`: pages, e-mails and notices follow it, and the
        `lang` cookie is set to it so the next page is in it too) and `notify_by_email` (notices to
        your verified account e-mail, on by default)."""
        with transaction():
            user = services.update_account(current_user_id(), locale=data.get("locale"),
                                           notify_by_email=data.get("notify_by_email"))
            body = UserSchema().dump(user)
        response = json_response(body, 200)
        if data.get("locale"):
            remember_language(response, data["locale"])
        return response

    @jwt_required()
    @blp.arguments(DeleteAccountSchema)
    @blp.response(204)
    def delete(self, data: dict) -> Response:
        """Delete your account (the password confirms it): your name, e-mail and channels are erased
        (orders keep an anonymous buyer), every session ends and every token of the account stops
        working at once, on every endpoint."""
        flows.delete_account(current_user_id(), data["password"])
        response = Response(status=204)
        unset_jwt_cookies(response)
        return response
