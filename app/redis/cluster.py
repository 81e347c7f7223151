"""What Redis Cluster mode changes for the callers of the sale scripts.

On one Redis, JOIN/STATUS/RESERVE/CLAIM_OFFER also read the caller's token-revocation key and
JOIN the user's device cache and joined-sales set, all in the same round trip. In a cluster those
keys hash to other slots (a user's keys cannot share every sale's slot), so the callers read them
first with separate commands and pass a key of the sale's slot instead: one more round trip per
call, and the scripts stay single-slot. The revocation check is not atomic with the script: a
token revoked in between still gets this one answer, as it would a moment earlier.

Those user keys live on whichever master their slot maps to. When that master is down (and its
replica has not yet taken over), the sale itself is still served: the blocklist check fails open
(the token's signature and expiry are still checked; a logged-out token lives at most
JWT_ACCESS_TOKEN_MINUTES) and JOIN treats the user as having no channel. Both are logged. Without
this, one dead master would stop a third of every sale's users, not only its own sales.
"""

from __future__ import annotations

import logging

import redis

from app.errors import TokenRevoked
from app.redis import redis_store
from app.redis.keys import USER_QUEUES_TTL_SECONDS, QueueKeys, user_devices_key, user_queues_key

log = logging.getLogger(__name__)
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError)


def revocation_key(keys: QueueKeys, revoked_key: str | None) -> str:
    """The revocation key a sale script reads: the token's own on one Redis; in a cluster, after a
    separate check here, the sale's never-set stand-in."""
    if not redis_store.cluster:
        return revoked_key or keys.no_token()
    try:
        revoked = bool(revoked_key) and bool(redis_store.client.exists(revoked_key))
    except _UNREACHABLE:
        log.warning("token blocklist unreachable (its cluster node is down): not checked for this call")
        revoked = False
    if revoked:
        raise TokenRevoked()
    return keys.no_token()


def join_user_keys(event_id: int, user_id: int) -> tuple[list[str], list[str]]:
    """JOIN's extra (keys, args). One Redis: the user's device cache and joined-sales set. A
    cluster: the sale joins the user's set first (so a channel registered from now on marks this
    sale notifiable), then the device cache is read and passed as ARGV[8]."""
    if not redis_store.cluster:
        return [user_devices_key(user_id), user_queues_key(user_id)], []
    client = redis_store.client
    try:
        client.sadd(user_queues_key(user_id), event_id)
        client.expire(user_queues_key(user_id), USER_QUEUES_TTL_SECONDS)
        has_devices = bool(client.exists(user_devices_key(user_id)))
    except _UNREACHABLE:
        log.warning("user %s's channel cache unreachable (its cluster node is down): joining without it", user_id)
        has_devices = False
    return [], ["1" if has_devices else "0"]
