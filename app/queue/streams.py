"""Live updates by broadcast, and leases on open SSE streams.

Broadcast: each stream-server process runs one ticker per sale it streams (``SaleTicker``). Once
per SSE_INTERVAL_SECONDS the ticker reads the sale's public serving figures in one SERVING call,
and every open stream of that sale works out its own position from them and its line number
(services.estimate): Redis work per second is O(sales x processes), not O(fans). A stream asks for
its exact status only when the line reaches its number (its admission, with the pass), when the
pre-queue is drawn, and when it opens.

Carrying: served by gunicorn's gevent worker, a stream's greenlet sends the first event, then
hands the stream to its sale's ticker and sleeps. Each tick the ticker works out every carried
stream's position and writes the changed ones' events on their sockets itself, framed as the
chunks gunicorn would have written: no greenlet wakes, and no event passes through werkzeug's
iterator and gunicorn's write. A stream goes back to its greenlet for what needs a call or may
block: the exact status (the line reached the fan, or the pre-queue was drawn), a socket whose
buffer is full, a closed page, the sale's end, SSE_MAX_SECONDS. An update cost about 50 us of CPU
through the greenlet and about a third of that carried (docs/scale.md).

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
        self.carried: set[CarriedStream] = set()  # streams whose events the ticker writes itself

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
        self._deliver(figures, error)

    def carry(self, stream: CarriedStream) -> None:
        self.carried.add(stream)

    def drop(self, stream: CarriedStream) -> None:
        self.carried.discard(stream)

    def _deliver(self, figures: calls.ServingReply | None, error: AppError | None) -> None:
        """This tick's event of every carried stream, written on its socket."""
        now, clock, peek = time.time(), time.monotonic(), self.tick % 5 == 0
        for n, stream in enumerate(list(self.carried)):
            if n % 1000 == 999:
                time.sleep(0)  # let the process's other greenlets in (opens, polls) during a long round
            if stream not in self.carried:
                continue
            try:
                reason = "error" if error is not None else stream.on_tick(figures, now, clock, peek)
            except Exception:  # noqa: BLE001 - a bug in one stream's estimate: its greenlet takes over
                log.exception("carried stream of sale %s failed", self.event_id)
                reason = "exact"
            if reason is not None:
                self.carried.discard(stream)
                stream.hand_back(reason)

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


class StreamSocket:
    """The connection of a stream served by gunicorn's gevent worker, which the ticker writes on:
    each event framed as the chunk gunicorn writes for a response without a length (HTTP/1.1),
    or as it is (HTTP/1.0, where the response ends with the connection)."""

    __slots__ = ("sock", "chunked", "timeout")

    def __init__(self, sock: Any, chunked: bool) -> None:
        self.sock, self.chunked, self.timeout = sock, chunked, sock.gettimeout()

    @classmethod
    def of(cls, environ: dict[str, Any]) -> StreamSocket | None:
        """The stream's socket when the ticker can write on it: gunicorn's, under gevent (one
        thread, so the ticker never writes while the greenlet does); None elsewhere (the
        greenlet then sends every event)."""
        sock = environ.get("gunicorn.socket")
        if sock is None or environ.get("REQUEST_METHOD") != "GET" or not _gevent_patched():
            return None
        return cls(sock, environ.get("SERVER_PROTOCOL") != "HTTP/1.0")

    def frame(self, data: bytes) -> bytes:
        return b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("socket") and monkey.is_module_patched("threading")


def event_bytes(view: services.QueueView) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(view.as_dict(), option=orjson.OPT_SORT_KEYS) + b"\n\n"


KEEP_ALIVE = b": keep-alive\n\n"
KEEP_ALIVE_SECONDS = 15


