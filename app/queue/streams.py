"""Live updates by broadcast, and leases on open SSE streams.

Broadcast: each stream-server process runs one ticker per sale it streams (``SaleTicker``). Once
per SSE_INTERVAL_SECONDS the ticker reads the sale's public serving figures in one SERVING call,
and every open stream of that sale works out its own position from them and its line number
(services.estimate): Redis work per second is O(sales x processes), not O(fans). A stream asks for
its exact status only when the line reaches its number (its admission, with the pass), when the
pre-queue is drawn, and when it opens.

Leases: a stream lives as long as its process's lease on the sale, which the ticker renews in the
same SERVING call, together with the heartbeats of the fans it streams to (an open page is a fan
still there). Opening beyond SSE_MAX_STREAMS_PER_USER (per user and sale) or
SSE_MAX_STREAMS_PER_EVENT is a 429 with Retry-After; a process that died takes its streams with it
when its lease lapses, so a crash never locks anyone out. Every key carries the sale's hash tag.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Flask, current_app

from app.errors import AppError, TooManyRequests
from app.extensions import db, redis_store
from app.queue import services
from app.redis import calls
from app.redis.keys import QueueKeys

log = logging.getLogger(__name__)

STREAM_LEASE_SECONDS = 30
TERMINAL = {"admitted", "expired", "not_in_queue"}

_process: tuple[int, str] | None = None


def process_id() -> str:
    """This process's id as a holder of streams (a fork gets its own)."""
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), uuid.uuid4().hex)
    return _process[1]


def open_lease(event_id: int, user_id: int) -> str:
    """A new stream's id, or TooManyRequests when the user or the sale is at its cap."""
    cfg = current_app.config
    keys = QueueKeys(event_id)
    stream_id = uuid.uuid4().hex
    now = time.time()
    verdict = calls.open_stream(calls.StreamKeys(keys.user_streams(user_id), keys.stream_processes()),
                                process=process_id(), stream_id=stream_id, now=now, until=now + STREAM_LEASE_SECONDS,
                                user_cap=cfg["SSE_MAX_STREAMS_PER_USER"], sale_cap=cfg["SSE_MAX_STREAMS_PER_EVENT"],
                                user_ttl=int(cfg["SSE_MAX_SECONDS"]) + STREAM_LEASE_SECONDS,
                                processes_ttl=STREAM_LEASE_SECONDS * 2)
    if verdict == "user":
        raise TooManyRequests(f"At most {cfg['SSE_MAX_STREAMS_PER_USER']} open streams per user for a sale; "
                              "close one or poll the status instead", reason="too_many_streams",
                              headers={"Retry-After": "5"})
    if verdict == "event":
        raise TooManyRequests("This sale has as many open streams as it can serve; poll the status instead",
                              reason="too_many_streams", headers={"Retry-After": "5"})
    return stream_id


def close_lease(event_id: int, user_id: int, stream_id: str) -> None:
    keys = QueueKeys(event_id)
    process = process_id()
    pipe = redis_store.client.pipeline(transaction=False)
    pipe.zrem(keys.user_streams(user_id), f"{process}:{stream_id}")
    pipe.hincrby(keys.stream_processes(), f"{process}#n", -1)
    pipe.execute()


class SaleTicker:
    """One sale's serving figures in this process, read once per tick for all its open streams."""

    def __init__(self, app: Flask, event_id: int, interval: float) -> None:
        self.app, self.event_id, self.interval = app, event_id, interval
        self.tick = 0
        self.figures: calls.ServingReply | None = None
        self.error: AppError | None = None
        self.users: Counter[int] = Counter()  # open streams per user (guarded by _registry)
        # set once, when the next tick is published, then replaced: one Event wakes every stream
        # of the sale at once (gevent's Event under the stream server; a Condition's notify_all
        # released each waiter in turn, and was a quarter of the process's CPU at 4,000 streams)
        self._next = threading.Event()
        self._last_heartbeat = 0.0

    def wait(self, after: int) -> tuple[int, calls.ServingReply | None, AppError | None]:
        """The first tick after ``after`` (or the current one if the ticker misses several)."""
        for _ in range(5):
            published = self._next  # read before the tick: a tick published in between is seen below
            if self.tick > after:
                break
            published.wait(self.interval * 3)
        return self.tick, self.figures, self.error

    def _publish(self, figures: calls.ServingReply | None, error: AppError | None) -> None:
        self.figures, self.error = figures, error
        self.tick += 1
        published, self._next = self._next, threading.Event()
        published.set()

    def run(self) -> None:
        next_tick = time.monotonic()
        with self.app.app_context():
            while True:
                now = time.time()
                with _registry:
                    if not self.users:
                        del _tickers[self.event_id]
                        return
                    heartbeat_every = (self.figures.heartbeat_timeout if self.figures else 60) / 3
                    due = now - self._last_heartbeat >= heartbeat_every
                    heartbeats = list(self.users) if due else None
                figures, error = self.figures, None
                try:
                    lease = calls.ProcessLease.of(QueueKeys(self.event_id), process_id(), now + STREAM_LEASE_SECONDS,
                                                  STREAM_LEASE_SECONDS * 2)
                    figures = services.serving(self.event_id, lease, heartbeats)
                    if due:
                        self._last_heartbeat = now
                except AppError as exc:  # the sale is gone or closed: its streams end
                    error = exc
                except Exception:  # noqa: BLE001 - Redis away: streams keep the last figures, the lease lapses later
                    log.warning("serving figures of sale %s unavailable", self.event_id, exc_info=True)
                finally:
                    # a sale missing from Redis is read from MySQL: no transaction (and no
                    # snapshot) may stay open across ticks
                    db.session.remove()
                self._publish(figures, error)
                # ticks at a fixed rate, not an interval after each tick's work: a sleep of the
                # interval after the SERVING call and the wait for the streams of the last tick
                # made every tick late (0.97 updates a second at 19,700 streams). A late ticker
                # ticks at once and counts from then: no burst of ticks to catch up.
                next_tick = max(next_tick + self.interval, time.monotonic())
                time.sleep(max(0.0, next_tick - time.monotonic()))


