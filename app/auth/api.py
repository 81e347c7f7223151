from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt, jwt_required
from flask_smorest import Blueprint

from app.auth import services
from app.auth.jwt_setup import current_user_id
from app.auth.models import User
from app.auth.schemas import AccessTokenSchema, LoginSchema, RegisterSchema, TokenPairSchema, UserSchema

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and JWT sessions")


def _access_token_for(user: User) -> tuple[str, int]:
    from flask import current_app

    token = create_access_token(identity=str(user.id), additional_claims={"roles": user.roles})
    return token, int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


@blp.route("/register")
class Register(MethodView):
    @blp.arguments(RegisterSchema)
    @blp.response(201, UserSchema)
    def post(self, data: dict) -> User:
        """Create an account (409 when the e-mail is taken)."""
        return services.register_user(data["email"], data["password"], data["name"], data["locale"])


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenPairSchema)
    def post(self, data: dict) -> dict[str, Any]:
        """Exchange e-mail and password for an access and a refresh token."""
        user = services.authenticate(data["email"], data["password"])
        access, expires_in = _access_token_for(user)
        refresh = create_refresh_token(identity=str(user.id))
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": expires_in}


@blp.route("/refresh")
class Refresh(MethodView):
    @jwt_required(refresh=True)
    @blp.response(200, AccessTokenSchema)
    def post(self) -> dict[str, Any]:
        """A new access token for a valid refresh token (roles re-read from the database)."""
        user = services.get_user(current_user_id())
        access, expires_in = _access_token_for(user)
        return {"access_token": access, "token_type": "Bearer", "expires_in": expires_in}


@blp.route("/logout")
class Logout(MethodView):
    @jwt_required(verify_type=False)
    @blp.response(204)
    def post(self) -> None:
        """Revoke the presented token (access or refresh) until it would have expired."""
        claims = get_jwt()
        services.revoke_token(claims["jti"], claims["exp"])


@blp.route("/me")
class Me(MethodView):
    @jwt_required()
    @blp.response(200, UserSchema)
    def get(self) -> User:
        """The authenticated user with roles."""
        return services.get_user(current_user_id())
