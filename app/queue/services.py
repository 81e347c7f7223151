"""Waiting-room rules on top of the Lua scripts: join, status, leave, advance, admin controls.

Honest wait estimate (app/queue/eta.py, documented in docs/waiting-room.md): the advancer learns
the line's speed each tick and publishes it; status and join turn it into an ETA and a range:
    eta       = ceil((ahead + 0.5) / speed), none while paused
    poll_after_ms = clamp(eta * 1000 / 4, 1000, min(30000, heartbeat_timeout * 1000 / 2))
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis
from flask import current_app
from sqlalchemy import select

from app.catalogue.models import Event
from app.catalogue.services import get_event
from app.db import epoch_text
from app.errors import AppError, Conflict, TokenRevoked, TooManyRequests
from app.extensions import db, redis_store
from app.observability.metrics import QUEUE_ADMISSIONS, QUEUE_EXPIRED, QUEUE_JOINS, QUEUE_WAIT
from app.queue import draws, eta, lanes, passes
from app.queue import pow as proof_of_work
from app.redis import calls, cluster
from app.redis.keys import REGISTRY_KEY, UNDRAINED_KEY, QueueKeys
from app.redis.locks import LockLost, LockTimeout, redis_lock
from app.tasking import call_after_commit, send_task

log = logging.getLogger(__name__)

MAX_BATCH = 500
NOTIFY_SLICE = 250  # admissions per notification task


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def sync_meta(event: Event) -> None:
    """Copy an event's waiting-room settings into Redis (pause/shuffle flags are Redis-owned)."""
    keys = QueueKeys(event.id)
    lane_fields = lanes.meta_fields(event)
    # the pre-queue opens before the first opening, a presale lane's when it opens earlier
    prequeue_opens = float(lane_fields["first_opens_at"]) - event.prequeue_minutes * 60
    pipe = redis_store.client.pipeline(transaction=False)
    pipe.hset(keys.meta, mapping={
        "admit_per_minute": event.admit_per_minute,
        "max_active": event.max_active,
        "window": event.admission_window_seconds,
        "heartbeat_timeout": event.heartbeat_timeout_seconds,
        "opens_at": epoch_text(event.sale_opens_at),
        "prequeue_opens_at": f"{prequeue_opens:.6f}",
        "closes_at": epoch_text(event.sale_closes_at),
        "starts_at": epoch_text(event.starts_at),
        "pow_difficulty": event.pow_difficulty or 0,
        "pow_threshold": event.pow_adaptive_threshold or 0,
        "pow_max": event.pow_max_difficulty,
        **lane_fields,
    })
    pipe.hsetnx(keys.meta, "paused", "0")
    pipe.hsetnx(keys.meta, "shuffled", "0")
    pipe.sadd(REGISTRY_KEY, event.id)
    pipe.sadd(UNDRAINED_KEY, event.id)  # its events are drained until the stream is empty, after the end too
    pipe.execute()


def _ensure_meta(event_id: int) -> None:
    event = get_event(event_id)  # 404 for an unknown event
    if event.closed_at is not None:  # its keys are gone for good: nothing re-creates them
        raise Conflict("The sale is closed", reason="sale_closed")
    sync_meta(event)
    lanes.sync_codes(event_id)


@dataclass
class QueueView:
    status: str
    position: int | None = None
    ahead: int | None = None
    eta_seconds: int | None = None
    eta_range_seconds: list[int] | None = None
    poll_after_ms: int | None = None
    admission_token: str | None = None
    admitted_until: str | None = None
    paused: bool = False
    reason: str | None = None
    line_number: int | None = None  # the place's number in the line (see ``estimate``)
    place: str | None = None  # the signed place (passes.issue_place)
    lane: str | None = None  # the priority lane the fan's access code put them in (app/queue/lanes.py)
    ticket_limit: int | None = None  # the access code's own limit, when lower than the sale's
    created: bool = False

    def as_dict(self) -> dict[str, Any]:
        body = self.__dict__.copy()  # less its one internal field: 0.14 us against a comprehension's 0.8
        del body["created"]
        return body


