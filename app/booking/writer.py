"""The hold writer: turns accepted reserve requests (the sales' Redis streams) into holds or
rejections in MySQL, in batches.

One transaction per batch per sale:
- the buyers' user rows are locked in id order (the per-user limit is checked in MySQL, the truth);
- general admission: the section row is locked and one conditional UPDATE takes the summed
  quantity of the requests that fit, in arrival order; the rest are rejected `sold_out`;
- seats: the requested seats are locked in id order and claimed by one UPDATE; a request whose
  seats are taken (by anyone, or earlier in the same batch) is rejected `seats_unavailable`;
- reservations and their outbox events (one each: SeatsHeld or ReservationRejected): one
  multi-row INSERT each.
Only after COMMIT are the stream entries acknowledged, so a writer killed at any point leaves its
entries pending in the consumer group, and another writer claims them (XAUTOCLAIM) after
HOLD_WRITER_CLAIM_IDLE_MS. A re-run finds the reservations already written and only acknowledges.

Lock order: users -> section or seats (-> expired reservations, SKIP LOCKED). Confirm and cancel
lock reservation -> section; no path waits in the other direction.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import Flask
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import OperationalError

from app.auth.models import User
from app.booking import gate
from app.booking.models import CONFIRMED, HELD, REJECTED, Reservation
from app.catalogue.models import SEAT_AVAILABLE, SEAT_HELD, SECTION_GENERAL, Event, Seat, Section
from app.db import bulk_insert, is_busy, retry_when_busy, utcnow
from app.extensions import db, redis_store
from app.observability.context import clear_context, set_context
from app.observability.metrics import HOLD_LATENCY, RESERVATIONS
from app.outbox.models import OutboxEvent
from app.outbox.services import SCHEMA_VERSION, kick_relay_after_commit, topic_for
from app.redis.keys import REGISTRY_KEY, QueueKeys

CLUSTER_POLL_MS = 20  # cluster mode, several sales: the pause between rounds of per-stream reads

log = logging.getLogger(__name__)

GROUP = "hold-writers"
DROPPED = "dropped"  # an outcome with no row (see _drop_reused_keys)
BUSY_ATTEMPTS = 6


def event_data(r: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    data = {"reservation_id": r["id"], "user_id": r["user_id"], "event_id": r["event_id"],
            "section_id": r["section_id"], "quantity": r["quantity"], "seat_ids": r.get("seat_ids"),
            "amount_cents": r["amount_cents"], "currency": r["currency"], "status": status}
    data.update(extra)
    return data


def _outbox_row(type_: str, r: dict[str, Any], data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": type_, "topic": topic_for("reservation"),
            "aggregate_type": "reservation", "aggregate_id": r["id"], "schema_version": SCHEMA_VERSION,
            "occurred_at": at, "data": data, "attempts": 0}


Outcome = dict[str, tuple[str, str | None, datetime | None]]


class Batch:
    """The decisions of one batch: reservation id -> (status, reason, hold_until)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.outcome: dict[str, tuple[str, str | None, datetime | None]] = {}
        self.limit = 0
        self.live: dict[int, int] = {}  # user -> units confirmed or held (in MySQL and in this batch)

    def over_limit(self, r: dict[str, Any]) -> bool:
        if self.live.get(r["user_id"], 0) + r["quantity"] > self.limit:
            self.reject(r, "limit_exceeded")
            return True
        return False

    def reject(self, r: dict[str, Any], reason: str) -> None:
        self.outcome[r["id"]] = (REJECTED, reason, None)

    def hold(self, r: dict[str, Any], until: datetime) -> None:
        self.outcome[r["id"]] = (HELD, None, until)
        self.live[r["user_id"]] = self.live.get(r["user_id"], 0) + r["quantity"]


def write(event_id: int, records: list[dict[str, Any]]) -> Outcome:
    """Write one batch of accepted requests of one sale (retrying lock timeouts and deadlocks);
    returns the outcome of each request that this call wrote (already-written ones are absent)."""
    return retry_when_busy(db.session, lambda: _write_once(event_id, records), attempts=BUSY_ATTEMPTS,
                           first_delay=0.05)