_registry = threading.RLock()
_tickers: dict[int, SaleTicker] = {}


def subscribe(event_id: int, user_id: int) -> SaleTicker:
    """This process's ticker of the sale, started with its first stream."""
    with _registry:
        ticker = _tickers.get(event_id)
        if ticker is None:
            ticker = _tickers[event_id] = SaleTicker(current_app._get_current_object(), event_id,
                                                     current_app.config["SSE_INTERVAL_SECONDS"])
            threading.Thread(target=ticker.run, name=f"sale-ticker-{event_id}", daemon=True).start()
        ticker.users[user_id] += 1
        return ticker


def unsubscribe(ticker: SaleTicker, user_id: int) -> None:
    with _registry:
        ticker.users[user_id] -= 1
        if ticker.users[user_id] <= 0:
            del ticker.users[user_id]


def updates(event_id: int, user_id: int, first: services.QueueView, stream_id: str, client_socket: Any
            ) -> Iterator[str]:
    """The stream's events: the status whenever it changes, worked out from each tick's serving
    figures; a comment every 15 s keeps proxies from closing a quiet stream. Ends after admitted or
    expired, at SSE_MAX_SECONDS, or when the fan closes the page."""
    deadline = time.monotonic() + current_app.config["SSE_MAX_SECONDS"]
    db.session.remove()  # whatever opening read from MySQL: a stream holds no connection for its hours
    ticker = subscribe(event_id, user_id)
    view, seen, last, last_sent = first, ticker.tick, None, 0.0
    known_position = view.position  # the last exact (or shown) position: a place never moves back
    try:
        while True:
            payload = orjson.dumps(view.as_dict(), option=orjson.OPT_SORT_KEYS).decode()
            if payload != last:
                yield f"event: status\ndata: {payload}\n\n"
                last, last_sent = payload, time.monotonic()
            elif time.monotonic() - last_sent > 15:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            if view.status in TERMINAL or time.monotonic() > deadline:
                return
            seen, figures, error = ticker.wait(seen)
            # a closed page is also noticed by the next write; a peek every few ticks frees its
            # lease sooner at a fifth of the cost
            if error is not None or (seen % 5 == 0 and client_gone(client_socket)):
                return
            if figures is None:
                continue  # no figures this tick (Redis away): keep the last view
            if view.line_number is None or figures.served_up_to >= view.line_number:
                if view.line_number is None and not figures.shuffled:
                    continue  # still in the pre-queue: nothing changes until the draw
                # the line reached this fan (or the pre-queue was drawn): their exact status,
                # with the admission pass when it is their turn
                try:
                    view = services.status(event_id, user_id, metered=False)
                except AppError:
                    return
                known_position = view.position
            else:
                view = services.estimate(view.line_number, figures, time.time(), known_position=known_position,
                                         place=view.place)
                known_position = view.position
    finally:  # also when the client goes away (the generator is closed)
        unsubscribe(ticker, user_id)
        try:
            close_lease(event_id, user_id, stream_id)
        except Exception:  # noqa: BLE001 - the count is then high until the process's lease lapses
            pass


def client_gone(sock: Any) -> bool:
    """True when the client closed its end of the stream's connection (a readable socket with
    nothing to read is at EOF). Never blocks: a peek with the socket's timeout at zero (not
    select(), which refuses descriptors above 1023: the bench found every stream beyond the
    first thousand ended after its first event)."""
    if sock is None:  # not served by gunicorn (tests' WSGI client): rely on the write and the lease
        return False
    try:
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        finally:
            sock.settimeout(timeout)
    except BlockingIOError:  # nothing to read: still there
        return False
    except (OSError, ValueError):  # reset by the peer, or already closed
        return True