@dataclass(frozen=True)
class LineFigures:
    """What a wait estimate needs of the line, from an exact status (STATUS/JOIN's reply) or
    from the public serving figures (SERVING's)."""
    rate: float  # measured people/s (0: not measured yet)
    rel: float  # its relative uncertainty
    configured_per_minute: float
    heartbeat_timeout: float
    opens_at: float
    paused: bool
    pre_size: int

    @classmethod
    def of(cls, reply: calls.PlaceReply | calls.ServingReply) -> LineFigures:
        if isinstance(reply, calls.ServingReply):
            return cls(reply.eta_rate, reply.eta_rel, reply.admit_per_minute, reply.heartbeat_timeout,
                       reply.opens_at, reply.paused, reply.pre_queue)
        # with priority lanes, both replies give the rates at the fan's line's share (lanes.lua)
        return cls(float(reply.eta_rate or 0), float(reply.eta_rel or 1), float(reply.admit_per_minute),
                   float(reply.heartbeat_timeout), float(reply.opens_at), reply.paused == "1", int(reply.pre_size))


def _estimate(view: QueueView, figures: LineFigures, ahead: int | None, now: float) -> QueueView:
    """Fill in a waiting view's wait: ``ahead`` people in front, or None in the pre-queue (whose
    order the draw at opening decides: expect its middle)."""
    # the line's speed as the advancer measured it (app/queue/eta.py); before its first tick, the
    # configured rate with the widest range
    rate, uncertainty = ((figures.rate, figures.rel or 1.0) if figures.rate > 0
                         else (figures.configured_per_minute / 60, 1.0))
    ceiling = min(30_000, int(figures.heartbeat_timeout * 1000 / 2))
    view.paused = figures.paused
    until_open = max(0.0, figures.opens_at - now)
    if ahead is not None:
        # a line that is not open yet (the general one while a presale runs) starts moving at its opening
        view.position, view.ahead = ahead + 1, ahead
        expected, low, high = (round(until_open) + x for x in eta.wait_seconds(ahead, rate, uncertainty))
    else:
        view.status, view.reason = "waiting", "pre_queue"
        expected, low, high = (round(until_open) + x for x in eta.wait_seconds(figures.pre_size // 2, rate,
                                                                                  uncertainty))
    if view.paused:
        # no countdown while the sale is paused: the line is not moving, and nobody knows for how long
        view.poll_after_ms = min(ceiling, 5000)
        return view
    view.eta_seconds, view.eta_range_seconds = expected, [low, high]
    view.poll_after_ms = max(1000, min(ceiling, int(expected * 1000 / 4)))
    return view


def _build_view(event_id: int, user_id: int, place: calls.PlaceReply, now: float) -> QueueView:
    state, detail = place.state, place.detail
    view = QueueView(status=state, paused=place.paused == "1", created=bool(int(place.created)),
                     lane=place.lane or None, ticket_limit=int(place.ticket_limit) if place.ticket_limit else None)
    if state == "admitted":
        admitted_until = float(detail)
        view.admitted_until = _iso(admitted_until)
        view.admission_token = passes.issue(user_id, event_id, admitted_until, lane=view.lane,
                                            ticket_limit=view.ticket_limit)
        view.position, view.ahead, view.eta_seconds = 0, 0, 0
        return view
    if state == "expired":
        view.reason = detail or None
        return view
    if state not in {"waiting", "pre_queue"}:
        return view
    if state == "waiting" and view.lane:
        # a lane's numbers are its own, and the public serving figures are the general line's: a
        # lane's fan is told their exact place at each status (lanes are small), not a signed one
        return _estimate(view, LineFigures.of(place), int(place.rank), now)
    if state == "waiting":
        view.line_number = int(float(place.line_number))
        view.place = passes.issue_place(user_id, event_id, view.line_number, float(place.joined_at or now), now)
    return _estimate(view, LineFigures.of(place), int(place.rank) if state == "waiting" else None, now)