def _write_once(event_id: int, records: list[dict[str, Any]]) -> Outcome:
    session = db.session
    # one lookup serves both checks: requests written already (a re-run) and keys taken by
    # another reservation id
    users = {r["user_id"] for r in records}
    existing = session.execute(select(Reservation.id, Reservation.user_id, Reservation.idempotency_key).where(
        Reservation.event_id == event_id, Reservation.user_id.in_(users))).all()
    done = {row.id for row in existing}
    todo = [r for r in records if r["id"] not in done]
    if not todo:
        session.rollback()
        return {}
    batch = Batch(todo)
    todo = _drop_reused_keys({(row.user_id, row.idempotency_key) for row in existing}, batch)
    now = utcnow()
    event = session.get(Event, event_id)
    users = sorted({r["user_id"] for r in todo})
    # the per-user limit is decided here, in MySQL: lock the buyers in id order, then count
    session.execute(select(User.id).where(User.id.in_(users)).order_by(User.id).with_for_update())
    live = dict(session.execute(
        select(Reservation.user_id, func.coalesce(func.sum(Reservation.quantity), 0))
        .where(Reservation.event_id == event_id, Reservation.user_id.in_(users),
               or_(Reservation.status == CONFIRMED,
                   and_(Reservation.status == HELD, Reservation.hold_expires_at > now)))
        .group_by(Reservation.user_id)).all())
    if event is None:
        for r in todo:
            batch.reject(r, "event_not_found")
        _insert(session, batch, now)
        session.commit()
        return batch.outcome
    batch.limit = event.max_per_user
    batch.live = {int(user): int(units) for user, units in live.items()}
    by_section: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in todo:
        by_section[r["section_id"]].append(r)
    hold_until = now + timedelta(seconds=event.hold_seconds)
    for section_id in sorted(by_section):
        section = session.scalar(select(Section).where(Section.id == section_id).with_for_update())
        wanted = by_section[section_id]
        if section is None or section.event_id != event_id:
            for r in wanted:
                batch.reject(r, "section_not_found")
        elif section.kind == SECTION_GENERAL:
            _hold_general(session, section, wanted, batch, hold_until, now)
        else:
            _hold_seats(session, section, wanted, batch, hold_until, now)
    _insert(session, batch, now)
    session.commit()
    return batch.outcome


def _drop_reused_keys(taken: set[tuple[int, str]], batch: Batch) -> list[dict[str, Any]]:
    """A key already in MySQL under another reservation id (possible only if Redis lost its
    idempotency record) cannot get a row: the request is dropped, its units go back."""
    keep = []
    for r in batch.records:
        key = (r["user_id"], r["idempotency_key"])
        if key in taken:
            batch.outcome[r["id"]] = (DROPPED, "idempotency_key_reused", None)
        else:
            taken.add(key)
            keep.append(r)
    return keep


def _hold_general(session: Any, section: Section, wanted: list[dict[str, Any]], batch: Batch,
                  hold_until: datetime, now: datetime) -> None:
    from app.booking.services import release_expired_in_section

    free = section.capacity - section.sold - section.held
    if free < sum(r["quantity"] for r in wanted) and release_expired_in_section(session, section, now, limit=500):
        session.refresh(section)
        free = section.capacity - section.sold - section.held
    taken = 0
    for r in wanted:  # arrival order: the earlier request gets the last units
        if batch.over_limit(r):
            continue
        if taken + r["quantity"] <= free:
            taken += r["quantity"]
            batch.hold(r, hold_until)
        else:
            batch.reject(r, "sold_out")
    if taken:
        moved = session.execute(
            update(Section).where(Section.id == section.id, Section.sold + Section.held + taken <= Section.capacity)
            .values(held=Section.held + taken).execution_options(synchronize_session=False)).rowcount
        if moved != 1:  # cannot happen under the row lock; refuse rather than oversell
            raise RuntimeError(f"section {section.id} changed under its row lock")


