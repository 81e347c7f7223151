"""Leases on open SSE streams, so one account cannot hold a worker's connections.

Each open stream holds a lease in two sorted sets of the sale (the user's streams, the sale's
streams), scored by when the lease lapses. The stream renews its lease on every check; a stream
whose process died simply lapses after STREAM_LEASE_SECONDS, so a crash never locks anyone out.
Opening beyond SSE_MAX_STREAMS_PER_USER (per user and sale) or SSE_MAX_STREAMS_PER_EVENT is a 429
with Retry-After. Both keys carry the sale's hash tag: one slot in a Redis Cluster.
"""

from __future__ import annotations

import select
import socket
import time
import uuid
from typing import Any

from flask import current_app

from app.errors import TooManyRequests
from app.extensions import redis_store
from app.redis import calls
from app.redis.keys import QueueKeys

STREAM_LEASE_SECONDS = 30

def open_lease(event_id: int, user_id: int) -> str:
    """A lease for a new stream, or TooManyRequests when the user or the sale is at its cap."""
    cfg = current_app.config
    keys = QueueKeys(event_id)
    stream_id = uuid.uuid4().hex
    now = time.time()
    verdict = calls.open_stream(calls.StreamKeys(keys.user_streams(user_id), keys.streams()), stream_id=stream_id,
                                now=now, until=now + STREAM_LEASE_SECONDS, user_cap=cfg["SSE_MAX_STREAMS_PER_USER"],
                                sale_cap=cfg["SSE_MAX_STREAMS_PER_EVENT"])
    if verdict == "user":
        raise TooManyRequests(f"At most {cfg['SSE_MAX_STREAMS_PER_USER']} open streams per user for a sale; "
                              "close one or poll the status instead", reason="too_many_streams",
                              headers={"Retry-After": "5"})
    if verdict == "event":
        raise TooManyRequests("This sale has as many open streams as it can serve; poll the status instead",
                              reason="too_many_streams", headers={"Retry-After": "5"})
    return stream_id


def renew_lease(event_id: int, user_id: int, stream_id: str) -> None:
    keys = QueueKeys(event_id)
    until = f"{time.time() + STREAM_LEASE_SECONDS:.3f}"
    pipe = redis_store.client.pipeline(transaction=False)
    pipe.zadd(keys.user_streams(user_id), {stream_id: until}, xx=True)
    pipe.zadd(keys.streams(), {stream_id: until}, xx=True)
    # the sets outlive their newest lease (as OPEN_STREAM sets them): a stream held past the
    # first TTL must not take the caps with it
    pipe.expire(keys.user_streams(user_id), STREAM_LEASE_SECONDS * 2)
    pipe.expire(keys.streams(), STREAM_LEASE_SECONDS * 2)
    pipe.execute()


def close_lease(event_id: int, user_id: int, stream_id: str) -> None:
    keys = QueueKeys(event_id)
    pipe = redis_store.client.pipeline(transaction=False)
    pipe.zrem(keys.user_streams(user_id), stream_id)
    pipe.zrem(keys.streams(), stream_id)
    pipe.execute()


def client_gone(sock: Any) -> bool:
    """True when the client closed its end of the stream's connection (a readable socket with
    nothing to read is at EOF). Never blocks: select with a zero timeout, then a peek."""
    if sock is None:  # not served by gunicorn (tests' WSGI client): rely on the write and the lease
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset by the peer, or already closed
        return True
