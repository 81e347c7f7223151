"""Account rules: registration, login, admin promotion and token revocation."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from app import channels, verification
from app.auth.models import User
from app.auth.passwords import weakness
from app.auth.signals import account_channels_changed
from app.db import lock_rows, utcnow
from app.errors import Conflict, Unauthorized
from app.extensions import db, redis_store
from app.redis.keys import revoked_token_key
from app.tasking import send_task_after_commit

# A constant hash to compare against when the e-mail is unknown, so login timing does not reveal
# which addresses have accounts.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def inbox_of(email: str) -> str:
    """The mailbox an address delivers to: `fan+1@x` and `fan+2@x` are both `fan@x`."""
    local, _, domain = normalise_email(email).partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def register_user(email: str, password: str, name: str, locale: str = "en") -> User:
    session = db.session
    inbox = inbox_of(email)
    local, _, domain = inbox.partition("@")
    same_inbox = session.scalars(select(User.email).where(User.email.like(f"{local}%@{domain}"))).all()
    if any(inbox_of(other) == inbox for other in same_inbox):
        # one account per mailbox: +tags would otherwise multiply accounts for free
        raise Conflict("An account already uses this mailbox", reason="email_taken",
                       errors={"email": ["already registered (sub-addresses count as the same mailbox)"]})
    user = User(email=normalise_email(email), name=name.strip(), password_hash=generate_password_hash(password),
                locale=locale)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("This e-mail address is already registered", reason="email_taken",
                       errors={"email": ["already registered"]}) from exc
    send_email_code(user)  # also where buying does not need it (make run): the dev inbox shows it
    return user


# --- e-mail verification: buying needs a proved address (one account per inbox, not per alias) ---

EMAIL_CODE_TEXTS = {
    "en": ("Confirm your e-mail", "Your ticket platform code is {code}. Enter it to confirm this address; "
                                  "it expires in 15 minutes."),
    "ko": ("이메일 인증", "티켓 플랫폼 인증 코드는 {code}입니다. 15분 안에 입력해 주세요."),
}


def send_email_code(user: User) -> None:
    """A code to the account's address, sent by a task (no network call in the request)."""
    code = verification.issue(f"email:{user.id}", destination=f"email:{user.email.strip().lower()}")
    send_task_after_commit("auth.send_email_code", [user.id, code])


def email_code_message(user_id: int, code: str) -> tuple[str, Any] | None:
    """Where and what to send for an e-mail code (app/auth/flows.py sends it, holding nothing);
    None when the user is gone or verified meanwhile."""
    user = db.session.get(User, user_id)
    if user is None or user.email_verified_at is not None:
        return None
    title, body = EMAIL_CODE_TEXTS.get(user.locale, EMAIL_CODE_TEXTS["en"])
    return user.email, channels.Message.text(title, body.format(code=code))


def verify_email(user_id: int, code: str) -> User:
    user = get_user(user_id)
    if user.email_verified_at is None:
        verification.check(f"email:{user.id}", code)
        user.email_verified_at = utcnow()
        db.session.flush()
        _channels_changed(user.id)  # a proved address is a channel from now on
    return user


def resend_email_code(user_id: int) -> None:
    user = get_user(user_id)
    if user.email_verified_at is not None:
        raise Conflict("This e-mail address is verified already", reason="already_verified")
    send_email_code(user)


def authenticate(email: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        raise Unauthorized("Invalid e-mail or password", reason="bad_credentials")
    if not check_password_hash(user.password_hash, password):
        raise Unauthorized("Invalid e-mail or password", reason="bad_credentials")
    return user


def get_user(user_id: int) -> User:
    """The token's user; a token whose account is gone or deleted is no credential (401)."""
    user = db.session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise Unauthorized("The account no longer exists", reason="account_deleted")
    return user


def update_account(user_id: int, *, locale: str | None = None, notify_by_email: bool | None = None) -> User:
    """The owner's settings: language, and whether notices go to the verified account e-mail."""
    user = get_user(user_id)
    if locale is not None:
        user.locale = locale
    if notify_by_email is not None and notify_by_email != user.notify_by_email:
        user.notify_by_email = notify_by_email
        _channels_changed(user_id)
    db.session.flush()
    return user


def _channels_changed(user_id: int) -> None:
    """The account e-mail counts as a channel: the waiting room's copy follows after commit
    (app/notifications/services.py listens)."""
    account_channels_changed.send(user_id, session=db.session())


def is_admin_now(user_id: int) -> bool:
    row = db.session.execute(select(User.is_admin, User.deleted_at).where(User.id == user_id)).first()
    return bool(row and row.is_admin and row.deleted_at is None)


def delete_account(user_id: int, password: str) -> User:
    """The owner deletes the account (GDPR erasure): the password confirms it; the row stays for the
    orders that name it, with nothing personal left. auth/flows.delete_account ends the sessions."""
    user = lock_rows(db.session, select(User).where(User.id == user_id).with_for_update()).scalar()
    if user is None or user.deleted_at is not None:
        raise Unauthorized("The account no longer exists", reason="account_deleted")
    if not check_password_hash(user.password_hash, password):
        raise Unauthorized("The password is not right", reason="bad_credentials")
    user.email = f"deleted-{user.id}@deleted.invalid"
    user.name = ""
    user.password_hash = "!"  # no password hashes to this: nobody logs in as it again
    user.is_admin = False
    user.email_verified_at = None
    user.deleted_at = utcnow()
    db.session.flush()
    return user


def create_or_promote_admin(email: str, password: str | None, name: str | None = None) -> tuple[User, bool]:
    """Create an admin, or promote an existing user (resetting the password when one is given)."""
    session = db.session
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    created = user is None
    problem = weakness(password, email, name or "") if password else None
    if problem:
        raise ValueError(problem)
    if user is None:
        if not password:
            raise ValueError("a password is required to create a new admin")
        user = User(email=normalise_email(email), name=name or email.split("@")[0],
                    password_hash=generate_password_hash(password))
        session.add(user)
    elif password:
        user.password_hash = generate_password_hash(password)
    user.is_admin = True
    session.flush()
    return user, created


def revoke_token(jti: str, expires_at: int) -> None:
    ttl = max(1, int(expires_at - time.time()))
    redis_store.client.set(revoked_token_key(jti), "1", ex=ttl)


def is_token_revoked(payload: dict[str, Any]) -> bool:
    """The token itself, its session, or every token of its user (a deleted account) is revoked."""
    from app.redis.keys import session_revoked_key, user_revoked_key

    keys = [revoked_token_key(payload["jti"]), user_revoked_key(payload["sub"])]
    if payload.get("sid") and payload.get("type") == "access":
        # an access token dies with its session; a refresh token is the session's own (rotation
        # answers `session_revoked` for it)
        keys.append(session_revoked_key(payload["sid"]))
    pipe = redis_store.client.pipeline(transaction=False)  # the keys sit in several cluster slots
    for key in keys:
        pipe.get(key)
    own, revoked_before, *session = pipe.execute()
    issued = int(payload.get("iat", 0))
    return bool(own) or any(session) or (revoked_before is not None and issued < int(revoked_before))