def _raise_for(refusal: calls.Refusal, event_id: int) -> None:
    outcome, detail = refusal
    if outcome == "pow_required":
        difficulty = int(detail or 0)
        raise AppError(f"This sale asks for a proof of work: send X-Proof-Of-Work: <nonce> such that "
                       f"SHA-1(\"{event_id}:<your user id>:<nonce>\") starts with {difficulty} zero bits",
                       status_code=428, reason="proof_of_work_required",
                       errors={"difficulty": difficulty, "challenge": f"{event_id}:<user id>:<nonce>"})
    if outcome == "rate_limited":
        retry_after = max(1, math.ceil(int(detail or 0) / 1000))
        raise TooManyRequests("Too many requests for this queue; slow down", reason="rate_limited",
                              headers={"Retry-After": str(retry_after)})
    if outcome == "not_open":
        raise Conflict(f"The waiting room opens at {_iso(float(detail or 0))}", reason="not_open_yet")
    if outcome == "closed":
        raise Conflict("The sale is closed", reason="sale_closed")
    if outcome == "token_revoked":
        raise TokenRevoked()
    if outcome.startswith("code_"):
        lanes.raise_code_refusal(outcome, detail)
    raise AssertionError(f"unhandled refusal {refusal}")  # no_meta is retried by _placed


def _placed(event_id: int, call: Callable[[], calls.PlaceReply | calls.Refusal]) -> calls.PlaceReply:
    """JOIN's or STATUS's place: a sale not yet in Redis is copied there and asked again; any other
    refusal is its 4xx."""
    reply = call()
    if isinstance(reply, calls.Refusal) and reply.outcome == "no_meta":
        _ensure_meta(event_id)
        reply = call()
    if isinstance(reply, calls.Refusal):
        _raise_for(reply, event_id)
    return reply


def _caller_keys(keys: QueueKeys, user_id: int, revoked_key: str | None) -> calls.CallerKeys:
    # the revocation key of the caller's token (checked inside the script: one round trip; a
    # separate check in cluster mode, app/redis/cluster.py)
    return calls.CallerKeys.of(keys, user_id, cluster.revocation_key(keys, revoked_key))


def join(event_id: int, user_id: int, revoked_key: str | None = None, proof_of_work: str = "",
         code: str | None = None) -> QueueView:
    """Take (or keep) a place: one script call, which also marks the user notifiable when they
    have a channel and remembers the sale for a channel registered later, checks the sale's
    proof of work when it asks for one (docs/security.md), and redeems an access ``code`` (the
    fan then waits in its lane: app/queue/lanes.py)."""
    keys = QueueKeys(event_id)
    now = time.time()
    code_digest = email_digest = ""
    if code:
        code_digest, email_digest = lanes.code_digest(event_id, code), lanes.email_digest_of(user_id)
    caller = _caller_keys(keys, user_id, revoked_key)
    user_keys, user_args = cluster.join_user_keys(event_id, user_id)
    per_second = current_app.config["QUEUE_RATE_LIMIT_PER_SECOND"]
    place = _placed(event_id, lambda: calls.join(
        keys, caller, user_keys, user_id=user_id, now=now, per_second=per_second, event_id=event_id,
        proof_of_work=proof_of_work[:64], user_args=user_args, code_digest=code_digest, email_digest=email_digest))
    view = _build_view(event_id, user_id, place, now)
    if view.created:
        QUEUE_JOINS.labels(event_id=str(event_id)).inc()
    return view


def status(event_id: int, user_id: int, *, metered: bool = True, revoked_key: str | None = None) -> QueueView:
    """The user's place and estimate. ``metered=False`` skips the per-user rate limit (the SSE
    stream, which paces its own checks)."""
    keys = QueueKeys(event_id)
    now = time.time()
    per_second = current_app.config["QUEUE_RATE_LIMIT_PER_SECOND"] if metered else 0
    caller = _caller_keys(keys, user_id, revoked_key)
    place = _placed(event_id, lambda: calls.status(keys, caller, user_id=user_id, now=now, per_second=per_second))
    return _build_view(event_id, user_id, place, now)


# --- the public serving figures (docs/waiting-room.md, "Status from the serving figures") ---------

def serving(event_id: int, lease: calls.ProcessLease | None = None, heartbeats: list[int] | None = None
            ) -> calls.ServingReply:
    """The sale's public serving figures: one SERVING call (``lease``: a stream process's, renewed
    in the same call with its fans' ``heartbeats``). A sale not yet in Redis is copied there first;
    an unknown one is a 404."""
    keys = calls.ServingKeys.of(QueueKeys(event_id))
    now = time.time()
    reply = calls.serving(keys, lease, now=now, heartbeats=heartbeats)
    if reply is None:
        _ensure_meta(event_id)
        reply = calls.serving(keys, lease, now=now, heartbeats=heartbeats)
    assert reply is not None  # sync_meta just wrote the sale's meta
    return reply