def _hold_seats(session: Any, section: Section, wanted: list[dict[str, Any]], batch: Batch,
                hold_until: datetime, now: datetime) -> None:
    seat_ids = sorted({s for r in wanted for s in r["seat_ids"] or []})
    # lock in id order: overlapping batches queue up instead of deadlocking
    rows = session.execute(select(Seat.id, Seat.state, Seat.held_until).where(
        Seat.id.in_(seat_ids), Seat.section_id == section.id).order_by(Seat.id).with_for_update()).all()
    free = {row.id for row in rows if row.state == SEAT_AVAILABLE
            or (row.state == SEAT_HELD and row.held_until is not None and row.held_until <= now)}
    owner: dict[int, str] = {}
    for r in wanted:
        mine = r["seat_ids"] or []
        if batch.over_limit(r):
            continue
        if mine and all(s in free for s in mine):
            free.difference_update(mine)
            owner.update({s: r["id"] for s in mine})
            batch.hold(r, hold_until)
        else:
            batch.reject(r, "seats_unavailable")
    if owner:
        claimed = session.execute(
            update(Seat).where(Seat.id.in_(owner))
            .values(state=SEAT_HELD, held_until=hold_until,
                    reservation_id=case(owner, value=Seat.id))
            .execution_options(synchronize_session=False)).rowcount
        if claimed != len(owner):
            raise RuntimeError(f"seats of section {section.id} changed under their row locks")


def _insert(session: Any, batch: Batch, now: datetime) -> None:
    reservations, events = [], []
    for r in batch.records:
        status, reason, until = batch.outcome[r["id"]]
        if status == DROPPED:
            log.warning("request dropped: its Idempotency-Key is taken", extra={"reservation_id": r["id"]})
            continue
        created = datetime.fromtimestamp(r["created_at"], UTC)
        reservations.append({
            "id": r["id"], "user_id": r["user_id"], "event_id": r["event_id"], "section_id": r["section_id"],
            "quantity": r["quantity"], "seat_ids": r.get("seat_ids"), "status": status, "reason": reason,
            "amount_cents": r["amount_cents"], "currency": r["currency"], "idempotency_key": r["idempotency_key"],
            "request_hash": r["request_hash"], "hold_expires_at": until, "payment_ref": None,
            "created_at": created, "updated_at": now, "confirmed_at": None})
        # one event per request: its first durable state (the request itself lived only in Redis)
        requested = {"requested_at": created.isoformat(), "request_id": r.get("request_id")}
        if status == HELD:
            events.append(_outbox_row("SeatsHeld", r, event_data(r, HELD, hold_expires_at=until.isoformat(),
                                                                  **requested), now))
        else:
            events.append(_outbox_row("ReservationRejected", r, event_data(r, REJECTED, reason=reason,
                                                                            **requested), now))
    if reservations:
        bulk_insert(session, Reservation.__table__, reservations)
        bulk_insert(session, OutboxEvent.__table__, events)
        kick_relay_after_commit(session)