class CarriedStream:
    """A stream between two events that need its greenlet, in its ticker's hands: ``on_tick``
    works out its position and writes its event (or a keep-alive) on its socket; anything else
    hands it back (``reason``), and the greenlet goes on from the view it was left with."""

    __slots__ = ("out", "view", "last", "last_sent", "deadline", "reason", "unsent", "_back")

    def __init__(self, out: StreamSocket, view: services.QueueView, last: bytes, last_sent: float,
                 deadline: float) -> None:
        self.out, self.view = out, view
        self.last, self.last_sent, self.deadline = last, last_sent, deadline
        self.reason: str | None = None
        self.unsent = b""
        self._back = threading.Event()
        out.sock.settimeout(0.0)  # a write that would block is handed back, never waited for here

    def on_tick(self, figures: calls.ServingReply | None, now: float, clock: float, peek: bool) -> str | None:
        """None while the ticker keeps the stream; else why the greenlet must take it back."""
        if clock > self.deadline:
            return "deadline"
        if peek and client_gone(self.out.sock):
            # a closed page is also noticed by the next write, but an unchanged stream writes
            # only every 15 s: a peek every few ticks frees its lease sooner
            return "gone"
        if figures is not None:
            moved = next_view(self.view, figures, now)
            if moved is None:
                return "exact"
            self.view = moved
        payload = event_bytes(self.view)
        if payload != self.last:
            self.last = payload
        elif clock - self.last_sent > KEEP_ALIVE_SECONDS:
            payload = KEEP_ALIVE
        else:
            return None
        self.last_sent = clock
        data = self.out.frame(payload)
        try:
            sent = self.out.sock.send(data)
        except BlockingIOError:
            sent = 0
        except (OSError, ValueError):  # reset by the peer, or closed
            return "gone"
        if sent < len(data):
            self.unsent = data[sent:]
            return "blocked"  # the fan's end is slow: the greenlet waits for it, not the ticker
        return None

    def hand_back(self, reason: str) -> None:
        self.reason = reason
        self._back.set()

    def wait(self, ticker: SaleTicker, interval: float) -> str:
        """Sleep until the ticker hands the stream back; then the socket blocks again as
        gunicorn expects. A ticker that stopped ticking (a bug) loses it after its deadline."""
        if not self._back.wait(max(0.0, self.deadline - time.monotonic()) + interval * 3):
            ticker.drop(self)
            self.reason = "deadline"
        self.out.sock.settimeout(self.out.timeout)
        return self.reason or "deadline"


def next_view(view: services.QueueView, figures: calls.ServingReply, now: float) -> services.QueueView | None:
    """The fan's view after a tick's serving figures, worked out from their line number; None
    when only their exact status will do: the line reached them (their turn, with the pass) or
    the pre-queue was drawn (their number). The last shown position bounds the new one, as a
    place never moves back."""
    if view.line_number is None:
        return None if figures.shuffled else view  # in the pre-queue nothing changes until the draw
    if figures.served_up_to >= view.line_number:
        return None
    return services.estimate(view.line_number, figures, now, known_position=view.position, place=view.place)


def updates(event_id: int, user_id: int, first: services.QueueView, stream_id: str, out: StreamSocket | None
            ) -> Iterator[bytes]:
    """The stream's events: the status whenever it changes, worked out from each tick's serving
    figures; a comment every 15 s keeps proxies from closing a quiet stream. Ends after admitted or
    expired, at SSE_MAX_SECONDS, or when the fan closes the page. With a StreamSocket, the ticker
    carries the stream between the events that need this greenlet."""
    interval = current_app.config["SSE_INTERVAL_SECONDS"]
    deadline = time.monotonic() + current_app.config["SSE_MAX_SECONDS"]
    db.session.remove()  # whatever opening read from MySQL: a stream holds no connection for its hours
    ticker = subscribe(event_id, user_id)
    view, seen, last, last_sent = first, ticker.tick, b"", 0.0
    try:
        while True:
            payload = event_bytes(view)
            if payload != last:
                yield payload
                last, last_sent = payload, time.monotonic()
            elif time.monotonic() - last_sent > KEEP_ALIVE_SECONDS:
                yield KEEP_ALIVE
                last_sent = time.monotonic()
            if view.status in TERMINAL or time.monotonic() > deadline:
                return
            if out is not None:
                carried = CarriedStream(out, view, last, last_sent, deadline)
                ticker.carry(carried)
                reason = carried.wait(ticker, interval)
                view, last, last_sent = carried.view, carried.last, carried.last_sent
                if reason == "blocked":
                    try:
                        out.sock.sendall(carried.unsent)  # waits for this fan only
                    except (OSError, ValueError):  # the fan is gone
                        return
                    continue
                if reason != "exact":
                    return  # gone, the sale's end, or SSE_MAX_SECONDS
            else:
                # no socket of its own here (a test's WSGI client): a closed page is noticed by
                # the next write
                seen, figures, error = ticker.wait(seen)
                if error is not None:
                    return
                if figures is None:
                    continue  # no figures this tick (Redis away): keep the last view
                moved = next_view(view, figures, time.time())
                if moved is not None:
                    view = moved
                    continue
            # the line reached this fan (or the pre-queue was drawn): their exact status, with the
            # admission pass when it is their turn
            try:
                view = services.status(event_id, user_id, metered=False)
            except AppError:
                return
    finally:  # also when the client goes away (the generator is closed)
        unsubscribe(ticker, user_id)
        try:
            close_lease(event_id, user_id, stream_id)
        except Exception:  # noqa: BLE001 - the count is then high until the process's lease lapses
            pass


def client_gone(sock: Any) -> bool:
    """True when the fan closed the page: a readable socket with nothing to read is at EOF. A
    peek on a carried stream's socket, whose timeout is zero, so it never blocks (not select(),
    which refuses descriptors above 1023: the bench found every stream beyond the first thousand
    ended after its first event)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:  # nothing to read: still there
        return False
    except (OSError, ValueError):  # reset by the peer, or already closed
        return True