def serving_dict(event_id: int, figures: calls.ServingReply) -> dict[str, Any]:
    """What GET /api/queue/{id}/serving shows: anyone may know it, and it is the same for every fan."""
    return {
        "event_id": event_id,
        "served_up_to": int(figures.served_up_to),
        "admit_rate_per_second": round(figures.eta_rate, 4),
        "rate_uncertainty": round(figures.eta_rel, 4),
        "configured_admit_per_minute": figures.admit_per_minute,
        "paused": figures.paused,
        "heartbeat_timeout_seconds": figures.heartbeat_timeout,
        "opens_at": _iso(figures.opens_at),
        "closes_at": None if figures.closes_at is None else _iso(figures.closes_at),
        "drawn": figures.shuffled,
        "waiting": figures.waiting,
        "pre_queue": figures.pre_queue,
        "admitted_total": figures.admitted_total,
    }


def estimate(line_number: int, figures: calls.ServingReply, now: float, *, known_position: int | None = None,
             place: str | None = None) -> QueueView:
    """A fan's place worked out from their line number and the serving figures, with no call of
    their own. Line numbers are consecutive integers and are served in order, so at most
    ``line_number - served_up_to - 1`` people can be ahead (fewer when some left): the shown
    position is never lower than the true one. ``known_position`` (the last exact one) bounds it
    too, as a place never moves back."""
    position = max(1, line_number - int(figures.served_up_to))
    if known_position is not None:
        position = min(position, known_position)
    return _estimate(QueueView(status="waiting", line_number=line_number, place=place), _line_figures(figures),
                     position - 1, now)


@lru_cache(maxsize=64)
def _line_figures(figures: calls.ServingReply) -> LineFigures:
    # one tick's figures serve every open stream of the sale: converted once, not once per stream
    return LineFigures.of(figures)


def leave(event_id: int, user_id: int, kind: str = "QueueLeft") -> bool:
    """Give up a place, or free an admitted user's active slot (after a purchase or cancel)."""
    get_event(event_id)
    return calls.leave(QueueKeys(event_id), user_id=user_id, now=time.time(), kind=kind)


def release_active_slot(event_id: int, user_id: int) -> None:
    """Finishing or cancelling a purchase frees the admitted user's slot at once."""
    try:
        calls.leave(QueueKeys(event_id), user_id=user_id, now=time.time(), kind="AdmissionReleased")
    except redis.RedisError:
        # the slot then frees itself when the admission window lapses
        log.warning("could not release active slot of user %s in event %s", user_id, event_id, exc_info=True)


# --- advancement --------------------------------------------------------------------------------

@dataclass
class AdvanceResult:
    event_id: int
    status: str
    admitted: list[int]
    lapsed: int = 0
    abandoned: int = 0
    shuffled: int | None = None
    tick: eta.Tick | None = None  # what this step taught the wait estimator


