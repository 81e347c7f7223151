"""Account rules: registration, login, admin promotion and token revocation."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth.models import User
from app.errors import Conflict, NotFound, Unauthorized
from app.extensions import db, redis_store

REVOKED_PREFIX = "jwt:revoked:"
# A constant hash to compare against when the e-mail is unknown, so login timing does not reveal
# which addresses have accounts.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def register_user(email: str, password: str, name: str, locale: str = "en") -> User:
    session = db.session
    user = User(email=normalise_email(email), name=name.strip(), password_hash=generate_password_hash(password),
                locale=locale)
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("This e-mail address is already registered", reason="email_taken",
                       errors={"email": ["already registered"]}) from exc
    return user


def authenticate(email: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        raise Unauthorized("Invalid e-mail or password", reason="bad_credentials")
    if not check_password_hash(user.password_hash, password):
        raise Unauthorized("Invalid e-mail or password", reason="bad_credentials")
    return user


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    return user


def create_or_promote_admin(email: str, password: str | None, name: str | None = None) -> tuple[User, bool]:
    """Create an admin, or promote an existing user (resetting the password when one is given)."""
    session = db.session
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    created = user is None
    if user is None:
        if not password:
            raise ValueError("a password is required to create a new admin")
        user = User(email=normalise_email(email), name=name or email.split("@")[0],
                    password_hash=generate_password_hash(password))
        session.add(user)
    elif password:
        user.password_hash = generate_password_hash(password)
    user.is_admin = True
    session.commit()
    return user, created


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id))) or 0


def revoke_token(jti: str, expires_at: int) -> None:
    ttl = max(1, int(expires_at - time.time()))
    redis_store.client.set(REVOKED_PREFIX + jti, "1", ex=ttl)


def is_token_revoked(jti: str) -> bool:
    return bool(redis_store.client.exists(REVOKED_PREFIX + jti))