def _after_commit(event_id: int, records: list[dict[str, Any]], outcome: dict, entry_ids: list[str]) -> None:
    """Redis follows MySQL: holds tracked, rejected units back, records and entries retired."""
    keys = QueueKeys(event_id)
    client = redis_store.client
    pipe = client.pipeline(transaction=True)  # the reconciler must see the records and the counter move together
    for r in records:
        if r["id"] not in outcome:
            continue
        status, _reason, until = outcome[r["id"]]
        if status == HELD:
            pipe.zadd(keys.holds(r["section_id"]), {f"{r['id']}:{r['quantity']}": until.timestamp()})
    if records:
        pipe.hdel(keys.pending(), *[r["id"] for r in records])
    pipe.incr(keys.writes())
    pipe.xack(keys.reserve_stream(), GROUP, *entry_ids)
    pipe.xdel(keys.reserve_stream(), *entry_ids)
    pipe.execute()
    now = time.time()
    for r in records:
        if r["id"] not in outcome:
            continue
        status, reason, _until = outcome[r["id"]]
        if status != HELD:  # rejected or dropped: the units never became a hold
            gate.give_back(event_id, r["section_id"], r["quantity"], user_id=r["user_id"])
        if status == DROPPED:
            continue
        RESERVATIONS.labels(outcome="held" if status == HELD else "rejected").inc()
        # the API's request id travels with the request record into this log line
        set_context(request_id=r.get("request_id"), user_id=r["user_id"], event_id=event_id)
        if status == HELD:
            HOLD_LATENCY.observe(max(0.0, now - r["created_at"]))
            log.info("seats held", extra={"reservation_id": r["id"], "quantity": r["quantity"]})
        else:
            log.info("reservation rejected", extra={"reservation_id": r["id"], "reason": reason})
    clear_context()


def process(event_id: int, entries: list[tuple[str, dict[str, str]]]) -> int:
    """Write and acknowledge stream entries of one sale; returns how many were processed.

    A batch that fails for a reason other than a busy database is split, so one bad entry cannot
    hold up the others: an entry that fails on its own goes to the sale's dead-letter stream."""
    if not entries:
        return 0
    try:
        records = [json.loads(fields["r"]) for _entry_id, fields in entries]
        outcome = write(event_id, records)
    except OperationalError as exc:
        if is_busy(exc):
            raise  # still busy after the retries: leave the entries for a later claim
        if len(entries) == 1:
            raise
        return sum(process(event_id, [entry]) for entry in entries)
    except Exception:  # noqa: BLE001 - any other failure: find the entry that causes it
        db.session.rollback()
        if len(entries) == 1:
            _dead_letter(event_id, entries[0])
            return 1
        return sum(process(event_id, [entry]) for entry in entries)
    _after_commit(event_id, records, outcome, [entry_id for entry_id, _fields in entries])
    return len(entries)


def _dead_letter(event_id: int, entry: tuple[str, dict[str, str]]) -> None:
    """Park an entry that cannot be written (logged with its error) and give its units back."""
    log.exception("hold writer: entry %s of event %s cannot be written; moved to the dead-letter stream",
                  entry[0], event_id)
    keys = QueueKeys(event_id)
    pipe = redis_store.client.pipeline(transaction=True)
    pipe.xadd(keys.dead_letters(), dict(entry[1]) or {"r": ""})
    pipe.xack(keys.reserve_stream(), GROUP, entry[0])
    pipe.xdel(keys.reserve_stream(), entry[0])
    pipe.execute()
    try:
        r = json.loads(entry[1]["r"])
        redis_store.client.hdel(keys.pending(), r["id"])
        gate.give_back(event_id, r["section_id"], r["quantity"], user_id=r["user_id"])
    except (KeyError, TypeError, ValueError):
        pass  # not even a record: nothing was taken for it