def advance(event_id: int, max_batch: int = MAX_BATCH, force: int = 0, wait_seconds: float = 0.0) -> AdvanceResult:
    """One advancement step for one sale, guarded by a Redis lock (two advancers never overlap).

    ``force`` admits up to that many users now regardless of the rate (operators), still capped
    by max_active. ``wait_seconds``: how long to wait for a step in progress; with none, a sale
    another advancer holds answers "locked" (beat's tick: the next tick comes anyway).
    """
    client = redis_store.client
    keys = QueueKeys(event_id)
    try:
        with redis_lock(keys.advance_lock(), ttl_ms=10_000, wait_seconds=wait_seconds) as lock:
            now = time.time()
            reply = calls.advance(keys, now=now, max_batch=max_batch, force=force)
            shuffled = tick = None
            if reply.status == "no_meta":
                event = db.session.get(Event, event_id)
                if event is None or event.closed_at is not None:
                    client.srem(REGISTRY_KEY, event_id)
                    return AdvanceResult(event_id, "unknown_event" if event is None else "closed", [])
                sync_meta(event)
                reply = calls.advance(keys, now=now, max_batch=max_batch, force=force)
            if reply.status == "needs_shuffle":
                shuffled = draws.draw_prequeue(event_id, now, lock)
                reply = calls.advance(keys, now=now, max_batch=max_batch, force=force)
            if reply.status in {"ok", "paused"}:
                tick = _learn_speed(keys, now, reply)  # under the lock: one writer of the estimate at a time
            if reply.status != "ended":
                _adapt_proof_of_work(keys, now)
    except (LockTimeout, LockLost):  # another advancer has the sale (LockLost: it took over a long draw)
        return AdvanceResult(event_id, "locked", [])
    status_, lapsed, abandoned = reply.status, reply.lapsed, reply.abandoned
    if status_ == "ended":
        # a later join (if the sale allows one) registers it again; the last tick's events are
        # still drained (UNDRAINED_KEY keeps the sale until its stream is empty)
        client.sadd(UNDRAINED_KEY, event_id)
        client.srem(REGISTRY_KEY, event_id)
    label = str(event_id)
    # series of every advanced sale exist from its first step (0, not "no data", in alerts)
    QUEUE_ADMISSIONS.labels(event_id=label)
    for reason in ("abandoned", "window_lapsed"):
        QUEUE_EXPIRED.labels(event_id=label, reason=reason)
    if lapsed:
        QUEUE_EXPIRED.labels(event_id=label, reason="window_lapsed").inc(lapsed)
    if abandoned:
        QUEUE_EXPIRED.labels(event_id=label, reason="abandoned").inc(abandoned)
    admitted: list[int] = []
    to_notify: list[list] = []
    for user, joined, notifiable, until in reply.admitted:
        admitted.append(user)
        QUEUE_WAIT.observe(max(0.0, now - joined))
        if notifiable:
            to_notify.append([user, until])
    # the promise: a user who registered a channel may leave the page and is told. One task per
    # slice of the batch: its sends run in parallel, and several slices can run on several workers.
    for i in range(0, len(to_notify), NOTIFY_SLICE):
        send_task("notifications.notify_admissions", [event_id, now, to_notify[i:i + NOTIFY_SLICE]])
    if admitted:
        QUEUE_ADMISSIONS.labels(event_id=label).inc(len(admitted))
    return AdvanceResult(event_id, status_, admitted, lapsed, abandoned, shuffled, tick)



def _learn_speed(keys: QueueKeys, now: float, reply: calls.AdvanceReply) -> eta.Tick:
    """Feed this tick to the wait estimator and publish the line's speed for status/join."""
    client = redis_store.client
    tick = eta.Tick(at=now, dt=reply.observed_seconds, served=reply.served, capacity_bound=reply.capacity_bound,
                    per_minute=reply.admit_per_minute, max_active=reply.max_active, window=reply.window,
                    paused=reply.status == "paused", admitted=reply.admitted_count)
    state = eta.update(eta.EtaState.loads(client.hget(keys.stats, "eta_state")), tick)
    client.hset(keys.stats, mapping={"eta_state": state.dumps(), "eta_rate": f"{state.rate or 0:.6f}",
                                     "eta_rel": f"{state.rel:.4f}"})
    return tick


def _adapt_proof_of_work(keys: QueueKeys, now: float) -> None:
    """Turn the join attempts since the last tick into the sale's difficulty (app/queue/pow.py),
    when the sale asks for an adaptive one."""
    client = redis_store.client
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.meta, "pow_difficulty", "pow_threshold", "pow_max", "pow_current")
    pipe.hmget(keys.stats, "join_attempts", "pow_tick_at")
    (base, threshold, maximum, current), (attempts, last_tick) = pipe.execute()
    settings = proof_of_work.PowSettings(int(base or 0), int(threshold or 0), int(maximum or 0))
    if settings.threshold <= 0:
        if current not in (None, "0"):  # switched off: back to the sale's own difficulty
            client.hset(keys.meta, "pow_current", 0)
        return
    seen = int(attempts or 0)
    rate = seen / max(0.05, now - float(last_tick)) if last_tick else float(seen)
    difficulty = proof_of_work.adapted_difficulty(settings, int(current or 0), rate)
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(keys.stats, "join_attempts", -seen)  # attempts made meanwhile count next tick
    pipe.hset(keys.stats, mapping={"pow_tick_at": f"{now:.6f}", "join_attempts_per_second": f"{rate:.2f}"})
    pipe.hset(keys.meta, "pow_current", difficulty)
    pipe.execute()


