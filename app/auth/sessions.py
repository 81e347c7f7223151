"""Login sessions: one family of refresh tokens per login, rotated on every use.

A login starts a session (`sid`, carried by every token it issues) whose record in Redis names the
one refresh token that may be used next. Refreshing presents it and gets a new access token and a
new refresh token; the old one is spent. Presenting a spent refresh token means two parties hold
the family (a stolen token, or a replay): the whole session is revoked, so neither can refresh
again and the fan logs in anew (OAuth 2.0 Security BCP, refresh token rotation). Logout revokes the
session too, so a logged-out refresh token is dead whichever token the client logged out with.
"""

from __future__ import annotations

import time
import uuid

from flask import current_app
from flask_jwt_extended import create_refresh_token

from app.errors import Unauthorized
from app.extensions import redis_store
from app.redis import calls
from app.redis.keys import auth_session_key, session_revoked_key, user_revoked_key, user_sessions_key


def _ttl() -> int:
    return int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())


def _refresh_token(user_id: int, sid: str, jti: str) -> str:
    return create_refresh_token(identity=str(user_id), additional_claims={"sid": sid, "jti": jti})


def start(user_id: int) -> tuple[str, str]:
    """A new session: (sid, its first refresh token)."""
    sid, jti = uuid.uuid4().hex, str(uuid.uuid4())
    pipe = redis_store.client.pipeline(transaction=False)
    pipe.hset(auth_session_key(sid), mapping={"user": user_id, "refresh": jti})
    pipe.expire(auth_session_key(sid), _ttl())
    pipe.sadd(user_sessions_key(user_id), sid)
    pipe.expire(user_sessions_key(user_id), _ttl())
    pipe.execute()
    return sid, _refresh_token(user_id, sid, jti)


def rotate(user_id: int, claims: dict) -> tuple[str, str]:
    """Spend the presented refresh token: (sid, the next refresh token), or Unauthorized."""
    sid = claims.get("sid")
    if not sid:
        raise Unauthorized("This refresh token predates sessions; log in again", reason="session_unknown")
    jti = str(uuid.uuid4())
    verdict = calls.rotate_session(auth_session_key(sid), presented=claims["jti"], next_jti=jti, ttl=_ttl())
    if verdict == "reused":
        raise Unauthorized("This refresh token was already used: the session is revoked; log in again",
                           reason="refresh_token_reused")
    if verdict != "ok":
        raise Unauthorized("The session has ended; log in again", reason="session_revoked")
    return sid, _refresh_token(user_id, sid, jti)


def end(sid: str | None) -> None:
    """The session's refresh token is dead and so is every access token it issued."""
    if sid:
        access = int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()) + 60
        pipe = redis_store.client.pipeline(transaction=False)
        pipe.delete(auth_session_key(sid))
        pipe.set(session_revoked_key(sid), "1", ex=access)
        pipe.execute()


def end_all(user_id: int) -> None:
    """Every session of the user ends, and every token issued to the user before now is refused
    (tokens that carry no session too, through the user's revocation time)."""
    client = redis_store.client
    for sid in client.smembers(user_sessions_key(user_id)):
        end(sid)
    client.delete(user_sessions_key(user_id))
    client.set(user_revoked_key(user_id), int(time.time()) + 1, ex=_ttl())