class HoldWriter:
    """A consumer of every sale's reserve stream (consumer group GROUP). Several can run: each
    entry goes to one of them, and a dead one's entries are claimed by the others."""

    def __init__(self, app: Flask, name: str | None = None) -> None:
        self.app = app
        cfg = app.config
        self.name = name or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.batch = cfg["HOLD_WRITER_BATCH"]
        self.block_ms = cfg["HOLD_WRITER_BLOCK_MS"]
        self.claim_idle_ms = cfg["HOLD_WRITER_CLAIM_IDLE_MS"]
        self.linger_ms = cfg["HOLD_WRITER_LINGER_MS"]
        self._groups: set[int] = set()
        self._events: list[int] = []
        self._events_read = 0.0
        self._claimed = 0.0
        self.stopping = threading.Event()

    def _streams(self) -> list[int]:
        if time.monotonic() - self._events_read > 1.0:
            client = redis_store.client
            self._events = sorted(int(e) for e in client.smembers(REGISTRY_KEY))
            for event_id in self._events:
                if event_id not in self._groups:
                    try:
                        client.xgroup_create(QueueKeys(event_id).reserve_stream(), GROUP, id="0", mkstream=True)
                    except redis.ResponseError as exc:
                        if "BUSYGROUP" not in str(exc):
                            raise
                    self._groups.add(event_id)
            self._events_read = time.monotonic()
        return self._events

    def forget_groups(self) -> None:
        self._groups.clear()
        self._events_read = 0.0

    def step(self, block_ms: int | None = None) -> int:
        """One round: claim entries of dead writers (every second), then read and write new ones."""
        client = redis_store.client
        events = self._streams()
        if not events:
            self.stopping.wait((block_ms if block_ms is not None else self.block_ms) / 1000)
            return 0
        done = 0
        if time.monotonic() - self._claimed > 1.0:
            for event_id in events:
                _next, claimed, *_ = client.xautoclaim(QueueKeys(event_id).reserve_stream(), GROUP, self.name,
                                                       self.claim_idle_ms, "0-0", count=self.batch)
                done += process(event_id, [(i, f) for i, f in claimed if f])
            self._claimed = time.monotonic()
        streams = {QueueKeys(e).reserve_stream(): ">" for e in events}
        replies = self._read(client, streams, self.batch, self.block_ms if block_ms is None else block_ms)
        by_stream = {stream: list(entries) for stream, entries in replies or []}
        read = sum(len(entries) for entries in by_stream.values())
        if 1 < read < self.batch and self.linger_ms:
            # a burst is arriving: wait a moment and take what came meanwhile, so one transaction
            # writes a few hundred holds, not a few dozen (each batch costs ~10 statements)
            self.stopping.wait(self.linger_ms / 1000)
            for stream, entries in self._read(client, streams, self.batch - read, None):
                by_stream.setdefault(stream, []).extend(entries)
        for stream, entries in by_stream.items():
            event_id = int(stream.split("{", 1)[1].split("}", 1)[0])
            done += process(event_id, entries)
        return done

    def _read(self, client: Any, streams: dict[str, str], count: int, block: int | None) -> list:
        """XREADGROUP over the sales' streams. In a Redis Cluster the streams of several sales sit
        in several slots, which one command cannot read: one non-blocking read per stream, and a
        short pause when all were empty (CLUSTER_POLL_MS bounds the added latency)."""
        if not redis_store.cluster or len(streams) == 1:
            return client.xreadgroup(GROUP, self.name, streams, count=count, block=block) or []
        replies: list = []
        for stream, cursor in streams.items():
            replies.extend(client.xreadgroup(GROUP, self.name, {stream: cursor}, count=count) or [])
        if not replies and block:
            self.stopping.wait(min(block, CLUSTER_POLL_MS) / 1000)
        return replies

    def drain(self, timeout: float = 10.0) -> int:
        """Process until nothing is waiting (tests and CLI)."""
        total, deadline = 0, time.monotonic() + timeout
        self._claimed = 0.0
        while time.monotonic() < deadline:
            n = self.step(block_ms=10)
            total += n
            if n == 0:
                return total
        return total

    def run(self) -> None:
        with self.app.app_context():
            while not self.stopping.is_set():
                try:
                    self.step()
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        log.warning("hold writer: backing off after an error", exc_info=True)
                        self.stopping.wait(1.0)
                    self.forget_groups()  # a stream was deleted (or Redis restarted empty)
                except (redis.RedisError, OperationalError):
                    # Redis or MySQL away: nothing was acknowledged, so nothing is lost; try again
                    log.warning("hold writer: backing off after an error", exc_info=True)
                    db.session.rollback()
                    self.stopping.wait(1.0)
                except Exception:  # noqa: BLE001 - a bad batch must not kill the writer thread
                    log.exception("hold writer: batch failed; its entries will be claimed again")
                    db.session.rollback()
                    self.stopping.wait(1.0)
                finally:
                    db.remove()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="hold-writer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopping.set()