ADMIT_NOW_WAIT_SECONDS = 10.0  # the advance lock's TTL: a tick or a pre-queue draw in progress ends within it


def admit_now(event_id: int, count: int) -> AdvanceResult:
    """Admit up to ``count`` users now (an operator's order). It waits for a tick in progress:
    without the wait, an order that met beat's tick admitted nobody and answered "locked"."""
    return advance(event_id, force=count, wait_seconds=ADMIT_NOW_WAIT_SECONDS)


def advance_all() -> list[AdvanceResult]:
    results = []
    for raw in redis_store.client.smembers(REGISTRY_KEY):
        try:
            results.append(advance(int(raw)))
        except Exception:  # noqa: BLE001 - one broken sale must not stop the others
            log.exception("advancing queue of event %s failed", raw)
    return results


# --- admin ------------------------------------------------------------------------------------

def set_paused(event_id: int, paused: bool) -> None:
    sync_meta(get_event(event_id))
    redis_store.client.hset(QueueKeys(event_id).meta, "paused", "1" if paused else "0")


def update_settings(event_id: int, changes: dict[str, int]) -> Event:
    event = get_event(event_id)
    for field, value in changes.items():
        setattr(event, field, value)
    db.session.flush()
    call_after_commit(db.session(), lambda: sync_meta(event))  # Redis follows MySQL once committed
    return event


def line_figures(event_id: int) -> dict[str, Any]:
    """The waiting room's own figures of a sale: the line, the active set, totals, the measured
    rate and the oldest wait (app/sales/services.stats adds the rest of the sale's)."""
    event = get_event(event_id)
    keys = QueueKeys(event_id)
    now = time.time()
    client = redis_store.client
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.line)
    pipe.scard(keys.pre)
    pipe.zcount(keys.active, f"({now}", "+inf")
    pipe.hgetall(keys.stats)
    pipe.hget(keys.meta, "paused")
    pipe.zrange(keys.line, 0, 0)
    pipe.hget(keys.meta, "pow_current")
    pipe.zcard(keys.lanes)
    line, pre, active, st, paused, front, pow_current, in_lanes = pipe.execute()
    oldest = 0.0
    if front:
        joined = client.hget(keys.joined, front[0])
        oldest = max(0.0, now - float(joined)) if joined else 0.0
    rate_per_minute = float(st.get("rate_ewma", 0) or 0)
    waiting = int(line) + int(pre) + int(in_lanes)  # the priority lanes' fans wait too (app/queue/lanes.py)
    return {
        "event_id": event_id,
        # the console's figure (app/web): the last fan's wait at the measured rate
        "last_eta_seconds": round(waiting / (rate_per_minute / 60)) if waiting and rate_per_minute > 0 else None,
        "waiting": waiting,
        "pre_queue": int(pre),
        "active": int(active),
        "admitted_total": int(st.get("admitted_total", 0)),
        "expired_total": int(st.get("expired_total", 0)),
        "joined_total": int(st.get("joined_total", 0)),
        "admit_rate_per_minute": round(rate_per_minute, 2),
        "configured_admit_per_minute": event.admit_per_minute,
        "max_active": event.max_active,
        "admission_window_seconds": event.admission_window_seconds,
        "oldest_wait_seconds": round(oldest, 1),
        "paused": paused == "1",
        "pow_difficulty": proof_of_work.asked_difficulty(event.pow_difficulty, pow_current),
        "pow_adaptive_threshold": event.pow_adaptive_threshold,
        "pow_max_difficulty": event.pow_max_difficulty,
        "join_attempts_per_second": float(st.get("join_attempts_per_second", 0) or 0),
    }


def open_event_ids() -> list[int]:
    now = datetime.now(UTC)
    return list(db.session.scalars(select(Event.id).where(Event.starts_at > now)))
